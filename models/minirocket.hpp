// MiniRocket (Dempster, Schmidt and Webb, "MINIROCKET: A Very Fast (Almost)
// Deterministic Transform for Time Series Classification", KDD 2021), for
// univariate series: the 84 fixed kernels of length 9 (weights -1, three of
// them 2), dilations spread exponentially up to the fit length, biases drawn
// from quantiles of one fit example's convolution output, and PPV features
// (the proportion of positive values of convolution output minus bias).
// Padding alternates between kernel/dilation pairs as in the reference code.
//
// Arithmetic is float64 and in a fixed order (the -1 taps summed in tap order,
// then 3 x the chosen taps), so tests/python/minirocket_ref.py, the same
// computation in NumPy, gives bit-identical convolution outputs and hence the
// same PPVs. Plain C++: no torch, no OpenCV.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace rookery::minirocket {

struct params {
  int64_t fit_length = 0;                 // the length of the series the dilations were made for
  std::vector<int64_t> dilations;         // unique, increasing
  std::vector<int64_t> features_per_dilation; // per dilation, per kernel
  std::vector<double> biases;             // one per feature, in output order
  size_t num_features() const { return biases.size(); }
  /// {"fit_length", "dilations", "features_per_dilation", "biases"}.
  std::string to_json() const;
};

/// The 84 kernels: the three indices (of 9) whose weight is 2.
const std::vector<std::array<int, 3>>& kernels();

/// Dilations and features per dilation for `num_features` (rounded down to a
/// multiple of 84) and series of length `length`, as the reference code's
/// _fit_dilations (max_dilations_per_kernel 32).
void fit_dilations(int64_t length, int64_t num_features, params& p);

/// The quantiles the reference code draws biases at: frac(i * golden ratio), i = 1..n.
std::vector<double> quantiles(size_t n);

/// Fits: dilations for the first series' length, then biases. For each
/// dilation and kernel one series of `train` is picked with `pick` (called
/// once per pair, in order: it gets the number of series and returns an
/// index) and the biases are its convolution output's quantiles (linear
/// interpolation, as numpy.quantile). Every series must have that length.
result<params> fit(const std::vector<std::vector<double>>& train, int64_t num_features,
                   uint64_t seed, std::vector<int64_t>* picked = nullptr);

/// The PPV features of one series (any length >= 9; it need not be the fit length).
result<std::vector<float>> transform(const params& p, const std::vector<double>& x);

/// The convolution output of kernel `k` at `dilation` over `x` ("same" zero
/// padding, so x.size() values).
std::vector<double> convolve(const std::vector<double>& x, int k, int64_t dilation);

/// Per-series standardisation (mean 0, standard deviation 1; a constant series becomes 0).
std::vector<double> standardise(std::vector<double> x);

/// Linear resampling to `n` points (end points kept).
std::vector<double> resample(const std::vector<double>& x, int64_t n);

} // namespace rookery::minirocket

namespace rookery::synthetic_control {

/// The six classes of Alcock and Manolopoulos's synthetic control chart data
/// (UCI "Synthetic Control Chart Time Series"), in this order.
const std::vector<std::string>& classes();

struct series_set {
  std::vector<std::vector<double>> x; // per series
  std::vector<int> y;                 // class index
};

/// `per_class` series of `length` points per class (the published set: 100
/// and 60), generated from the published definitions with m = 30, s = 2,
/// r ~ U(-3, 3) per point: normal m + r s; cyclic + a sin(2 pi t / T), a,
/// T ~ U(10, 15); increasing/decreasing trend +/- g t, g ~ U(0.2, 0.5);
/// upward/downward shift +/- x [t >= t3], x ~ U(7.5, 20), t3 ~ U(n/3, 2n/3);
/// t = 1..n. A splitmix64 stream seeded with `seed` draws everything, so the
/// set is the same on every machine.
series_set generate(int per_class = 100, int length = 60, uint64_t seed = 0);

} // namespace rookery::synthetic_control

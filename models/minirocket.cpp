#include "models/minirocket.hpp"

#include <algorithm>
#include <array>
#include <cmath>

#include <nlohmann/json.hpp>

namespace rookery {

namespace {

/// splitmix64 (Steele, Lea, Flood 2014): a tiny generator whose stream is
/// the same on every platform and standard library.
struct splitmix64 {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; } // [0, 1)
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
};

} // namespace

namespace minirocket {

const std::vector<std::array<int, 3>>& kernels() {
  static const std::vector<std::array<int, 3>> k = [] {
    std::vector<std::array<int, 3>> out;
    for (int a = 0; a < 9; ++a)
      for (int b = a + 1; b < 9; ++b)
        for (int c = b + 1; c < 9; ++c)
          out.push_back({a, b, c}); // itertools.combinations(range(9), 3) order
    return out;
  }();
  return k;
}

void fit_dilations(int64_t length, int64_t num_features, params& p) {
  const int64_t nk = static_cast<int64_t>(kernels().size());
  const int64_t per_kernel = std::max<int64_t>(1, num_features / nk);
  const int64_t max_per_kernel = std::min<int64_t>(per_kernel, 32);
  const double multiplier = static_cast<double>(per_kernel) / static_cast<double>(max_per_kernel);
  const double max_exponent = std::log2(static_cast<double>(length - 1) / 8.0);
  // np.unique(np.logspace(0, max_exponent, n, base=2).astype(np.int32), return_counts=True)
  std::vector<int64_t> all;
  for (int64_t i = 0; i < max_per_kernel; ++i) {
    const double e = max_per_kernel == 1 ? 0.0 : max_exponent * static_cast<double>(i) / static_cast<double>(max_per_kernel - 1);
    all.push_back(static_cast<int64_t>(std::pow(2.0, e)));
  }
  std::sort(all.begin(), all.end());
  p.dilations.clear();
  p.features_per_dilation.clear();
  for (size_t i = 0; i < all.size(); ++i) {
    if (p.dilations.empty() || p.dilations.back() != all[i]) {
      p.dilations.push_back(all[i]);
      p.features_per_dilation.push_back(0);
    }
    ++p.features_per_dilation.back();
  }
  int64_t sum = 0;
  for (auto& f : p.features_per_dilation) {
    f = static_cast<int64_t>(static_cast<double>(f) * multiplier);
    sum += f;
  }
  for (size_t i = 0; sum < per_kernel; i = (i + 1) % p.features_per_dilation.size(), ++sum)
    ++p.features_per_dilation[i];
  p.fit_length = length;
}

std::vector<double> quantiles(size_t n) {
  const double phi = (std::sqrt(5.0) + 1.0) / 2.0;
  std::vector<double> q(n);
  for (size_t i = 0; i < n; ++i)
    q[i] = std::fmod(static_cast<double>(i + 1) * phi, 1.0);
  return q;
}

std::vector<double> convolve(const std::vector<double>& x, int k, int64_t dilation) {
  // The reference code's order: C_alpha = -x (centre tap), then the -x of
  // taps 0..3 and 5..8; C = C_alpha + 3x[i0] + 3x[i1] + 3x[i2], with 3x
  // computed as (x + x) + x. Zero padding outside the series.
  const int64_t n = static_cast<int64_t>(x.size());
  const auto& idx = kernels()[static_cast<size_t>(k)];
  auto at = [&](int64_t t, int tap) -> double {
    const int64_t s = t + (tap - 4) * dilation;
    return s >= 0 && s < n ? x[static_cast<size_t>(s)] : 0.0;
  };
  std::vector<double> c(x.size());
  for (int64_t t = 0; t < n; ++t) {
    double a = -at(t, 4);
    for (int tap : {0, 1, 2, 3, 5, 6, 7, 8})
      a = a + -at(t, tap);
    for (int j = 0; j < 3; ++j) {
      const double v = at(t, idx[static_cast<size_t>(j)]);
      a = a + ((v + v) + v);
    }
    c[static_cast<size_t>(t)] = a;
  }
  return c;
}

namespace {

/// numpy.quantile(a, q) with the default "linear" method (numpy >= 1.22's
/// interpolation formula); `sorted` ascending.
double quantile_sorted(const std::vector<double>& sorted, double q) {
  const double n = static_cast<double>(sorted.size());
  const double virtual_index = n * q + (1.0 + q * (1.0 - 1.0 - 1.0)) - 1.0;
  const double lo_f = std::floor(virtual_index);
  const auto last = static_cast<int64_t>(sorted.size()) - 1;
  const auto lo = std::clamp<int64_t>(static_cast<int64_t>(lo_f), 0, last);
  const auto hi = std::clamp<int64_t>(lo + 1, 0, last);
  const double t = virtual_index - lo_f;
  const double a = sorted[static_cast<size_t>(lo)], b = sorted[static_cast<size_t>(hi)];
  const double diff = b - a;
  return t >= 0.5 ? b - diff * (1.0 - t) : a + diff * t;
}

} // namespace

result<params> fit(const std::vector<std::vector<double>>& train, int64_t num_features, uint64_t seed,
                   std::vector<int64_t>* picked) {
  if (train.empty())
    return fail(errc::bad_request, "MiniRocket needs at least one series to fit");
  const int64_t length = static_cast<int64_t>(train.front().size());
  if (length < 9)
    return fail(errc::bad_request, "MiniRocket needs series of at least 9 points");
  for (auto& s : train)
    if (static_cast<int64_t>(s.size()) != length)
      return fail(errc::bad_request, "MiniRocket fits series of one length");
  params p;
  fit_dilations(length, num_features, p);
  const size_t nk = kernels().size();
  int64_t per_kernel = 0;
  for (auto f : p.features_per_dilation)
    per_kernel += f;
  const auto q = quantiles(nk * static_cast<size_t>(per_kernel));
  splitmix64 rng{seed};
  p.biases.reserve(q.size());
  for (size_t d = 0; d < p.dilations.size(); ++d)
    for (size_t k = 0; k < nk; ++k) {
      const auto pick = static_cast<int64_t>(rng.next() % train.size());
      if (picked)
        picked->push_back(pick);
      auto c = convolve(train[static_cast<size_t>(pick)], static_cast<int>(k), p.dilations[d]);
      std::sort(c.begin(), c.end());
      for (int64_t f = 0; f < p.features_per_dilation[d]; ++f)
        p.biases.push_back(quantile_sorted(c, q[p.biases.size()]));
    }
  return p;
}

result<std::vector<float>> transform(const params& p, const std::vector<double>& x) {
  const int64_t n = static_cast<int64_t>(x.size());
  if (n < 9)
    return fail(errc::bad_request, "a series needs at least 9 points (got " + std::to_string(n) + ")");
  std::vector<float> out;
  out.reserve(p.num_features());
  size_t b = 0;
  const size_t nk = kernels().size();
  for (size_t d = 0; d < p.dilations.size(); ++d) {
    const int64_t dilation = p.dilations[d];
    const int64_t padding = (8 * dilation) / 2;
    for (size_t k = 0; k < nk; ++k) {
      const auto c = convolve(x, static_cast<int>(k), dilation);
      // Alternate kernel/dilation pairs use the output without its padded
      // ends (as the reference); a series too short for that uses it all.
      int64_t lo = 0, hi = n;
      if ((d + k) % 2 == 1 && n > 2 * padding)
        lo = padding, hi = n - padding;
      const double count = static_cast<double>(hi - lo);
      for (int64_t f = 0; f < p.features_per_dilation[d]; ++f, ++b) {
        if (b >= p.biases.size())
          return fail(errc::internal, "MiniRocket parameters are inconsistent");
        const double bias = p.biases[b];
        int64_t pos = 0;
        for (int64_t t = lo; t < hi; ++t)
          pos += c[static_cast<size_t>(t)] > bias ? 1 : 0;
        out.push_back(static_cast<float>(static_cast<double>(pos) / count));
      }
    }
  }
  return out;
}

std::vector<double> standardise(std::vector<double> x) {
  if (x.empty())
    return x;
  double mean = 0;
  for (double v : x)
    mean += v;
  mean /= static_cast<double>(x.size());
  double var = 0;
  for (double v : x)
    var += (v - mean) * (v - mean);
  const double sd = std::sqrt(var / static_cast<double>(x.size()));
  for (double& v : x)
    v = sd > 1e-12 ? (v - mean) / sd : 0.0;
  return x;
}

std::vector<double> resample(const std::vector<double>& x, int64_t n) {
  if (x.empty() || n <= 0)
    return {};
  std::vector<double> out(static_cast<size_t>(n));
  const double scale = n > 1 ? static_cast<double>(x.size() - 1) / static_cast<double>(n - 1) : 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double pos = static_cast<double>(i) * scale;
    const auto lo = static_cast<size_t>(std::floor(pos));
    const size_t hi = std::min(lo + 1, x.size() - 1);
    const double t = pos - static_cast<double>(lo);
    out[static_cast<size_t>(i)] = x[lo] + (x[hi] - x[lo]) * t;
  }
  return out;
}

std::string params::to_json() const {
  return nlohmann::json{{"fit_length", fit_length},
                        {"dilations", dilations},
                        {"features_per_dilation", features_per_dilation},
                        {"biases", biases}}
    .dump();
}

} // namespace minirocket

namespace synthetic_control {

const std::vector<std::string>& classes() {
  static const std::vector<std::string> c = {"normal", "cyclic", "increasing_trend",
                                             "decreasing_trend", "upward_shift", "downward_shift"};
  return c;
}

series_set generate(int per_class, int length, uint64_t seed) {
  splitmix64 rng{seed};
  const double m = 30, s = 2, pi = std::acos(-1.0);
  series_set out;
  for (int cls = 0; cls < 6; ++cls)
    for (int i = 0; i < per_class; ++i) {
      // The class's own parameters first, then r per point.
      const double a = rng.uniform(10, 15), period = rng.uniform(10, 15);
      const double g = rng.uniform(0.2, 0.5);
      const double shift = rng.uniform(7.5, 20);
      const double t3 = rng.uniform(length / 3.0, 2.0 * length / 3.0);
      std::vector<double> y(static_cast<size_t>(length));
      for (int t = 1; t <= length; ++t) {
        double v = m + rng.uniform(-3, 3) * s;
        switch (cls) {
          case 1: v += a * std::sin(2 * pi * t / period); break;
          case 2: v += g * t; break;
          case 3: v -= g * t; break;
          case 4: v += t >= t3 ? shift : 0.0; break;
          case 5: v -= t >= t3 ? shift : 0.0; break;
          default: break;
        }
        y[static_cast<size_t>(t - 1)] = v;
      }
      out.x.push_back(std::move(y));
      out.y.push_back(cls);
    }
  return out;
}

} // namespace synthetic_control

} // namespace rookery

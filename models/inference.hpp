// The inference-optimised model path (issue 12): a model is turned into a
// frozen TorchScript graph for one input shape and run through LibTorch's
// inference passes. Torch-side header (like models/zoo/zoo.hpp): included only
// by models/ sources, bench/ and the tests.
//
//   zoo model (C++ torch::nn)  --trace (tracer, weights become constants)-->
//   graph  --wrap as the forward method of a fresh jit::Module-->
//   torch::jit::freeze (conv-BN folding, conv add/mul folding, dropout removal)
//   --> torch::jit::optimize_for_inference (conv-add-ReLU fusion, oneDNN
//   (MKL-DNN) conversion of convolutions and linears, frozen linear transpose)
//
// An imported TorchScript module skips the trace: it is frozen and optimised as
// it is (its forward_features method preserved).
//
// The C++ tracer records every ATen call but not the integers a model computes
// from x.size(...) in C++: those become constants of the graph. A trace is
// therefore made for one (C, H, W); whether it also holds for other batch
// sizes is checked (against the eager model, at batch 1 and 3) rather than
// assumed, and a graph that does not is run one item at a time.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <torch/script.h>

#include "common/result.hpp"

namespace rookery::inference {

/// What prepare_traced()/prepare_script() did, reported at load (log, GET /v1/pipelines).
struct report {
  std::string mode = "eager";      // "optimized" | "eager"
  std::string reason;              // why eager (the error, a parity miss, slower, disabled)
  std::vector<int64_t> shape;      // (C, H, W) the graph was prepared for; empty: any (TorchScript)
  bool batch_generic = false;      // one graph serves every batch size (else item by item)
  std::vector<std::string> passes; // what was applied, in order
  double prepare_ms = 0;           // trace + freeze + optimise + checks
  double parity = 0;               // max |opt - eager| / max(1, max |eager|) over the checks
  double eager_ms = 0;             // one batch-1 forward, best of a few, eager
  double optimized_ms = 0;         // the same, optimised
  int mkldnn_ops = 0;              // oneDNN (MKL-DNN) nodes in the optimised graph
  std::string json() const;        // the fields above as a JSON object's text
};

/// Settings of a preparation.
struct options {
  double parity_tolerance = 1e-4; // relative, as the zoo parity suite's
  bool time_it = true;            // measure eager vs optimised (batch 1); keep eager when faster
  int threads = 0;                // intra-op threads while timing (0: as is)
};

/// A prepared forward: a frozen, optimised module and how to call it.
struct prepared {
  torch::jit::Module module;
  bool batch_generic = false;
  std::string method = "forward"; // the method to call (TorchScript: "forward_features" too)
  /// Runs it on x (N, C, H, W): in one call, or item by item when !batch_generic.
  torch::Tensor operator()(const torch::Tensor& x);
};

using forward_fn = std::function<torch::Tensor(const torch::Tensor&)>;

/// Traces `eager` on a seeded random input of (1, C, H, W), freezes and
/// optimises it, checks it against `eager` (batch 1 and 3) and, with
/// opts.time_it, keeps it only when it is not slower. The model's parameters
/// must not require gradients (they become constants of the graph).
/// On failure `rep` says why (rep.mode "eager") and the result is nullopt.
std::optional<prepared> prepare_traced(const forward_fn& eager, const std::vector<int64_t>& shape,
                                       const options& opts, report& rep);

/// Freezes and optimises a TorchScript module for `method` (preserving
/// `other_methods`), checks it against the module as loaded on `probe_shape`
/// (batch 1 and 3). nullopt and rep.reason on failure.
std::optional<torch::jit::Module> prepare_script(const torch::jit::Module& module,
                                                 const std::vector<std::string>& methods,
                                                 const std::vector<int64_t>& probe_shape,
                                                 const options& opts, report& rep);

/// max |a - b| / max(1, max |b|): the parity measure.
double relative_error(const torch::Tensor& a, const torch::Tensor& b);

} // namespace rookery::inference

// An image embedding model: any torchvision-compatible zoo model (state_dict
// weights; models/zoo/zoo.hpp) or any TorchScript module. Torch-free header:
// actor code includes it.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace rookery {

/// From <data>/models/<name>/<version>/config.json.
struct model_spec {
  std::string name;         // e.g. "resnet18"
  std::string arch;         // a zoo model name ("resnet18", "mobilenet_v3_large", ...) or "torchscript"
  std::string weights_path; // state_dict (.pth/.pt) or TorchScript file
  std::string format;       // "state_dict" | "torchscript"; empty: "torchscript" when arch is, else "state_dict"
  int threads = 0;          // intra-op threads; 0 = leave as is (see embedding_model::load)
  std::string options_json; // zoo::model_options (JSON object) the weights were made with:
                            // when set, the model is built with them and the weights load
                            // strictly (e.g. a 1-channel, 10-class model a trainer exported);
                            // "" = torchvision's defaults, classifier adapted as needed
  std::string output;       // "" | "softmax": forward() gives softmax probabilities over
                            // the outputs (a classifier like nsfwjs's, whose Keras model
                            // ends in a softmax); embed() is unaffected
  bool optimize = true;     // config.json "optimize": false keeps the eager module
                            // (prepare() then reports why)
};

/// What embedding_model::prepare() prepares (models/inference.hpp does the work).
struct prepare_options {
  std::vector<int64_t> shape; // (C, H, W) of the inputs to expect; empty: 3 x 224 x 224
  bool embed = true;          // prepare embed()/features() (the pipelines' path)
  bool logits = false;        // prepare forward() (the /v2 path; the replica does it on
                              // the first /v2 request of that shape)
  bool time_it = true;        // keep the eager module where it is faster
  bool enabled = true;        // false: stay eager (the `inference` setting, config "optimize")
  std::string why_disabled;   // reported when !enabled
};

/// One instance per model replica; not thread-safe (one caller at a time), but
/// distinct instances may run concurrently.
class embedding_model {
public:
  /// Loads `spec`: for "state_dict" builds the zoo model named by spec.arch
  /// (zoo::create_model) and loads torchvision-named weights
  /// (zoo::load_pretrained, i.e. models/state_dict.hpp); for
  /// "torchscript" loads the module with torch::jit::load and probes it once
  /// with a 1x3x224x224 zero batch to learn dim().
  /// spec.threads > 0 calls at::set_num_threads(threads). NOTE: in LibTorch
  /// this is PROCESS-GLOBAL (the last call wins, for every model); each
  /// embed()/forward() re-applies it on its calling thread so OpenMP worker
  /// teams follow it.
  /// Errors: unprocessable (unknown arch, bad/mismatched weights, broken
  /// TorchScript), not_found (missing file).
  static result<std::unique_ptr<embedding_model>> load(const model_spec& spec);

  /// Random-weights model for when no weights are installed -- the caller
  /// decides whether to use it; pretrained() is false. Weights come from a
  /// fixed seed, so every replica (and every node) computes the same function.
  /// ResNet archs only (resnet_archs()): the others have no seeded re-init.
  static result<std::unique_ptr<embedding_model>> create_untrained(const std::string& arch);

  /// Supported values of model_spec::arch for the state_dict format: every
  /// zoo model (zoo::list_models()).
  static std::vector<std::string> supported_archs();

  /// Input: a batch of n images, each CHW float32 contiguous (c*h*w floats),
  /// all the same size. Output: n rows of dim() floats -- the penultimate
  /// features (zoo models: forward_features, the pooled pre-logits; TorchScript: method
  /// `forward_features` if present, else `forward` flattened to (N, D)),
  /// L2-normalised per row. An empty batch gives an empty result.
  /// Errors: bad_request (bad sizes, null pointer, wrong channel count),
  /// internal (the model failed).
  result<std::vector<std::vector<float>>> embed(const std::vector<const float*>& images,
                                                int64_t c, int64_t h, int64_t w);

  /// embed() without the normalisation: the pooled features as the model
  /// computes them (pipelines normalise with their l2_normalize operator).
  result<std::vector<std::vector<float>>> features(const std::vector<const float*>& images,
                                                   int64_t c, int64_t h, int64_t w);

  /// Whether create_untrained(arch) can build `arch`.
  static bool can_create_untrained(const std::string& arch);

  /// Same input; the raw model output, not normalised: logits for the zoo
  /// models, and for TorchScript whatever `forward` returns (a tensor, or the
  /// first tensor of a tuple/list), flattened to (N, D); with spec.output
  /// "softmax", softmax over each row.
  result<std::vector<std::vector<float>>> forward(const std::vector<const float*>& images,
                                                  int64_t c, int64_t h, int64_t w);

  /// Prepares the inference-optimised path for inputs of opts.shape: zoo models
  /// are traced to TorchScript, frozen (conv-BN folded) and optimised for
  /// inference (oneDNN); TorchScript modules are frozen and optimised as they
  /// are. Every prepared graph is checked against the eager model (1e-4
  /// relative) and kept only when it is not slower. Inputs of another shape,
  /// and every input when preparation fails, run eager. Never fails: the
  /// outcome is in inference_json(). Call before serving (not thread-safe).
  void prepare(const prepare_options& opts);
  /// {"mode": "optimized"|"eager", "embed": report, "infer": report}
  /// (inference::report::json()); "mode" is the embedding path's.
  std::string inference_json() const;
  /// Whether prepare() has tried the forward() path (optimised or not).
  bool infer_prepared() const;
  /// Whether the embedding path of `shape` (C, H, W) runs the optimised graph.
  bool optimized_for(const std::vector<int64_t>& shape) const;
  /// "optimized" or "eager": the path the last embed()/features()/forward() took.
  const char* last_path() const;

  /// Length of embed()'s rows (512 for resnet18, 2048 for resnet50, the
  /// model's num_features() in general).
  uint32_t dim() const;
  /// The zoo model name, or "torchscript".
  const std::string& arch() const;
  /// true when loaded from weights, false for create_untrained().
  bool pretrained() const;

  ~embedding_model();
  embedding_model(const embedding_model&) = delete;
  embedding_model& operator=(const embedding_model&) = delete;

private:
  struct impl;
  explicit embedding_model(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

} // namespace rookery

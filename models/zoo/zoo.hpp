// The model zoo: every torchvision 0.14 classification family in LibTorch,
// with torchvision's exact submodule names so any torchvision state_dict loads
// by name (models/state_dict.hpp), behind one customizable interface in timm's
// conventions. Included only by models/ sources and tests (it pulls in torch).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <torch/nn/module.h>

#include "common/result.hpp"

namespace rookery::zoo {

/// Options every family understands; a family ignores what it does not have
/// and create_model() fails (bad_request) when a value cannot apply.
struct model_options {
  int64_t num_classes = 1000;
  int64_t in_channels = 3;
  double dropout = -1;       // classifier dropout; < 0: the family's default
  double drop_path = 0;      // stochastic depth rate (families that have it)
  double width_mult = 1.0;   // families with a width multiplier (MobileNet, MNASNet, ShuffleNet...)
  int64_t image_size = 0;    // families tied to an input size (ViT): 0 = default
  bool features_only = false;      // forward() returns nothing useful; use forward_feature_maps
  std::vector<int64_t> out_indices; // stages for the feature pyramid (empty: all)
};

/// Base of every zoo model. Subclasses register torchvision's module names.
class ZooModelImpl : public torch::nn::Module {
public:
  /// Logits (N, num_classes).
  virtual torch::Tensor forward(torch::Tensor x) = 0;
  /// Pooled pre-logits features (N, num_features()): what an embedding uses.
  virtual torch::Tensor forward_features(torch::Tensor x) = 0;
  /// Feature maps of every stage, shallow to deep (the multi-scale mode).
  virtual std::vector<torch::Tensor> forward_stages(torch::Tensor x) = 0;
  /// Dimension of forward_features().
  virtual int64_t num_features() const = 0;
  /// The classifier; num_classes == 0 makes it an identity.
  virtual void reset_classifier(int64_t num_classes) = 0;
  /// The submodule(s) before the classifier, and the classifier itself.
  virtual std::vector<std::shared_ptr<torch::nn::Module>> backbone() = 0;
  virtual std::shared_ptr<torch::nn::Module> head() = 0;

  /// forward_stages() restricted to `indices` (empty: all); negative counts from the end.
  std::vector<torch::Tensor> forward_feature_maps(torch::Tensor x,
                                                  const std::vector<int64_t>& indices);
};

struct model_entry {
  std::string name;   // torchvision's builder name: "resnet50", "vit_b_16", ...
  std::string family; // "resnet", "vit", ...
  int64_t default_size = 224;
  bool heavy = false; // parity checked only under ctest -L full
  std::function<std::shared_ptr<ZooModelImpl>(const model_options&)> make;
};

/// Registers a model (each family's register_<family>_models() in models/zoo/families.hpp calls it).
bool register_model(model_entry entry);

/// All registered models, sorted by name.
std::vector<model_entry> list_models();

/// Builds `name`: bad_request for unknown names or options that do not apply.
/// Catches c10::Error from the family's constructor.
result<std::shared_ptr<ZooModelImpl>> create_model(const std::string& name,
                                                   const model_options& options = {});

/// Number of parameters.
int64_t count_parameters(torch::nn::Module& m);

/// Multiply-accumulates of one forward pass at `size` x `size` (batch 1).
result<int64_t> count_macs(ZooModelImpl& m, int64_t size, int64_t in_channels = 3);

/// Adapts a pretrained first conv's weight (O, 3, k, k) to `in_channels`:
/// summed over RGB for 1, tiled and rescaled by 3 / in_channels for more.
torch::Tensor adapt_first_conv(const torch::Tensor& weight, int64_t in_channels);

} // namespace rookery::zoo

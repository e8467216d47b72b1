// The model zoo: every torchvision 0.14 classification family in LibTorch,
// with torchvision's exact submodule names so any torchvision state_dict loads
// by name (models/state_dict.hpp), behind one customizable interface in timm's
// conventions. Included only by models/ sources and tests (it pulls in torch).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
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
  // --- additions (zoo A) ---
  bool aux_logits = true;       // GoogLeNet / Inception V3: build the training-only aux heads
                                // (torchvision's weights=None default; a state_dict saved from
                                // torchvision's pretrained googlenet has none: use false)
  bool transform_input = false; // GoogLeNet / Inception V3: re-normalise ImageNet-normalised
                                // input as their ported TF weights expect (torchvision sets it
                                // when it loads its pretrained weights)
  // --- additions (trainers) ---
  int64_t latent_dim = 0; // autoencoders (conv_ae, conv_vae): size of the latent code, which is
                          // also num_features(); 0 = the family default (32). Other families
                          // reject a non-zero value.
};

/// Base of every zoo model. Subclasses register torchvision's module names.
class ZooModelImpl : public torch::nn::Module {
public:
  /// Logits (N, num_classes).
  virtual torch::Tensor forward(torch::Tensor x) = 0;
  /// Pooled pre-logits features (N, num_features()): what an embedding uses.
  /// Defined as the input of the model's final classifier layer in eval mode
  /// (torchvision: the input of the last nn.Linear; SqueezeNet: the global
  /// average of `features`), which the parity tests compare.
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

  // --- additions (zoo A) -------------------------------------------------------
  /// forward_feature_maps(x, zoo_options().out_indices): the multi-scale mode of
  /// a model made by create_model(name, {.features_only = true, .out_indices = ...}).
  std::vector<torch::Tensor> forward_feature_maps(torch::Tensor x);
  /// Auxiliary classifiers that exist only for training (GoogLeNet's aux1/aux2,
  /// Inception V3's AuxLogits): their parameters are in torchvision's state_dict
  /// but unused in eval mode. load_pretrained() treats them like head(): their
  /// keys are dropped when num_classes differs from the checkpoint's.
  virtual std::vector<std::shared_ptr<torch::nn::Module>> aux_heads() { return {}; }
  /// Registry name and options, set by create_model() (empty name otherwise).
  const std::string& zoo_name() const { return zoo_name_; }
  const model_options& zoo_options() const { return zoo_options_; }
  void set_zoo_info(std::string name, model_options options) {
    zoo_name_ = std::move(name);
    zoo_options_ = std::move(options);
  }

private:
  std::string zoo_name_;
  model_options zoo_options_;
};

struct model_entry {
  std::string name;   // torchvision's builder name: "resnet50", "vit_b_16", ...
  std::string family; // "resnet", "vit", ...
  int64_t default_size = 224;
  bool heavy = false; // parity checked only under ctest -L full
  bool custom = false; // Rookery's own architecture (trainers' small models), no torchvision
                       // twin: built by create_model() but not in list_models()
  std::function<std::shared_ptr<ZooModelImpl>(const model_options&)> make;
};

/// Registers a model (each family's register_<family>_models() in models/zoo/families.hpp calls it).
bool register_model(model_entry entry);

/// All registered torchvision models, sorted by name (custom ones excluded).
std::vector<model_entry> list_models();

/// Rookery's own architectures (model_entry::custom), sorted by name.
std::vector<model_entry> list_custom_models();

/// Builds `name`: bad_request for unknown names or options that do not apply.
/// Catches c10::Error from the family's constructor.
result<std::shared_ptr<ZooModelImpl>> create_model(const std::string& name,
                                                   const model_options& options = {});

/// model_options from a JSON object's text (absent keys keep defaults; "{}"
/// or "" give the defaults): bad_request naming a key of the wrong type.
/// Keys: num_classes, in_channels, dropout, drop_path, width_mult, image_size,
/// latent_dim, features_only, out_indices, aux_logits, transform_input.
result<model_options> parse_model_options(const std::string& json_text);

/// The JSON text of `o` (every key), which parse_model_options() reads back.
std::string model_options_json(const model_options& o);

/// Number of parameters.
int64_t count_parameters(torch::nn::Module& m);

/// Multiply-accumulates of one forward pass at `size` x `size` (batch 1).
result<int64_t> count_macs(ZooModelImpl& m, int64_t size, int64_t in_channels = 3);

/// Adapts a pretrained first conv's weight (O, 3, k, k) to `in_channels`:
/// summed over RGB for 1, tiled and rescaled by 3 / in_channels for more.
torch::Tensor adapt_first_conv(const torch::Tensor& weight, int64_t in_channels);

// --- additions (zoo A) -----------------------------------------------------------

/// Loads a torchvision state_dict (torch.save(model.state_dict())) of the same
/// architecture into `m`, a model made by create_model(name, options):
///  - options as torchvision's (num_classes == checkpoint_num_classes,
///    in_channels 3, !features_only): a strict load_state_dict (models/state_dict.hpp);
///  - otherwise the checkpoint is loaded strictly into a reference model of the
///    same name with checkpoint_num_classes classes and 3 input channels, then
///    copied over by name: the classifier keys (head() and aux_heads()) are
///    skipped when their shapes differ (num_classes changed, or features_only /
///    num_classes 0 removed the head) so the new head keeps its fresh init, and
///    the first conv is adapted with adapt_first_conv() when in_channels != 3.
/// Errors: those of load_state_dict (not_found, unprocessable), bad_request
/// when `m` was not made by create_model().
status load_pretrained(ZooModelImpl& m, const std::string& path, const model_options& options,
                       int64_t checkpoint_num_classes = 1000);

/// create_model(name, options) + load_pretrained(path): bad_request / the load's errors.
result<std::shared_ptr<ZooModelImpl>> create_pretrained(const std::string& name,
                                                       const std::string& path,
                                                       const model_options& options = {},
                                                       int64_t checkpoint_num_classes = 1000);

/// The first entry of every family, or with `heavy == false` when the family has
/// one: the quick parity set. Sorted by family.
std::vector<model_entry> quick_models();

} // namespace rookery::zoo

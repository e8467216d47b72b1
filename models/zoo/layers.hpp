// Building blocks shared by the zoo families, each the LibTorch twin of a
// torchvision.ops / torchvision.models helper with the same parameter names,
// so a torchvision state_dict loads by name:
//
//   conv_norm_act()      torchvision.ops.Conv2dNormActivation  ("0" conv, "1" BatchNorm2d, "2" act)
//   SqueezeExcitation    torchvision.ops.SqueezeExcitation     (avgpool, fc1, fc2)
//   StochasticDepth      torchvision.ops.StochasticDepth       (no parameters; identity in eval)
//   LayerNorm2d          torchvision.models.convnext.LayerNorm2d (weight, bias; over C of NCHW)
//   Permute              torchvision.ops.misc.Permute
//   mlp()                torchvision.ops.MLP                   ("0" Linear, "1" act, "2" Dropout,
//   "3" Linear, ...) Activation           any parameter-free activation (ReLU, SiLU, GELU,
//   Hardswish, ...) Seq                  a Sequential that can nest inside another (torchvision
//   nests them) LayerNormLast        nn.LayerNorm over the last dim as a one-input module Identity
//   nn.Identity (a classifier reset to 0 classes)
// plus validate_options() (model_options a family cannot honour -> c10::Error),
// round_channels() (_make_divisible), init_cnn() / init_trunc_normal() (inits).
//
// Included only by models/zoo sources and tests (it pulls in torch).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>
#include <torch/nn/pimpl.h>

#include "models/zoo/zoo.hpp"

namespace rookery::zoo {

// --- Seq: a Sequential that nests ----------------------------------------------------

/// torch::nn::Sequential with a plain forward(Tensor) -> Tensor, so that it can
/// sit inside another Sequential (torchvision nests them: features.1.0.block.0.0).
class SeqImpl : public torch::nn::SequentialImpl {
public:
  using torch::nn::SequentialImpl::SequentialImpl;
  torch::Tensor forward(torch::Tensor x) {
    return torch::nn::SequentialImpl::forward(std::move(x));
  }
};
TORCH_MODULE(Seq);

// --- activations ---------------------------------------------------------------

/// Parameter-free activations. `none` is the identity.
enum class act { none, relu, relu6, silu, gelu, hardswish, hardsigmoid, sigmoid, tanh };

/// Applies `kind` to `x` (in place where `inplace` and the op allows it).
torch::Tensor apply_act(act kind, torch::Tensor x, bool inplace = false);

/// A module for an act (so it can sit inside a Sequential; it has no state).
class ActivationImpl : public torch::nn::Module {
public:
  explicit ActivationImpl(act kind = act::relu, bool inplace = false)
      : kind(kind), inplace(inplace) {}
  torch::Tensor forward(torch::Tensor x) { return apply_act(kind, std::move(x), inplace); }
  act kind;
  bool inplace;
};
TORCH_MODULE(Activation);

// --- Conv2dNormActivation --------------------------------------------------------

struct ConvNormActOptions {
  ConvNormActOptions(int64_t in_channels, int64_t out_channels, int64_t kernel_size = 3)
      : in_channels_(in_channels), out_channels_(out_channels), kernel_size_(kernel_size) {}
  TORCH_ARG(int64_t, in_channels);
  TORCH_ARG(int64_t, out_channels);
  TORCH_ARG(int64_t, kernel_size);
  TORCH_ARG(int64_t, stride) = 1;
  /// < 0: torchvision's default (kernel_size - 1) / 2 * dilation.
  TORCH_ARG(int64_t, padding) = -1;
  TORCH_ARG(int64_t, groups) = 1;
  TORCH_ARG(int64_t, dilation) = 1;
  /// BatchNorm2d after the conv (false: no norm layer, and the conv gets a bias).
  TORCH_ARG(bool, norm) = true;
  TORCH_ARG(double, bn_eps) = 1e-5;
  TORCH_ARG(double, bn_momentum) = 0.1;
  TORCH_ARG(act, activation) = act::relu;
  /// Conv bias: < 0 means torchvision's default (bias iff there is no norm).
  TORCH_ARG(int, bias) = -1;
};

/// torchvision.ops.Conv2dNormActivation as a Sequential: "0" Conv2d, then
/// "1" BatchNorm2d (if norm), then the activation (if not none).
Seq conv_norm_act(const ConvNormActOptions& o);

/// BatchNorm2d with torchvision's eps / momentum.
torch::nn::BatchNorm2d batch_norm2d(int64_t channels, double eps = 1e-5, double momentum = 0.1);

// --- SqueezeExcitation -----------------------------------------------------------

/// torchvision.ops.SqueezeExcitation: x * scale_act(fc2(act(fc1(avgpool(x))))).
class SqueezeExcitationImpl : public torch::nn::Module {
public:
  SqueezeExcitationImpl(int64_t input_channels, int64_t squeeze_channels,
                        act activation = act::relu, act scale_activation = act::sigmoid);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::AdaptiveAvgPool2d avgpool{nullptr};
  torch::nn::Conv2d fc1{nullptr}, fc2{nullptr};
  act activation;
  act scale_activation;
};
TORCH_MODULE(SqueezeExcitation);

// --- StochasticDepth ---------------------------------------------------------------

/// torchvision.ops.stochastic_depth: in training, zeroes whole rows ("row") or
/// the whole input ("batch") with probability p and rescales by 1 / (1 - p);
/// the identity in eval or when p == 0.
torch::Tensor stochastic_depth(const torch::Tensor& x, double p, bool row_mode, bool training);

class StochasticDepthImpl : public torch::nn::Module {
public:
  /// mode: "row" or "batch".
  explicit StochasticDepthImpl(double p = 0.0, const std::string& mode = "row");
  torch::Tensor forward(torch::Tensor x) { return stochastic_depth(x, p, row_mode, is_training()); }
  double p;
  bool row_mode;
};
TORCH_MODULE(StochasticDepth);

// --- LayerNorm2d / Permute ------------------------------------------------------------

/// LayerNorm over the channels of an NCHW tensor (torchvision's convnext.LayerNorm2d).
class LayerNorm2dImpl : public torch::nn::Module {
public:
  explicit LayerNorm2dImpl(int64_t channels, double eps = 1e-6);
  torch::Tensor forward(torch::Tensor x);
  torch::Tensor weight, bias;
  int64_t channels;
  double eps;
};
TORCH_MODULE(LayerNorm2d);

class PermuteImpl : public torch::nn::Module {
public:
  explicit PermuteImpl(std::vector<int64_t> dims) : dims(std::move(dims)) {}
  torch::Tensor forward(torch::Tensor x) { return x.permute(dims); }
  std::vector<int64_t> dims;
};
TORCH_MODULE(Permute);

/// Channel-last LayerNorm (nn.LayerNorm(dim, eps)) as a module whose forward
/// takes one tensor, for Sequentials: weight, bias.
class LayerNormLastImpl : public torch::nn::Module {
public:
  explicit LayerNormLastImpl(int64_t dim, double eps = 1e-5);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight, bias;
  int64_t dim;
  double eps;
};
TORCH_MODULE(LayerNormLast);

// --- MLP -------------------------------------------------------------------------------

/// torchvision.ops.MLP: for each hidden size but the last, Linear -> act ->
/// Dropout; then Linear -> Dropout. Indices as in torchvision (no norm layer):
/// "0" Linear, "1" act, "2" Dropout, "3" Linear, "4" Dropout for two layers.
Seq mlp(int64_t in_channels, const std::vector<int64_t>& hidden_channels,
        act activation = act::relu, double dropout = 0.0, bool bias = true);

// --- option checks -------------------------------------------------------------------

/// What a family can honour of model_options (beyond num_classes / in_channels).
struct option_support {
  bool dropout = true;     // classifier dropout
  bool drop_path = false;  // stochastic depth
  bool width_mult = false; // a width multiplier
};

/// Throws c10::Error (create_model() turns it into bad_request) for options
/// `family` cannot honour: num_classes < 0, in_channels < 1, dropout >= 1,
/// drop_path >= 1, a width_mult != 1 where there is none, ...
/// drop_path < 0 and dropout < 0 mean "the variant's torchvision default".
void validate_options(const model_options& o, const std::string& family, option_support s);

/// o.dropout, or `def` when it is negative.
inline double dropout_or(const model_options& o, double def) {
  return o.dropout < 0 ? def : o.dropout;
}
/// o.drop_path, or `def` when it is negative.
inline double drop_path_or(const model_options& o, double def) {
  return o.drop_path < 0 ? def : o.drop_path;
}

// --- helpers ---------------------------------------------------------------------------

/// torchvision.models._utils._make_divisible (min_value < 0: divisor). Not named
/// make_divisible: models/zoo/mobilenet.hpp declares that one.
int64_t round_channels(double v, int64_t divisor, int64_t min_value = -1);

/// Global average pool + flatten of an NCHW tensor: (N, C).
torch::Tensor pool_flatten(const torch::Tensor& x);

/// The identity as a module (for a classifier reset to num_classes == 0).
class IdentityImpl : public torch::nn::Module {
public:
  torch::Tensor forward(torch::Tensor x) { return x; }
};
TORCH_MODULE(Identity);

/// torchvision's usual CNN init: kaiming_normal_(fan_out) for every Conv2d
/// (nonlinearity relu, zero bias), BatchNorm / GroupNorm weight 1 bias 0.
/// Linear layers are left alone. Submodules only (`m` itself may be under
/// construction, not yet owned by a shared_ptr).
void init_cnn(torch::nn::Module& m);

/// torch.nn.init.trunc_normal_(w, mean, std, a, b) (a, b absolute bounds).
void init_trunc_normal(const torch::Tensor& w, double std, double mean = 0.0, double a = -2.0,
                       double b = 2.0);

} // namespace rookery::zoo

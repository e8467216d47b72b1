#include "models/zoo/layers.hpp"

#include <cmath>

#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/normalization.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/normalization.h>

namespace rookery::zoo {

namespace nn = torch::nn;

torch::Tensor apply_act(act kind, torch::Tensor x, bool inplace) {
  switch (kind) {
  case act::none:
    return x;
  case act::relu:
    return inplace ? x.relu_() : x.relu();
  case act::relu6:
    return inplace ? x.clamp_(0, 6) : x.clamp(0, 6);
  case act::silu:
    return inplace ? torch::silu_(x) : torch::silu(x);
  case act::gelu:
    return torch::gelu(x);
  case act::hardswish:
    return inplace ? torch::hardswish_(x) : torch::hardswish(x);
  case act::hardsigmoid:
    return inplace ? torch::hardsigmoid_(x) : torch::hardsigmoid(x);
  case act::sigmoid:
    return inplace ? x.sigmoid_() : x.sigmoid();
  case act::tanh:
    return inplace ? x.tanh_() : x.tanh();
  }
  return x;
}

nn::BatchNorm2d batch_norm2d(int64_t channels, double eps, double momentum) {
  // NOLINTNEXTLINE(modernize-return-braced-init-list): the holder constructor is explicit
  return nn::BatchNorm2d(nn::BatchNorm2dOptions(channels).eps(eps).momentum(momentum));
}

Seq conv_norm_act(const ConvNormActOptions& o) {
  const int64_t padding = o.padding() >= 0 ? o.padding() : (o.kernel_size() - 1) / 2 * o.dilation();
  const bool bias = o.bias() < 0 ? !o.norm() : o.bias() != 0;
  Seq seq;
  seq->push_back(nn::Conv2d(nn::Conv2dOptions(o.in_channels(), o.out_channels(), o.kernel_size())
                                .stride(o.stride())
                                .padding(padding)
                                .dilation(o.dilation())
                                .groups(o.groups())
                                .bias(bias)));
  if (o.norm())
    seq->push_back(batch_norm2d(o.out_channels(), o.bn_eps(), o.bn_momentum()));
  if (o.activation() != act::none)
    seq->push_back(Activation(o.activation(), /*inplace=*/true));
  return seq;
}

// --- SqueezeExcitation ---------------------------------------------------------------

SqueezeExcitationImpl::SqueezeExcitationImpl(int64_t input_channels, int64_t squeeze_channels,
                                             act activation, act scale_activation)
    : activation(activation), scale_activation(scale_activation) {
  avgpool = register_module("avgpool", nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions(1)));
  fc1 = register_module("fc1", nn::Conv2d(nn::Conv2dOptions(input_channels, squeeze_channels, 1)));
  fc2 = register_module("fc2", nn::Conv2d(nn::Conv2dOptions(squeeze_channels, input_channels, 1)));
}

torch::Tensor SqueezeExcitationImpl::forward(const torch::Tensor& x) {
  auto s = avgpool(x);
  s = apply_act(activation, fc1(s), true);
  s = apply_act(scale_activation, fc2(s), true);
  return s * x;
}

// --- StochasticDepth ---------------------------------------------------------------------

torch::Tensor stochastic_depth(const torch::Tensor& x, double p, bool row_mode, bool training) {
  TORCH_CHECK(p >= 0.0 && p <= 1.0, "drop probability has to be between 0 and 1, but got ", p);
  if (!training || p == 0.0)
    return x;
  const double survival = 1.0 - p;
  std::vector<int64_t> size(static_cast<size_t>(x.dim()), 1);
  if (row_mode)
    size[0] = x.size(0);
  auto noise = torch::empty(size, x.options()).bernoulli_(survival);
  if (survival > 0.0)
    noise.div_(survival);
  return x * noise;
}

StochasticDepthImpl::StochasticDepthImpl(double p, const std::string& mode)
    : p(p), row_mode(mode == "row") {
  TORCH_CHECK(p >= 0.0 && p <= 1.0, "drop probability has to be between 0 and 1, but got ", p);
  TORCH_CHECK(mode == "row" || mode == "batch", "mode has to be either 'batch' or 'row', but got ",
              mode);
}

// --- LayerNorm2d / LayerNormLast ----------------------------------------------------------

LayerNorm2dImpl::LayerNorm2dImpl(int64_t channels, double eps) : channels(channels), eps(eps) {
  weight = register_parameter("weight", torch::ones({channels}));
  bias = register_parameter("bias", torch::zeros({channels}));
}

torch::Tensor LayerNorm2dImpl::forward(torch::Tensor x) {
  x = x.permute({0, 2, 3, 1});
  x = torch::layer_norm(x, {channels}, weight, bias, eps);
  return x.permute({0, 3, 1, 2});
}

LayerNormLastImpl::LayerNormLastImpl(int64_t dim, double eps) : dim(dim), eps(eps) {
  weight = register_parameter("weight", torch::ones({dim}));
  bias = register_parameter("bias", torch::zeros({dim}));
}

torch::Tensor LayerNormLastImpl::forward(const torch::Tensor& x) {
  return torch::layer_norm(x, {dim}, weight, bias, eps);
}

// --- MLP -------------------------------------------------------------------------------------

Seq mlp(int64_t in_channels, const std::vector<int64_t>& hidden_channels, act activation,
        double dropout, bool bias) {
  TORCH_CHECK(!hidden_channels.empty(), "mlp needs at least one layer");
  Seq seq;
  int64_t in_dim = in_channels;
  for (size_t i = 0; i + 1 < hidden_channels.size(); ++i) {
    seq->push_back(nn::Linear(nn::LinearOptions(in_dim, hidden_channels[i]).bias(bias)));
    seq->push_back(Activation(activation, false));
    seq->push_back(nn::Dropout(nn::DropoutOptions(dropout)));
    in_dim = hidden_channels[i];
  }
  seq->push_back(nn::Linear(nn::LinearOptions(in_dim, hidden_channels.back()).bias(bias)));
  seq->push_back(nn::Dropout(nn::DropoutOptions(dropout)));
  return seq;
}

// --- option checks ----------------------------------------------------------------------------

void validate_options(const model_options& o, const std::string& family, option_support s) {
  TORCH_CHECK(o.num_classes >= 0, family, ": num_classes must be >= 0, got ", o.num_classes);
  TORCH_CHECK(o.in_channels > 0, family, ": in_channels must be positive, got ", o.in_channels);
  TORCH_CHECK(s.dropout || o.dropout < 0, family, " has no classifier dropout");
  TORCH_CHECK(o.dropout < 1.0, family, ": dropout must be < 1, got ", o.dropout);
  TORCH_CHECK(s.drop_path || o.drop_path <= 0, family, " has no stochastic depth (drop_path)");
  TORCH_CHECK(o.drop_path < 1.0, family, ": drop_path must be < 1, got ", o.drop_path);
  TORCH_CHECK(s.width_mult || o.width_mult == 1.0, family,
              " has no width multiplier (its variants are separate models)");
  TORCH_CHECK(o.width_mult > 0, family, ": width_mult must be positive, got ", o.width_mult);
}

// --- helpers -----------------------------------------------------------------------------------

int64_t round_channels(double v, int64_t divisor, int64_t min_value) {
  if (min_value < 0)
    min_value = divisor;
  // Python: max(min_value, int(v + divisor / 2) // divisor * divisor)
  const auto rounded =
      static_cast<int64_t>(v + static_cast<double>(divisor) / 2.0) / divisor * divisor;
  int64_t new_v = std::max(min_value, rounded);
  if (static_cast<double>(new_v) < 0.9 * v)
    new_v += divisor;
  return new_v;
}

torch::Tensor pool_flatten(const torch::Tensor& x) {
  return x.mean({2, 3});
}

void init_cnn(nn::Module& m) {
  torch::NoGradGuard no_grad;
  for (auto& sub : m.modules(/*include_self=*/false)) {
    if (auto* c = sub->as<nn::Conv2d>()) {
      nn::init::kaiming_normal_(c->weight, 0.0, torch::kFanOut, torch::kReLU);
      if (c->bias.defined())
        c->bias.zero_();
    } else if (auto* b = sub->as<nn::BatchNorm2d>()) {
      b->weight.fill_(1.0);
      b->bias.zero_();
    } else if (auto* g = sub->as<nn::GroupNorm>()) {
      g->weight.fill_(1.0);
      g->bias.zero_();
    }
  }
}

void init_trunc_normal(const torch::Tensor& w, double std, double mean, double a, double b) {
  TORCH_CHECK(a < b && std > 0, "init_trunc_normal: bad bounds or std");
  torch::NoGradGuard no_grad;
  // Rejection sampling: the same distribution as torch's inverse-CDF method,
  // much faster (usually the bounds are many sigmas out and nothing is redrawn).
  w.normal_(mean, std);
  for (int round = 0; round < 100; ++round) {
    auto out = (w < a).logical_or_(w > b);
    const auto n = out.sum().item<int64_t>();
    if (n == 0)
      return;
    w.masked_scatter_(out, torch::empty({n}, w.options()).normal_(mean, std));
  }
  w.clamp_(a, b); // bounds far in a tail: give up on the exact shape there
}

} // namespace rookery::zoo

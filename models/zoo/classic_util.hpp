// Small building blocks shared by the "classic" CNN families of the zoo
// (ResNet, VGG, AlexNet, SqueezeNet, DenseNet, GoogLeNet, Inception, MobileNet,
// MNASNet, ShuffleNet). Internal to models/zoo/; everything lives in
// rookery::zoo::classic so it cannot collide with other families' helpers.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "models/zoo/zoo.hpp"

namespace rookery::zoo::classic {

namespace nn = torch::nn;

inline nn::Conv2d conv2d(int64_t in, int64_t out, torch::ExpandingArray<2> k,
                         torch::ExpandingArray<2> stride = 1, torch::ExpandingArray<2> pad = 0,
                         int64_t groups = 1, bool bias = true, int64_t dilation = 1) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, k)
                      .stride(stride)
                      .padding(pad)
                      .groups(groups)
                      .bias(bias)
                      .dilation(dilation));
}

inline nn::BatchNorm2d batch_norm(int64_t n, double eps = 1e-5, double momentum = 0.1) {
  return nn::BatchNorm2d(nn::BatchNorm2dOptions(n).eps(eps).momentum(momentum));
}

inline nn::ReLU relu(bool inplace = true) {
  return nn::ReLU(nn::ReLUOptions().inplace(inplace));
}

inline nn::Functional hardswish() {
  return nn::Functional([](torch::Tensor x) { return torch::hardswish(x); });
}

inline nn::Dropout dropout(double p) {
  return nn::Dropout(nn::DropoutOptions(p));
}

/// timm's drop_path: zeroes whole samples of a residual branch with
/// probability p while training, rescaling the others by 1 / (1 - p).
inline torch::Tensor drop_path(const torch::Tensor& x, double p, bool training) {
  if (p <= 0 || !training)
    return x;
  const double keep = 1.0 - p;
  std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
  shape[0] = x.size(0);
  auto mask = torch::empty(shape, x.options()).bernoulli_(keep);
  return x * mask / keep;
}

/// torch.nn.init.trunc_normal_(w, mean, std, a, b) (a, b absolute bounds).
inline void trunc_normal_(torch::Tensor w, double mean, double std, double a, double b) {
  torch::NoGradGuard ng;
  auto cdf = [](double v) { return (1.0 + std::erf(v / std::sqrt(2.0))) / 2.0; };
  const double l = cdf((a - mean) / std), u = cdf((b - mean) / std);
  w.uniform_(2 * l - 1, 2 * u - 1);
  w.erfinv_();
  w.mul_(std * std::sqrt(2.0));
  w.add_(mean);
  w.clamp_(a, b);
}

/// kaiming_normal_(w, mode, nonlinearity=relu): std = sqrt(2 / fan).
inline void kaiming_normal_(torch::Tensor w, bool fan_out) {
  if (fan_out)
    nn::init::kaiming_normal_(w, 0.0, torch::kFanOut, torch::kReLU);
  else
    nn::init::kaiming_normal_(w, 0.0, torch::kFanIn, torch::kReLU);
}

/// A Sequential that can itself be an element of a Sequential (LibTorch's
/// AnyModule needs a non-template forward).
class SeqImpl : public nn::SequentialImpl {
public:
  using nn::SequentialImpl::SequentialImpl;
  torch::Tensor forward(torch::Tensor x) { return nn::SequentialImpl::forward(std::move(x)); }
};
TORCH_MODULE(Seq);

/// torchvision's _make_divisible (from the TF reference code): v rounded to a
/// multiple of divisor, at least min_value (default divisor), never more than
/// 10% below v. MNASNet's _round_to_multiple_of is the same with bias 0.9.
inline int64_t make_divisible(double v, int64_t divisor, int64_t min_value = 0) {
  if (min_value <= 0)
    min_value = divisor;
  const auto d = static_cast<double>(divisor);
  int64_t nv = std::max<int64_t>(min_value, static_cast<int64_t>(v + d / 2) / divisor * divisor);
  if (static_cast<double>(nv) < 0.9 * v)
    nv += divisor;
  return nv;
}

enum class act { none, relu, relu6, hardswish };

/// torchvision's Conv2dNormActivation: Sequential(conv (no bias), BatchNorm[, activation]),
/// padding (k - 1) / 2 * dilation.
inline Seq conv_bn_act(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t groups,
                                  act a, double eps = 1e-5, double momentum = 0.1,
                                  int64_t dilation = 1) {
  Seq s(conv2d(in, out, k, stride, (k - 1) / 2 * dilation, groups, false, dilation),
                   batch_norm(out, eps, momentum));
  switch (a) {
    case act::none: break;
    case act::relu: s->push_back(relu()); break;
    case act::relu6: s->push_back(nn::ReLU6(nn::ReLU6Options().inplace(true))); break;
    case act::hardswish: s->push_back(hardswish()); break;
  }
  return s;
}

/// Runs a Sequential, keeping the outputs of the children whose index is in `taps`.
inline torch::Tensor run_sequential(nn::Sequential& seq, torch::Tensor x,
                                    const std::vector<size_t>& taps = {},
                                    std::vector<torch::Tensor>* out = nullptr) {
  size_t i = 0;
  for (auto& m : *seq) {
    x = m.forward(x);
    if (out)
      for (auto t : taps)
        if (t == i)
          out->push_back(x);
    ++i;
  }
  return x;
}

/// A Linear with torch's default init, or nullptr for n == 0.
inline nn::Linear linear_or_null(int64_t in, int64_t n) {
  return n > 0 ? nn::Linear(in, n) : nn::Linear{nullptr};
}

/// Fails (c10::Error, which create_model() turns into bad_request) for
/// model_options a family cannot honour.
struct supports {
  bool dropout = false, drop_path = false, width_mult = false;
  bool aux_logits = false; // aux_logits / transform_input (GoogLeNet, Inception V3)
};
inline void check_options(const model_options& o, const std::string& family, supports s) {
  TORCH_CHECK(o.num_classes >= 0, "num_classes must be >= 0, got ", o.num_classes);
  TORCH_CHECK(o.in_channels > 0, "in_channels must be positive, got ", o.in_channels);
  TORCH_CHECK(s.dropout || o.dropout < 0, family, " has no classifier dropout");
  TORCH_CHECK(o.dropout < 1.0, "dropout must be < 1, got ", o.dropout);
  TORCH_CHECK(s.drop_path || o.drop_path == 0, family, " has no stochastic depth (drop_path)");
  TORCH_CHECK(o.drop_path >= 0 && o.drop_path < 1.0, "drop_path must be in [0, 1), got ",
              o.drop_path);
  TORCH_CHECK(s.width_mult || o.width_mult == 1.0, family,
              " has no width multiplier (its variants are separate models)");
  TORCH_CHECK(o.width_mult > 0, "width_mult must be positive, got ", o.width_mult);
  TORCH_CHECK(s.aux_logits || (o.aux_logits && !o.transform_input), family,
              " has no aux_logits / transform_input options");
}

} // namespace rookery::zoo::classic

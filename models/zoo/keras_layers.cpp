#include "models/zoo/keras_layers.hpp"

#include <torch/torch.h>

namespace rookery::zoo::keras {

namespace nn = torch::nn;
namespace F = torch::nn::functional;

std::pair<int64_t, int64_t> same_padding(int64_t in, int64_t kernel, int64_t stride) {
  const int64_t out = (in + stride - 1) / stride;
  const int64_t total = std::max<int64_t>((out - 1) * stride + kernel - in, 0);
  return {total / 2, total - total / 2};
}

ConvBnImpl::ConvBnImpl(const ConvBnOptions& o) : options(o) {
  TORCH_CHECK(o.in > 0 && o.out > 0 && o.kh > 0 && o.kw > 0 && o.stride > 0,
              "bad Keras conv options");
  TORCH_CHECK(!o.depthwise || o.in == o.out, "a depthwise conv keeps its channels");
  TORCH_CHECK(o.zero_pad.empty() || o.zero_pad.size() == 4, "zero_pad is {left, right, top, bottom}");
  // 'same' at stride 1 with odd kernels is symmetric: the conv pads by itself.
  symmetric_ = o.pad == padding::valid || (o.stride == 1 && o.kh % 2 == 1 && o.kw % 2 == 1);
  auto co = nn::Conv2dOptions(o.in, o.out, {o.kh, o.kw}).stride(o.stride).bias(false);
  if (o.pad == padding::same && symmetric_)
    co.padding(torch::ExpandingArray<2>({o.kh / 2, o.kw / 2}));
  if (o.depthwise)
    co.groups(o.in);
  conv = register_module("conv", nn::Conv2d(co));
  bn = register_module("bn", nn::BatchNorm2d(
                               nn::BatchNorm2dOptions(o.out).eps(1e-3).momentum(1.0 - o.bn_momentum)));
  if (!o.bn_scale)
    bn->weight.requires_grad_(false); // scale=False: gamma is 1 and is never trained
}

torch::Tensor ConvBnImpl::forward(torch::Tensor x) {
  if (!options.zero_pad.empty())
    x = F::pad(x, F::PadFuncOptions(options.zero_pad));
  if (!symmetric_) {
    auto [top, bottom] = same_padding(x.size(2), options.kh, options.stride);
    auto [left, right] = same_padding(x.size(3), options.kw, options.stride);
    x = F::pad(x, F::PadFuncOptions({left, right, top, bottom}));
  }
  return apply_act(options.activation, bn(conv(x)), /*inplace=*/true);
}

nn::Sequential keras_head(int64_t features, int64_t num_classes, double dropout1, double dropout2) {
  nn::Sequential head(nn::Linear(features, 256), nn::ReLU(nn::ReLUOptions(true)),
                      nn::Dropout(dropout1), nn::Linear(256, 128), nn::ReLU(nn::ReLUOptions(true)),
                      nn::Dropout(dropout2), nn::Linear(128, num_classes));
  init_keras(*head);
  return head;
}

void init_keras(nn::Module& m) {
  torch::NoGradGuard ng;
  for (auto& sub : m.modules(/*include_self=*/false)) {
    if (auto* c = sub->as<nn::Conv2d>()) {
      if (c->options.groups() > 1) {
        // Keras's depthwise glorot: fans of the [kh, kw, C, 1] kernel.
        const auto rf = c->weight.size(2) * c->weight.size(3);
        const double limit = std::sqrt(6.0 / static_cast<double>(rf * c->weight.size(0) + rf));
        c->weight.uniform_(-limit, limit);
      } else {
        nn::init::xavier_uniform_(c->weight);
      }
      if (c->bias.defined())
        nn::init::zeros_(c->bias);
    } else if (auto* l = sub->as<nn::Linear>()) {
      nn::init::xavier_uniform_(l->weight);
      nn::init::zeros_(l->bias);
    } else if (auto* b = sub->as<nn::BatchNorm2d>()) {
      nn::init::ones_(b->weight);
      nn::init::zeros_(b->bias);
    }
  }
}

} // namespace rookery::zoo::keras

// keras_mobilenet_v2: Keras's MobileNetV2 (keras.applications, alpha = width_mult,
// as in nsfwjs's MobileNetV2 model) with nsfwjs's dense head. A `custom` zoo
// entry, like keras_inception_v3 (its parity is with nsfwjs itself).
//
// Module names (the converter scripts/nsfwjs/convert_weights.py maps Keras's):
//   stem.{conv,bn}                     Conv1, bn_Conv1 (after ZeroPadding2D Conv1_pad)
//   blocks.<i>.{expand,depthwise,project}.{conv,bn}
//                                      expanded_conv_* (i = 0, no expand), block_<i>_*
//   head_conv.{conv,bn}                Conv_1, Conv_1_bn
//   classifier.{0,3,6}                 dense_1, dense_2, dense_3
// What Keras computes, unlike torchvision's mobilenet_v2: BatchNormalization
// epsilon 1e-3; every stride-2 convolution is 'valid' after an explicit
// ZeroPadding2D of (0, 1) rows and columns (keras's correct_pad at an even
// input size: the bottom/right side only, where PyTorch pads 1 on every
// side); ReLU6 after the expand and depthwise convs and the last 1x1 conv.
// forward_features(): the global average of the last conv (1280-d, or
// 1280 * width_mult above 1); forward(): nsfwjs's head, logits.
#include <torch/torch.h>

#include "models/zoo/classic_util.hpp"
#include "models/zoo/families.hpp"
#include "models/zoo/keras_layers.hpp"
#include "models/zoo/zoo.hpp"

namespace rookery::zoo {

namespace {

namespace nn = torch::nn;
using keras::ConvBn;
using keras::ConvBnOptions;
using keras::padding;

const std::vector<int64_t> kPadBottomRight = {0, 1, 0, 1}; // {left, right, top, bottom}

ConvBn unit(int64_t in, int64_t out, int64_t k, int64_t stride, bool depthwise, act a) {
  ConvBnOptions o;
  o.in = in;
  o.out = out;
  o.kh = o.kw = k;
  o.stride = stride;
  o.depthwise = depthwise;
  if (stride > 1) {
    o.pad = padding::valid;
    o.zero_pad = kPadBottomRight;
  }
  o.bn_scale = true;
  o.bn_momentum = 0.999;
  o.activation = a;
  return ConvBn(o);
}

// Keras's _inverted_res_block.
class KerasInvertedResidualImpl : public nn::Module {
public:
  KerasInvertedResidualImpl(int64_t in, int64_t out, int64_t stride, int64_t expansion) {
    const int64_t hidden = in * expansion;
    if (expansion != 1)
      expand = register_module("expand", unit(in, hidden, 1, 1, false, act::relu6));
    depthwise = register_module("depthwise", unit(hidden, hidden, 3, stride, true, act::relu6));
    project = register_module("project", unit(hidden, out, 1, 1, false, act::none));
    residual = stride == 1 && in == out;
  }
  torch::Tensor forward(torch::Tensor x) {
    auto y = expand.is_empty() ? x : expand(x);
    y = project(depthwise(y));
    return residual ? x + y : y;
  }
  ConvBn expand{nullptr}, depthwise{nullptr}, project{nullptr};
  bool residual = false;
};
TORCH_MODULE(KerasInvertedResidual);

class KerasMobileNetV2Impl : public ZooModelImpl {
public:
  explicit KerasMobileNetV2Impl(const model_options& o)
      : dropout1_(o.dropout < 0 ? 0.5 : o.dropout), dropout2_(o.dropout < 0 ? 0.25 : o.dropout) {
    const double alpha = o.width_mult;
    auto divisible = [](double v) { return round_channels(v, 8); }; // Keras's _make_divisible(v, 8)
    int64_t in = divisible(32 * alpha);
    stem = register_module("stem", unit(o.in_channels, in, 3, 2, false, act::relu6));
    // (expansion t, filters c, repeats n, first stride s), as in Keras.
    const int64_t cfg[7][4] = {{1, 16, 1, 1},  {6, 24, 2, 2},  {6, 32, 3, 2}, {6, 64, 4, 2},
                               {6, 96, 3, 1},  {6, 160, 3, 2}, {6, 320, 1, 1}};
    blocks = register_module("blocks", nn::ModuleList());
    std::vector<int64_t> strides; // each block's output stride
    for (const auto& c : cfg) {
      const int64_t out = divisible(static_cast<double>(static_cast<int64_t>(c[1] * alpha)));
      for (int64_t r = 0; r < c[2]; ++r) {
        const int64_t s = r == 0 ? c[3] : 1;
        blocks->push_back(KerasInvertedResidual(in, out, s, c[0]));
        strides.push_back((strides.empty() ? 2 : strides.back()) * s);
        in = out;
      }
    }
    // Stage ends for forward_stages(): the last block before the stride doubles.
    for (size_t i = 0; i + 1 < strides.size(); ++i)
      if (strides[i + 1] > strides[i])
        stage_ends_.push_back(static_cast<int64_t>(i));
    features_ = alpha > 1.0 ? divisible(1280 * alpha) : 1280;
    head_conv = register_module("head_conv", unit(in, features_, 1, 1, false, act::relu6));
    keras::init_keras(*this);
    reset_classifier(o.num_classes);
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = forward_features(x);
    return classifier.is_empty() ? x : classifier->forward(x);
  }

  torch::Tensor forward_features(torch::Tensor x) override {
    return torch::flatten(torch::adaptive_avg_pool2d(forward_stages(x).back(), {1, 1}), 1);
  }

  /// The last block at strides 2, 4, 8 and 16, then head_conv (stride 32).
  std::vector<torch::Tensor> forward_stages(torch::Tensor x) override {
    std::vector<torch::Tensor> out;
    x = stem(x);
    size_t next = 0;
    for (size_t i = 0; i < blocks->size(); ++i) {
      x = blocks[i]->as<KerasInvertedResidualImpl>()->forward(x);
      if (next < stage_ends_.size() && static_cast<int64_t>(i) == stage_ends_[next]) {
        out.push_back(x);
        ++next;
      }
    }
    out.push_back(head_conv(x));
    return out;
  }

  int64_t num_features() const override { return features_; }

  void reset_classifier(int64_t n) override {
    TORCH_CHECK(n >= 0, "num_classes must be >= 0");
    if (!classifier.is_empty())
      unregister_module("classifier");
    classifier = nn::Sequential{nullptr};
    if (n > 0)
      classifier =
        register_module("classifier", keras::keras_head(features_, n, dropout1_, dropout2_));
  }

  std::vector<std::shared_ptr<nn::Module>> backbone() override {
    return {stem.ptr(), blocks.ptr(), head_conv.ptr()};
  }

  std::shared_ptr<nn::Module> head() override {
    if (classifier.is_empty())
      return std::make_shared<nn::IdentityImpl>();
    return classifier.ptr();
  }

  ConvBn stem{nullptr}, head_conv{nullptr};
  nn::ModuleList blocks{nullptr};
  nn::Sequential classifier{nullptr};

private:
  double dropout1_, dropout2_;
  int64_t features_ = 1280;
  std::vector<int64_t> stage_ends_;
};

} // namespace

void register_keras_mobilenet_models() {
  model_entry e;
  e.name = "keras_mobilenet_v2";
  e.family = "keras_mobilenet";
  e.default_size = 224;
  e.custom = true;
  e.make = [](const model_options& o) -> std::shared_ptr<ZooModelImpl> {
    classic::check_options(o, "keras_mobilenet_v2", {/*dropout=*/true, false, /*width_mult=*/true});
    return std::make_shared<KerasMobileNetV2Impl>(o);
  };
  register_model(std::move(e));
}

} // namespace rookery::zoo

#include "models/zoo/mobilenet.hpp"

#include "models/zoo/classic_util.hpp"
#include "models/zoo/families.hpp"

namespace rookery::zoo {

namespace nn = torch::nn;
using namespace classic;

namespace {

// Indices of `features` that end a stride level: i such that block i + 1
// downsamples, and the last one.
std::vector<size_t> stride_taps(const std::vector<int64_t>& strides) {
  std::vector<size_t> taps;
  for (size_t i = 0; i + 1 < strides.size(); ++i)
    if (strides[i + 1] > 1)
      taps.push_back(i);
  taps.push_back(strides.size() - 1);
  return taps;
}

// --- MobileNet V2 --------------------------------------------------------------

class V2InvertedResidualImpl : public nn::Module {
public:
  V2InvertedResidualImpl(int64_t inp, int64_t oup, int64_t stride, int64_t expand) {
    TORCH_CHECK(stride == 1 || stride == 2, "stride should be 1 or 2, got ", stride);
    const int64_t hidden = inp * expand;
    use_res_ = stride == 1 && inp == oup;
    conv = nn::Sequential();
    if (expand != 1)
      conv->push_back(conv_bn_act(inp, hidden, 1, 1, 1, act::relu6));
    conv->push_back(conv_bn_act(hidden, hidden, 3, stride, hidden, act::relu6));
    conv->push_back(conv2d(hidden, oup, 1, 1, 0, 1, /*bias=*/false));
    conv->push_back(batch_norm(oup));
    register_module("conv", conv);
  }
  torch::Tensor forward(torch::Tensor x) {
    return use_res_ ? x + conv->forward(x) : conv->forward(x);
  }
  nn::Sequential conv{nullptr};

private:
  bool use_res_ = false;
};
TORCH_MODULE(V2InvertedResidual);

// --- MobileNet V3 --------------------------------------------------------------

class V3SqueezeExcitationImpl : public nn::Module {
public:
  V3SqueezeExcitationImpl(int64_t c, int64_t squeeze) {
    fc1 = register_module("fc1", conv2d(c, squeeze, 1));
    fc2 = register_module("fc2", conv2d(squeeze, c, 1));
  }
  torch::Tensor forward(torch::Tensor x) {
    auto s = torch::adaptive_avg_pool2d(x, {1, 1});
    s = fc2(torch::relu(fc1(s)));
    return torch::hardsigmoid(s) * x;
  }
  nn::Conv2d fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(V3SqueezeExcitation);

struct v3_config {
  int64_t in, kernel, expanded, out;
  bool se, hs;
  int64_t stride, dilation;
};

constexpr double v3_eps = 0.001, v3_momentum = 0.01;

class V3InvertedResidualImpl : public nn::Module {
public:
  explicit V3InvertedResidualImpl(const v3_config& c) {
    TORCH_CHECK(c.stride == 1 || c.stride == 2, "illegal stride value");
    use_res_ = c.stride == 1 && c.in == c.out;
    const act a = c.hs ? act::hardswish : act::relu;
    block = nn::Sequential();
    if (c.expanded != c.in)
      block->push_back(conv_bn_act(c.in, c.expanded, 1, 1, 1, a, v3_eps, v3_momentum));
    const int64_t stride = c.dilation > 1 ? 1 : c.stride;
    block->push_back(conv_bn_act(c.expanded, c.expanded, c.kernel, stride, c.expanded, a, v3_eps,
                                 v3_momentum, c.dilation));
    if (c.se)
      block->push_back(V3SqueezeExcitation(c.expanded, make_divisible(static_cast<double>(c.expanded / 4), 8)));
    block->push_back(conv_bn_act(c.expanded, c.out, 1, 1, 1, act::none, v3_eps, v3_momentum));
    register_module("block", block);
  }
  torch::Tensor forward(torch::Tensor x) {
    auto r = block->forward(x);
    if (use_res_)
      r += x;
    return r;
  }
  nn::Sequential block{nullptr};

private:
  bool use_res_ = false;
};
TORCH_MODULE(V3InvertedResidual);

void init_mobilenet(nn::Module& m) {
  for (auto& c : m.modules(false)) {
    if (auto* cv = c->as<nn::Conv2d>()) {
      kaiming_normal_(cv->weight, /*fan_out=*/true);
      if (cv->bias.defined())
        nn::init::zeros_(cv->bias);
    } else if (auto* b = c->as<nn::BatchNorm2d>()) {
      nn::init::ones_(b->weight);
      nn::init::zeros_(b->bias);
    } else if (auto* l = c->as<nn::Linear>()) {
      nn::init::normal_(l->weight, 0, 0.01);
      nn::init::zeros_(l->bias);
    }
  }
}

} // namespace

// --- MobileNetV2Impl -----------------------------------------------------------------

MobileNetV2Impl::MobileNetV2Impl(const MobileNetV2Options& o) {
  TORCH_CHECK(o.num_classes >= 0 && o.in_channels > 0 && o.width_mult > 0, "bad MobileNetV2 options");
  const int64_t setting[7][4] = {{1, 16, 1, 1},  {6, 24, 2, 2},  {6, 32, 3, 2}, {6, 64, 4, 2},
                                 {6, 96, 3, 1},  {6, 160, 3, 2}, {6, 320, 1, 1}};
  int64_t input = make_divisible(32 * o.width_mult, o.round_nearest);
  last_channel_ = make_divisible(1280 * std::max(1.0, o.width_mult), o.round_nearest);
  features = nn::Sequential(conv_bn_act(o.in_channels, input, 3, 2, 1, act::relu6));
  std::vector<int64_t> strides{2};
  for (auto& s : setting) {
    const int64_t out = make_divisible(static_cast<double>(s[1]) * o.width_mult, o.round_nearest);
    for (int64_t i = 0; i < s[2]; ++i) {
      const int64_t stride = i == 0 ? s[3] : 1;
      features->push_back(V2InvertedResidual(input, out, stride, s[0]));
      strides.push_back(stride);
      input = out;
    }
  }
  features->push_back(conv_bn_act(input, last_channel_, 1, 1, 1, act::relu6));
  strides.push_back(1);
  taps_ = stride_taps(strides);
  register_module("features", features);
  classifier = register_module("classifier", nn::Sequential(dropout(o.dropout)));
  reset_classifier(o.num_classes);
  init_mobilenet(*this);
}

void MobileNetV2Impl::reset_classifier(int64_t n) {
  TORCH_CHECK(n >= 0, "num_classes must be >= 0");
  if (fc)
    classifier->unregister_module("1");
  fc = nullptr;
  if (n > 0) {
    fc = nn::Linear(last_channel_, n);
    nn::init::normal_(fc->weight, 0, 0.01);
    nn::init::zeros_(fc->bias);
    classifier->register_module("1", fc);
  }
}

torch::Tensor MobileNetV2Impl::forward_features(torch::Tensor x) {
  return torch::flatten(torch::adaptive_avg_pool2d(features->forward(x), {1, 1}), 1);
}

torch::Tensor MobileNetV2Impl::forward(torch::Tensor x) {
  x = forward_features(x);
  if (!fc)
    return x;
  return fc(classifier->forward(x));
}

std::vector<torch::Tensor> MobileNetV2Impl::forward_stages(torch::Tensor x) {
  std::vector<torch::Tensor> out;
  run_sequential(features, x, taps_, &out);
  return out;
}

std::vector<std::shared_ptr<nn::Module>> MobileNetV2Impl::backbone() {
  return {features.ptr()};
}

std::shared_ptr<nn::Module> MobileNetV2Impl::head() {
  if (fc)
    return fc.ptr();
  return std::make_shared<nn::IdentityImpl>();
}

// --- MobileNetV3Impl -----------------------------------------------------------------

MobileNetV3Impl::MobileNetV3Impl(const MobileNetV3Options& o) {
  TORCH_CHECK(o.num_classes >= 0 && o.in_channels > 0 && o.width_mult > 0, "bad MobileNetV3 options");
  const int64_t rd = o.reduced_tail ? 2 : 1;
  const int64_t dil = o.dilated ? 2 : 1;
  auto adj = [&](int64_t c) { return make_divisible(static_cast<double>(c) * o.width_mult, 8); };
  auto cfg = [&](int64_t in, int64_t k, int64_t e, int64_t out, bool se, bool hs, int64_t s, int64_t d) {
    return v3_config{adj(in), k, adj(e), adj(out), se, hs, s, d};
  };
  std::vector<v3_config> setting;
  int64_t last;
  if (o.arch == "mobilenet_v3_large") {
    setting = std::vector<v3_config>{cfg(16, 3, 16, 16, false, false, 1, 1),
               cfg(16, 3, 64, 24, false, false, 2, 1),
               cfg(24, 3, 72, 24, false, false, 1, 1),
               cfg(24, 5, 72, 40, true, false, 2, 1),
               cfg(40, 5, 120, 40, true, false, 1, 1),
               cfg(40, 5, 120, 40, true, false, 1, 1),
               cfg(40, 3, 240, 80, false, true, 2, 1),
               cfg(80, 3, 200, 80, false, true, 1, 1),
               cfg(80, 3, 184, 80, false, true, 1, 1),
               cfg(80, 3, 184, 80, false, true, 1, 1),
               cfg(80, 3, 480, 112, true, true, 1, 1),
               cfg(112, 3, 672, 112, true, true, 1, 1),
               cfg(112, 5, 672, 160 / rd, true, true, 2, dil),
               cfg(160 / rd, 5, 960 / rd, 160 / rd, true, true, 1, dil),
               cfg(160 / rd, 5, 960 / rd, 160 / rd, true, true, 1, dil)};
    last = adj(1280 / rd);
  } else if (o.arch == "mobilenet_v3_small") {
    setting = std::vector<v3_config>{cfg(16, 3, 16, 16, true, false, 2, 1),
               cfg(16, 3, 72, 24, false, false, 2, 1),
               cfg(24, 3, 88, 24, false, false, 1, 1),
               cfg(24, 5, 96, 40, true, true, 2, 1),
               cfg(40, 5, 240, 40, true, true, 1, 1),
               cfg(40, 5, 240, 40, true, true, 1, 1),
               cfg(40, 5, 120, 48, true, true, 1, 1),
               cfg(48, 5, 144, 48, true, true, 1, 1),
               cfg(48, 5, 288, 96 / rd, true, true, 2, dil),
               cfg(96 / rd, 5, 576 / rd, 96 / rd, true, true, 1, dil),
               cfg(96 / rd, 5, 576 / rd, 96 / rd, true, true, 1, dil)};
    last = adj(1024 / rd);
  } else {
    TORCH_CHECK(false, "unsupported MobileNetV3 arch ", o.arch);
  }
  last_channel_ = last;
  features = nn::Sequential(
    conv_bn_act(o.in_channels, setting[0].in, 3, 2, 1, act::hardswish, v3_eps, v3_momentum));
  std::vector<int64_t> strides{2};
  for (auto& c : setting) {
    features->push_back(V3InvertedResidual(c));
    strides.push_back(c.dilation > 1 ? 1 : c.stride);
  }
  const int64_t lin = setting.back().out, lout = 6 * lin;
  features->push_back(conv_bn_act(lin, lout, 1, 1, 1, act::hardswish, v3_eps, v3_momentum));
  strides.push_back(1);
  taps_ = stride_taps(strides);
  register_module("features", features);
  avgpool = register_module("avgpool", nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions(1)));
  classifier = register_module(
    "classifier", nn::Sequential(nn::Linear(lout, last_channel_), hardswish(), dropout(o.dropout)));
  reset_classifier(o.num_classes);
  init_mobilenet(*this);
}

void MobileNetV3Impl::reset_classifier(int64_t n) {
  TORCH_CHECK(n >= 0, "num_classes must be >= 0");
  if (fc)
    classifier->unregister_module("3");
  fc = nullptr;
  if (n > 0) {
    fc = nn::Linear(last_channel_, n);
    nn::init::normal_(fc->weight, 0, 0.01);
    nn::init::zeros_(fc->bias);
    classifier->register_module("3", fc);
  }
}

torch::Tensor MobileNetV3Impl::forward_features(torch::Tensor x) {
  x = torch::flatten(avgpool(features->forward(x)), 1);
  return classifier->forward(x);
}

torch::Tensor MobileNetV3Impl::forward(torch::Tensor x) {
  x = forward_features(x);
  return fc ? fc(x) : x;
}

std::vector<torch::Tensor> MobileNetV3Impl::forward_stages(torch::Tensor x) {
  std::vector<torch::Tensor> out;
  run_sequential(features, x, taps_, &out);
  return out;
}

std::vector<std::shared_ptr<nn::Module>> MobileNetV3Impl::backbone() {
  std::vector<std::shared_ptr<nn::Module>> out{features.ptr(), avgpool.ptr()};
  for (size_t i = 0; i < classifier->size(); ++i)
    out.push_back(classifier->ptr(i));
  return out;
}

std::shared_ptr<nn::Module> MobileNetV3Impl::head() {
  if (fc)
    return fc.ptr();
  return std::make_shared<nn::IdentityImpl>();
}

// --- registration --------------------------------------------------------------------

void register_mobilenet_models() {
  {
    model_entry e;
    e.name = "mobilenet_v2";
    e.family = "mobilenet_v2";
    e.make = [](const model_options& o) -> std::shared_ptr<ZooModelImpl> {
      check_options(o, "mobilenet_v2", {/*dropout=*/true, false, /*width_mult=*/true});
      MobileNetV2Options m;
      m.num_classes = o.num_classes;
      m.in_channels = o.in_channels;
      m.width_mult = o.width_mult;
      if (o.dropout >= 0)
        m.dropout = o.dropout;
      return MobileNetV2(m).ptr();
    };
    register_model(std::move(e));
  }
  for (std::string arch : {"mobilenet_v3_large", "mobilenet_v3_small"}) {
    model_entry e;
    e.name = arch;
    e.family = "mobilenet_v3";
    e.heavy = arch != "mobilenet_v3_small";
    e.make = [arch](const model_options& o) -> std::shared_ptr<ZooModelImpl> {
      check_options(o, "mobilenet_v3", {/*dropout=*/true, false, /*width_mult=*/true});
      MobileNetV3Options m;
      m.arch = arch;
      m.num_classes = o.num_classes;
      m.in_channels = o.in_channels;
      m.width_mult = o.width_mult;
      if (o.dropout >= 0)
        m.dropout = o.dropout;
      return MobileNetV3(m).ptr();
    };
    register_model(std::move(e));
  }
}

} // namespace rookery::zoo

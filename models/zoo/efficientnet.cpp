#include "models/zoo/efficientnet.hpp"

#include <cmath>

#include <torch/nn/init.h>
#include <torch/nn/modules/dropout.h>

#include "models/zoo/families.hpp"

namespace rookery::zoo {

namespace nn = torch::nn;

namespace {

struct stage_cfg {
  bool fused;
  double expand;
  int64_t kernel, stride, in, out, layers;
};

struct variant {
  std::vector<stage_cfg> stages; // after width / depth scaling
  int64_t last_channel = 0;      // 0: 4 * last stage's out
  double dropout = 0.2;
  double bn_eps = 1e-5, bn_momentum = 0.1;
  int64_t default_size = 224;
  bool v2 = false;
};

int64_t adjust_channels(double channels, double width_mult) {
  return round_channels(channels * width_mult, 8);
}

bool make_variant(const std::string& arch, double user_width, variant& v) {
  struct v1 {
    const char* name;
    double width, depth, dropout;
    int64_t size;
  };
  static const v1 v1s[] = {
      {"efficientnet_b0", 1.0, 1.0, 0.2, 224}, {"efficientnet_b1", 1.0, 1.1, 0.2, 240},
      {"efficientnet_b2", 1.1, 1.2, 0.3, 288}, {"efficientnet_b3", 1.2, 1.4, 0.3, 300},
      {"efficientnet_b4", 1.4, 1.8, 0.4, 380}, {"efficientnet_b5", 1.6, 2.2, 0.4, 456},
      {"efficientnet_b6", 1.8, 2.6, 0.5, 528}, {"efficientnet_b7", 2.0, 3.1, 0.5, 600},
  };
  for (const auto& b : v1s) {
    if (arch != b.name)
      continue;
    // Table 1 of the EfficientNet paper: expand, kernel, stride, in, out, layers.
    const stage_cfg base[] = {
        {false, 1, 3, 1, 32, 16, 1},   {false, 6, 3, 2, 16, 24, 2},  {false, 6, 5, 2, 24, 40, 2},
        {false, 6, 3, 2, 40, 80, 3},   {false, 6, 5, 1, 80, 112, 3}, {false, 6, 5, 2, 112, 192, 4},
        {false, 6, 3, 1, 192, 320, 1},
    };
    const double w = b.width * user_width;
    for (auto s : base) {
      s.in = adjust_channels(static_cast<double>(s.in), w);
      s.out = adjust_channels(static_cast<double>(s.out), w);
      s.layers = static_cast<int64_t>(std::ceil(static_cast<double>(s.layers) * b.depth));
      v.stages.push_back(s);
    }
    v.dropout = b.dropout;
    v.default_size = b.size;
    const bool big =
        arch == "efficientnet_b5" || arch == "efficientnet_b6" || arch == "efficientnet_b7";
    v.bn_eps = big ? 1e-3 : 1e-5;
    v.bn_momentum = big ? 0.01 : 0.1;
    return true;
  }
  // Table 4 of the EfficientNetV2 paper (torchvision's settings).
  v.v2 = true;
  v.bn_eps = 1e-3;
  v.bn_momentum = 0.1;
  v.last_channel = 1280;
  if (arch == "efficientnet_v2_s") {
    v.stages = {{true, 1, 3, 1, 24, 24, 2},    {true, 4, 3, 2, 24, 48, 4},
                {true, 4, 3, 2, 48, 64, 4},    {false, 4, 3, 2, 64, 128, 6},
                {false, 6, 3, 1, 128, 160, 9}, {false, 6, 3, 2, 160, 256, 15}};
    v.dropout = 0.2;
    v.default_size = 384;
  } else if (arch == "efficientnet_v2_m") {
    v.stages = {{true, 1, 3, 1, 24, 24, 3},     {true, 4, 3, 2, 24, 48, 5},
                {true, 4, 3, 2, 48, 80, 5},     {false, 4, 3, 2, 80, 160, 7},
                {false, 6, 3, 1, 160, 176, 14}, {false, 6, 3, 2, 176, 304, 18},
                {false, 6, 3, 1, 304, 512, 5}};
    v.dropout = 0.3;
    v.default_size = 480;
  } else if (arch == "efficientnet_v2_l") {
    v.stages = {{true, 1, 3, 1, 32, 32, 4},     {true, 4, 3, 2, 32, 64, 7},
                {true, 4, 3, 2, 64, 96, 7},     {false, 4, 3, 2, 96, 192, 10},
                {false, 6, 3, 1, 192, 224, 19}, {false, 6, 3, 2, 224, 384, 25},
                {false, 6, 3, 1, 384, 640, 7}};
    v.dropout = 0.4;
    v.default_size = 480;
  } else {
    return false;
  }
  // torchvision's MBConvConfig rounds with width 1.0 (a no-op for these values).
  for (auto& s : v.stages)
    if (!s.fused) {
      s.in = adjust_channels(static_cast<double>(s.in), 1.0);
      s.out = adjust_channels(static_cast<double>(s.out), 1.0);
    }
  return true;
}

} // namespace

const std::vector<std::string>& efficientnet_names() {
  static const std::vector<std::string> n{
      "efficientnet_b0",   "efficientnet_b1",   "efficientnet_b2",  "efficientnet_b3",
      "efficientnet_b4",   "efficientnet_b5",   "efficientnet_b6",  "efficientnet_b7",
      "efficientnet_v2_s", "efficientnet_v2_m", "efficientnet_v2_l"};
  return n;
}

// --- MBConv / FusedMBConv --------------------------------------------------------------

MBConvImpl::MBConvImpl(const config& c, double sd_prob, double eps, double momentum) {
  TORCH_CHECK(c.stride >= 1 && c.stride <= 2, "illegal stride value");
  use_res_connect = c.stride == 1 && c.input_channels == c.out_channels;
  const int64_t expanded = adjust_channels(static_cast<double>(c.input_channels), c.expand_ratio);
  auto cna = [&](int64_t in, int64_t out, int64_t k) {
    return ConvNormActOptions(in, out, k).bn_eps(eps).bn_momentum(momentum).activation(act::silu);
  };
  block = Seq();
  if (c.fused) {
    if (expanded != c.input_channels) {
      block->push_back(conv_norm_act(cna(c.input_channels, expanded, c.kernel).stride(c.stride)));
      block->push_back(conv_norm_act(cna(expanded, c.out_channels, 1).activation(act::none)));
    } else {
      block->push_back(
          conv_norm_act(cna(c.input_channels, c.out_channels, c.kernel).stride(c.stride)));
    }
  } else {
    if (expanded != c.input_channels)
      block->push_back(conv_norm_act(cna(c.input_channels, expanded, 1)));
    block->push_back(
        conv_norm_act(cna(expanded, expanded, c.kernel).stride(c.stride).groups(expanded)));
    const int64_t squeeze = std::max<int64_t>(1, c.input_channels / 4);
    block->push_back(SqueezeExcitation(expanded, squeeze, act::silu, act::sigmoid));
    block->push_back(conv_norm_act(cna(expanded, c.out_channels, 1).activation(act::none)));
  }
  register_module("block", block);
  stochastic_depth = register_module("stochastic_depth", StochasticDepth(sd_prob, "row"));
}

torch::Tensor MBConvImpl::forward(const torch::Tensor& x) {
  auto out = block->forward(x);
  if (use_res_connect)
    out = stochastic_depth->forward(out) + x;
  return out;
}

// --- EfficientNet ----------------------------------------------------------------------

EfficientNetImpl::EfficientNetImpl(const std::string& arch, const model_options& o) {
  const bool v1 = arch.rfind("efficientnet_b", 0) == 0;
  validate_options(o, arch, {/*dropout=*/true, /*drop_path=*/true, /*width_mult=*/v1});
  variant v;
  TORCH_CHECK(make_variant(arch, o.width_mult, v), "unknown EfficientNet arch '", arch, "'");
  dropout_ = dropout_or(o, v.dropout);
  const double sd = drop_path_or(o, 0.2);

  features = Seq();
  features->push_back(conv_norm_act(ConvNormActOptions(o.in_channels, v.stages[0].in, 3)
                                        .stride(2)
                                        .bn_eps(v.bn_eps)
                                        .bn_momentum(v.bn_momentum)
                                        .activation(act::silu)));
  int64_t total = 0;
  for (const auto& s : v.stages)
    total += s.layers;
  int64_t block_id = 0;
  for (size_t si = 0; si < v.stages.size(); ++si) {
    const auto& s = v.stages[si];
    Seq stage;
    for (int64_t i = 0; i < s.layers; ++i) {
      MBConvImpl::config c;
      c.fused = s.fused;
      c.expand_ratio = s.expand;
      c.kernel = s.kernel;
      c.stride = i == 0 ? s.stride : 1;
      c.input_channels = i == 0 ? s.in : s.out;
      c.out_channels = s.out;
      const double p = sd * static_cast<double>(block_id) / static_cast<double>(total);
      stage->push_back(MBConv(c, p, v.bn_eps, v.bn_momentum));
      ++block_id;
    }
    // A stage is a tap when the next one downsamples, or when it is the last.
    const bool last = si + 1 == v.stages.size();
    if (last || v.stages[si + 1].stride > 1)
      taps_.push_back(features->size());
    features->push_back(stage);
  }
  const int64_t last_in = v.stages.back().out;
  num_features_ = v.last_channel > 0 ? v.last_channel : 4 * last_in;
  features->push_back(conv_norm_act(ConvNormActOptions(last_in, num_features_, 1)
                                        .bn_eps(v.bn_eps)
                                        .bn_momentum(v.bn_momentum)
                                        .activation(act::silu)));
  register_module("features", features);
  avgpool = register_module("avgpool", nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions(1)));
  init_cnn(*this);
  EfficientNetImpl::reset_classifier(o.num_classes); // not virtually: under construction
}

void EfficientNetImpl::reset_classifier(int64_t num_classes) {
  TORCH_CHECK(num_classes >= 0, "num_classes must be >= 0, got ", num_classes);
  Seq c;
  c->push_back(nn::Dropout(nn::DropoutOptions(dropout_).inplace(true)));
  if (num_classes > 0) {
    nn::Linear fc(num_features_, num_classes);
    torch::NoGradGuard ng;
    const double r = 1.0 / std::sqrt(static_cast<double>(num_classes));
    fc->weight.uniform_(-r, r);
    fc->bias.zero_();
    c->push_back(fc);
  }
  c->train(is_training());
  if (classifier)
    classifier = replace_module("classifier", c);
  else
    classifier = register_module("classifier", c);
}

torch::Tensor EfficientNetImpl::forward_features(torch::Tensor x) {
  return torch::flatten(avgpool(features->forward(std::move(x))), 1);
}

torch::Tensor EfficientNetImpl::forward(torch::Tensor x) {
  return classifier->forward(forward_features(std::move(x)));
}

std::vector<torch::Tensor> EfficientNetImpl::forward_stages(torch::Tensor x) {
  std::vector<torch::Tensor> out;
  size_t next = 0;
  for (size_t i = 0; next < taps_.size(); ++i) {
    x = features->ptr(i)->as<SeqImpl>()->forward(x);
    if (i == taps_[next]) {
      out.push_back(x);
      ++next;
    }
  }
  return out;
}

std::vector<std::shared_ptr<nn::Module>> EfficientNetImpl::backbone() {
  return {features.ptr(), avgpool.ptr()};
}

std::shared_ptr<nn::Module> EfficientNetImpl::head() {
  return classifier.ptr();
}

void register_efficientnet_models() {
  for (const auto& name : efficientnet_names()) {
    variant v;
    make_variant(name, 1.0, v);
    model_entry e;
    e.name = name;
    e.family = "efficientnet";
    e.default_size = v.default_size;
    e.heavy = !(name == "efficientnet_b0" || name == "efficientnet_v2_s");
    e.make = [name](const model_options& o) -> std::shared_ptr<ZooModelImpl> {
      return EfficientNet(name, o).ptr();
    };
    register_model(std::move(e));
  }
}

} // namespace rookery::zoo

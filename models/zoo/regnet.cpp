#include "models/zoo/regnet.hpp"

#include <cmath>
#include <set>

#include <torch/nn/init.h>

#include "models/zoo/families.hpp"

namespace rookery::zoo {

namespace nn = torch::nn;

regnet_block_params regnet_params_from_init(int64_t depth, int64_t w_0, double w_a, double w_m,
                                            int64_t group_width, double bottleneck_multiplier,
                                            double se_ratio) {
  constexpr int64_t QUANT = 8, STRIDE = 2;
  TORCH_CHECK(!(w_a < 0 || w_0 <= 0 || w_m <= 1 || w_0 % 8 != 0), "Invalid RegNet settings");
  // Same tensor ops, dtypes and scalars as torchvision (float32 arithmetic).
  auto widths_cont = torch::arange(depth) * w_a + w_0;
  auto block_capacity = torch::round(torch::log(widths_cont / w_0) / std::log(w_m));
  auto bw = (torch::round(torch::divide(w_0 * torch::pow(w_m, block_capacity), QUANT)) * QUANT)
                .to(torch::kInt);
  std::vector<int64_t> block_widths(static_cast<size_t>(depth));
  for (int64_t i = 0; i < depth; ++i)
    block_widths[static_cast<size_t>(i)] = bw[i].item<int>();

  // A stage starts wherever the width changes (and one more split at the end).
  std::vector<bool> splits;
  for (size_t i = 0; i <= block_widths.size(); ++i) {
    const int64_t w = i < block_widths.size() ? block_widths[i] : 0;
    const int64_t wp = i > 0 ? block_widths[i - 1] : 0;
    splits.push_back(w != wp);
  }
  regnet_block_params p;
  std::vector<int64_t> split_at;
  for (size_t i = 0; i < splits.size(); ++i) {
    if (splits[i]) {
      split_at.push_back(static_cast<int64_t>(i));
      if (i < block_widths.size())
        p.widths.push_back(block_widths[i]);
    }
  }
  for (size_t i = 1; i < split_at.size(); ++i)
    p.depths.push_back(split_at[i] - split_at[i - 1]);
  const size_t n = p.widths.size();
  TORCH_CHECK(p.depths.size() == n, "RegNet: inconsistent stage split");
  p.strides.assign(n, STRIDE);
  p.bottleneck_multipliers.assign(n, bottleneck_multiplier);
  p.group_widths.assign(n, group_width);
  p.se_ratio = se_ratio;
  // _adjust_widths_groups_compatibilty
  for (size_t i = 0; i < n; ++i) {
    const double b = p.bottleneck_multipliers[i];
    const auto w_bot = static_cast<int64_t>(static_cast<double>(p.widths[i]) * b);
    const int64_t g = std::min(p.group_widths[i], w_bot);
    const int64_t ws_bot = round_channels(static_cast<double>(w_bot), g);
    p.widths[i] = static_cast<int64_t>(static_cast<double>(ws_bot) / b);
    p.group_widths[i] = g;
  }
  return p;
}

const std::vector<std::string>& regnet_names() {
  static const std::vector<std::string> n{
      "regnet_y_400mf", "regnet_y_800mf", "regnet_y_1_6gf", "regnet_y_3_2gf", "regnet_y_8gf",
      "regnet_y_16gf",  "regnet_y_32gf",  "regnet_y_128gf", "regnet_x_400mf", "regnet_x_800mf",
      "regnet_x_1_6gf", "regnet_x_3_2gf", "regnet_x_8gf",   "regnet_x_16gf",  "regnet_x_32gf"};
  return n;
}

bool regnet_arch(const std::string& arch, regnet_block_params& out) {
  struct row {
    const char* name;
    int64_t depth, w_0;
    double w_a, w_m;
    int64_t group_width;
    double se_ratio;
  };
  static const row rows[] = {
      {"regnet_y_400mf", 16, 48, 27.89, 2.09, 8, 0.25},
      {"regnet_y_800mf", 14, 56, 38.84, 2.4, 16, 0.25},
      {"regnet_y_1_6gf", 27, 48, 20.71, 2.65, 24, 0.25},
      {"regnet_y_3_2gf", 21, 80, 42.63, 2.66, 24, 0.25},
      {"regnet_y_8gf", 17, 192, 76.82, 2.19, 56, 0.25},
      {"regnet_y_16gf", 18, 200, 106.23, 2.48, 112, 0.25},
      {"regnet_y_32gf", 20, 232, 115.89, 2.53, 232, 0.25},
      {"regnet_y_128gf", 27, 456, 160.83, 2.52, 264, 0.25},
      {"regnet_x_400mf", 22, 24, 24.48, 2.54, 16, 0},
      {"regnet_x_800mf", 16, 56, 35.73, 2.28, 16, 0},
      {"regnet_x_1_6gf", 18, 80, 34.01, 2.25, 24, 0},
      {"regnet_x_3_2gf", 25, 88, 26.31, 2.25, 48, 0},
      {"regnet_x_8gf", 23, 80, 49.56, 2.88, 120, 0},
      {"regnet_x_16gf", 22, 216, 55.59, 2.1, 128, 0},
      {"regnet_x_32gf", 23, 320, 69.86, 2.0, 168, 0},
  };
  for (const auto& r : rows)
    if (arch == r.name) {
      out = regnet_params_from_init(r.depth, r.w_0, r.w_a, r.w_m, r.group_width, 1.0, r.se_ratio);
      return true;
    }
  return false;
}

// --- ResBottleneckBlock ----------------------------------------------------------

ResBottleneckBlockImpl::ResBottleneckBlockImpl(int64_t width_in, int64_t width_out, int64_t stride,
                                               int64_t group_width, double bm, double se_ratio) {
  if (width_in != width_out || stride != 1)
    proj = register_module(
        "proj",
        conv_norm_act(
            ConvNormActOptions(width_in, width_out, 1).stride(stride).activation(act::none)));
  // Python's round() (half to even) == nearbyint in the default rounding mode.
  const auto w_b = static_cast<int64_t>(std::nearbyint(static_cast<double>(width_out) * bm));
  const int64_t g = w_b / group_width;
  f = Seq();
  f->push_back("a", conv_norm_act(ConvNormActOptions(width_in, w_b, 1)));
  f->push_back("b", conv_norm_act(ConvNormActOptions(w_b, w_b, 3).stride(stride).groups(g)));
  if (se_ratio > 0) {
    const auto se = static_cast<int64_t>(std::nearbyint(se_ratio * static_cast<double>(width_in)));
    f->push_back("se", SqueezeExcitation(w_b, se, act::relu, act::sigmoid));
  }
  f->push_back("c", conv_norm_act(ConvNormActOptions(w_b, width_out, 1).activation(act::none)));
  register_module("f", f);
}

torch::Tensor ResBottleneckBlockImpl::forward(const torch::Tensor& x) {
  auto y = f->forward(x);
  y = proj ? proj->forward(x) + y : x + y;
  return y.relu_();
}

// --- RegNet -------------------------------------------------------------------------

RegNetImpl::RegNetImpl(const std::string& arch, const model_options& o) {
  validate_options(o, arch, {/*dropout=*/false, /*drop_path=*/false, /*width_mult=*/false});
  regnet_block_params p;
  TORCH_CHECK(regnet_arch(arch, p), "unknown RegNet arch '", arch, "'");
  const int64_t stem_width = 32;
  stem = register_module("stem",
                         conv_norm_act(ConvNormActOptions(o.in_channels, stem_width, 3).stride(2)));
  trunk_output = Seq();
  int64_t current = stem_width;
  for (size_t s = 0; s < p.widths.size(); ++s) {
    const auto idx = std::to_string(s + 1);
    Seq stage;
    for (int64_t i = 0; i < p.depths[s]; ++i)
      stage->push_back("block" + idx + "-" + std::to_string(i),
                       ResBottleneckBlock(i == 0 ? current : p.widths[s], p.widths[s],
                                          i == 0 ? p.strides[s] : 1, p.group_widths[s],
                                          p.bottleneck_multipliers[s], p.se_ratio));
    trunk_output->push_back("block" + idx, stage);
    current = p.widths[s];
  }
  register_module("trunk_output", trunk_output);
  avgpool = register_module("avgpool", nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions(1)));
  num_features_ = current;

  torch::NoGradGuard ng;
  for (auto& m : modules(/*include_self=*/false)) {
    if (auto* c = m->as<nn::Conv2d>()) {
      const auto& k = c->options.kernel_size();
      const auto fan_out = static_cast<double>(k->at(0) * k->at(1) * c->options.out_channels());
      c->weight.normal_(0.0, std::sqrt(2.0 / fan_out));
    } else if (auto* b = m->as<nn::BatchNorm2d>()) {
      b->weight.fill_(1.0);
      b->bias.zero_();
    }
  }
  RegNetImpl::reset_classifier(o.num_classes); // not virtually: under construction
}

void RegNetImpl::reset_classifier(int64_t num_classes) {
  TORCH_CHECK(num_classes >= 0, "num_classes must be >= 0, got ", num_classes);
  if (fc)
    unregister_module("fc");
  fc = nullptr;
  if (num_classes > 0) {
    fc = register_module("fc", nn::Linear(num_features_, num_classes));
    fc->train(is_training());
    torch::NoGradGuard ng;
    fc->weight.normal_(0.0, 0.01);
    fc->bias.zero_();
  }
}

torch::Tensor RegNetImpl::forward_features(torch::Tensor x) {
  x = trunk_output->forward(stem->forward(std::move(x)));
  return torch::flatten(avgpool(x), 1);
}

torch::Tensor RegNetImpl::forward(torch::Tensor x) {
  x = forward_features(std::move(x));
  return fc ? fc(x) : x;
}

std::vector<torch::Tensor> RegNetImpl::forward_stages(torch::Tensor x) {
  std::vector<torch::Tensor> out;
  x = stem->forward(std::move(x));
  out.push_back(x);
  for (size_t i = 0; i < trunk_output->size(); ++i) {
    x = trunk_output->ptr(i)->as<SeqImpl>()->forward(x);
    out.push_back(x);
  }
  return out;
}

std::vector<std::shared_ptr<nn::Module>> RegNetImpl::backbone() {
  return {stem.ptr(), trunk_output.ptr(), avgpool.ptr()};
}

std::shared_ptr<nn::Module> RegNetImpl::head() {
  if (fc)
    return fc.ptr();
  return std::make_shared<IdentityImpl>();
}

void register_regnet_models() {
  for (const auto& name : regnet_names()) {
    model_entry e;
    e.name = name;
    e.family = "regnet";
    e.default_size = 224;
    e.heavy = !(name == "regnet_y_400mf" || name == "regnet_x_400mf");
    e.make = [name](const model_options& o) -> std::shared_ptr<ZooModelImpl> {
      return RegNet(name, o).ptr();
    };
    register_model(std::move(e));
  }
}

} // namespace rookery::zoo

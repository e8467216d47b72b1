#include "models/zoo/convnext.hpp"

#include <torch/nn/modules/linear.h>

#include "models/zoo/families.hpp"

namespace rookery::zoo {

namespace nn = torch::nn;

namespace {

struct variant {
  std::vector<int64_t> dims, depths;
  double drop_path;
};

bool make_variant(const std::string& arch, variant& v) {
  if (arch == "convnext_tiny")
    v = {{96, 192, 384, 768}, {3, 3, 9, 3}, 0.1};
  else if (arch == "convnext_small")
    v = {{96, 192, 384, 768}, {3, 3, 27, 3}, 0.4};
  else if (arch == "convnext_base")
    v = {{128, 256, 512, 1024}, {3, 3, 27, 3}, 0.5};
  else if (arch == "convnext_large")
    v = {{192, 384, 768, 1536}, {3, 3, 27, 3}, 0.5};
  else
    return false;
  return true;
}

void init_weights(nn::Module& m) {
  torch::NoGradGuard ng;
  for (auto& sub : m.modules(/*include_self=*/false)) {
    if (auto* c = sub->as<nn::Conv2d>()) {
      init_trunc_normal(c->weight, 0.02);
      if (c->bias.defined())
        c->bias.zero_();
    } else if (auto* l = sub->as<nn::Linear>()) {
      init_trunc_normal(l->weight, 0.02);
      if (l->bias.defined())
        l->bias.zero_();
    }
  }
}

} // namespace

const std::vector<std::string>& convnext_names() {
  static const std::vector<std::string> n{"convnext_tiny", "convnext_small", "convnext_base",
                                          "convnext_large"};
  return n;
}

CNBlockImpl::CNBlockImpl(int64_t dim, double ls, double sd_prob) {
  block = Seq();
  block->push_back(nn::Conv2d(nn::Conv2dOptions(dim, dim, 7).padding(3).groups(dim).bias(true)));
  block->push_back(Permute(std::vector<int64_t>{0, 2, 3, 1}));
  block->push_back(nn::LayerNorm(nn::LayerNormOptions({dim}).eps(1e-6)));
  block->push_back(nn::Linear(dim, 4 * dim));
  block->push_back(Activation(act::gelu));
  block->push_back(nn::Linear(4 * dim, dim));
  block->push_back(Permute(std::vector<int64_t>{0, 3, 1, 2}));
  register_module("block", block);
  layer_scale = register_parameter("layer_scale", torch::full({dim, 1, 1}, ls));
  stochastic_depth = register_module("stochastic_depth", StochasticDepth(sd_prob, "row"));
}

torch::Tensor CNBlockImpl::forward(const torch::Tensor& x) {
  auto r = layer_scale * block->forward(x);
  return stochastic_depth->forward(r) + x;
}

ConvNeXtImpl::ConvNeXtImpl(const std::string& arch, const model_options& o) {
  validate_options(o, arch, {/*dropout=*/false, /*drop_path=*/true, /*width_mult=*/false});
  variant v;
  TORCH_CHECK(make_variant(arch, v), "unknown ConvNeXt arch '", arch, "'");
  const double sd = drop_path_or(o, v.drop_path);
  features = Seq();
  Seq stem;
  stem->push_back(nn::Conv2d(nn::Conv2dOptions(o.in_channels, v.dims[0], 4).stride(4).bias(true)));
  stem->push_back(LayerNorm2d(v.dims[0], 1e-6));
  features->push_back(stem);
  int64_t total = 0;
  for (auto d : v.depths)
    total += d;
  int64_t id = 0;
  for (size_t s = 0; s < v.dims.size(); ++s) {
    Seq stage;
    for (int64_t i = 0; i < v.depths[s]; ++i) {
      const double p = sd * static_cast<double>(id) / (static_cast<double>(total) - 1.0);
      stage->push_back(CNBlock(v.dims[s], 1e-6, p));
      ++id;
    }
    features->push_back(stage);
    if (s + 1 < v.dims.size()) {
      Seq down;
      down->push_back(LayerNorm2d(v.dims[s], 1e-6));
      down->push_back(nn::Conv2d(nn::Conv2dOptions(v.dims[s], v.dims[s + 1], 2).stride(2)));
      features->push_back(down);
    }
  }
  register_module("features", features);
  avgpool = register_module("avgpool", nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions(1)));
  num_features_ = v.dims.back();
  init_weights(*this);
  ConvNeXtImpl::reset_classifier(o.num_classes); // not virtually: under construction
}

void ConvNeXtImpl::reset_classifier(int64_t num_classes) {
  TORCH_CHECK(num_classes >= 0, "num_classes must be >= 0, got ", num_classes);
  Seq c;
  c->push_back(LayerNorm2d(num_features_, 1e-6));
  c->push_back(nn::Flatten(nn::FlattenOptions().start_dim(1)));
  if (num_classes > 0) {
    nn::Linear fc(num_features_, num_classes);
    init_trunc_normal(fc->weight, 0.02);
    torch::NoGradGuard ng;
    fc->bias.zero_();
    c->push_back(fc);
  }
  c->train(is_training());
  if (classifier) {
    // Keep the trained LayerNorm of the old classifier.
    auto* old = classifier->ptr(0)->as<LayerNorm2dImpl>();
    auto* now = c->ptr(0)->as<LayerNorm2dImpl>();
    torch::NoGradGuard ng;
    now->weight.copy_(old->weight);
    now->bias.copy_(old->bias);
    classifier = replace_module("classifier", c);
  } else {
    classifier = register_module("classifier", c);
  }
}

torch::Tensor ConvNeXtImpl::forward_features(torch::Tensor x) {
  x = avgpool(features->forward(std::move(x)));
  x = classifier->ptr(0)->as<LayerNorm2dImpl>()->forward(x);
  return torch::flatten(x, 1);
}

torch::Tensor ConvNeXtImpl::forward(torch::Tensor x) {
  return classifier->forward(avgpool(features->forward(std::move(x))));
}

std::vector<torch::Tensor> ConvNeXtImpl::forward_stages(torch::Tensor x) {
  std::vector<torch::Tensor> out;
  for (size_t i = 0; i < features->size(); ++i) {
    x = features->ptr(i)->as<SeqImpl>()->forward(x);
    if (i % 2 == 1)
      out.push_back(x);
  }
  return out;
}

std::vector<std::shared_ptr<nn::Module>> ConvNeXtImpl::backbone() {
  return {features.ptr(), avgpool.ptr(), classifier->ptr(0)};
}

std::shared_ptr<nn::Module> ConvNeXtImpl::head() {
  if (classifier->size() > 2)
    return classifier->ptr(2);
  return std::make_shared<IdentityImpl>();
}

void register_convnext_models() {
  for (const auto& name : convnext_names()) {
    model_entry e;
    e.name = name;
    e.family = "convnext";
    e.default_size = 224;
    e.heavy = name != "convnext_tiny";
    e.make = [name](const model_options& o) -> std::shared_ptr<ZooModelImpl> {
      return ConvNeXt(name, o).ptr();
    };
    register_model(std::move(e));
  }
}

} // namespace rookery::zoo

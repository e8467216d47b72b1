#include "models/zoo/vgg.hpp"

#include "models/zoo/classic_util.hpp"
#include "models/zoo/families.hpp"

namespace rookery::zoo {

namespace nn = torch::nn;
using namespace classic;

namespace {

// Layer configurations A (11), B (13), D (16), E (19); 0 is a max-pool.
std::vector<int> vgg_cfg(const std::string& arch) {
  if (arch.rfind("vgg11", 0) == 0)
    return {64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0};
  if (arch.rfind("vgg13", 0) == 0)
    return {64, 64, 0, 128, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0};
  if (arch.rfind("vgg16", 0) == 0)
    return {64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0};
  if (arch.rfind("vgg19", 0) == 0)
    return {64,  64,  0,   128, 128, 0,   256, 256, 256, 256, 0,
            512, 512, 512, 512, 0,   512, 512, 512, 512, 0};
  return {};
}

const std::vector<std::string>& vgg_names() {
  static const std::vector<std::string> n{"vgg11", "vgg11_bn", "vgg13", "vgg13_bn",
                                          "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"};
  return n;
}

} // namespace

VGGImpl::VGGImpl(const VGGOptions& o) {
  auto cfg = vgg_cfg(o.arch);
  TORCH_CHECK(!cfg.empty() && std::find(vgg_names().begin(), vgg_names().end(), o.arch) != vgg_names().end(),
              "unknown VGG arch '", o.arch, "'");
  TORCH_CHECK(o.num_classes >= 0 && o.in_channels > 0, "bad VGG options");
  const bool bn = o.arch.size() > 3 && o.arch.substr(o.arch.size() - 3) == "_bn";
  features = nn::Sequential();
  int64_t in = o.in_channels;
  for (int v : cfg) {
    if (v == 0) {
      taps_.push_back(features->size() - 1);
      features->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(2).stride(2)));
    } else {
      features->push_back(conv2d(in, v, 3, 1, 1));
      if (bn)
        features->push_back(batch_norm(v));
      features->push_back(relu());
      in = v;
    }
  }
  register_module("features", features);
  avgpool = register_module("avgpool", nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions({7, 7})));
  classifier = nn::Sequential(nn::Linear(512 * 7 * 7, 4096), relu(), dropout(o.dropout),
                              nn::Linear(4096, 4096), relu(), dropout(o.dropout));
  register_module("classifier", classifier);
  reset_classifier(o.num_classes);

  for (auto& m : modules(false)) {
    if (auto* c = m->as<nn::Conv2d>()) {
      kaiming_normal_(c->weight, /*fan_out=*/true);
      nn::init::zeros_(c->bias);
    } else if (auto* b = m->as<nn::BatchNorm2d>()) {
      nn::init::ones_(b->weight);
      nn::init::zeros_(b->bias);
    } else if (auto* l = m->as<nn::Linear>()) {
      nn::init::normal_(l->weight, 0, 0.01);
      nn::init::zeros_(l->bias);
    }
  }
}

void VGGImpl::reset_classifier(int64_t n) {
  TORCH_CHECK(n >= 0, "num_classes must be >= 0");
  if (fc)
    classifier->unregister_module("6");
  fc = nullptr;
  if (n > 0) {
    fc = nn::Linear(4096, n);
    nn::init::normal_(fc->weight, 0, 0.01);
    nn::init::zeros_(fc->bias);
    classifier->register_module("6", fc);
  }
}

torch::Tensor VGGImpl::forward_features(torch::Tensor x) {
  x = features->forward(x);
  x = torch::flatten(avgpool(x), 1);
  return classifier->forward(x);
}

torch::Tensor VGGImpl::forward(torch::Tensor x) {
  x = forward_features(x);
  return fc ? fc(x) : x;
}

std::vector<torch::Tensor> VGGImpl::forward_stages(torch::Tensor x) {
  std::vector<torch::Tensor> out;
  run_sequential(features, x, taps_, &out);
  return out;
}

std::vector<std::shared_ptr<nn::Module>> VGGImpl::backbone() {
  std::vector<std::shared_ptr<nn::Module>> out{features.ptr(), avgpool.ptr()};
  for (size_t i = 0; i < classifier->size(); ++i)
    out.push_back(classifier->ptr(i)); // classifier.0..5, not classifier.6 (the head)
  return out;
}

std::shared_ptr<nn::Module> VGGImpl::head() {
  if (fc)
    return fc.ptr();
  return std::make_shared<nn::IdentityImpl>();
}

void register_vgg_models() {
  for (const auto& name : vgg_names()) {
    model_entry e;
    e.name = name;
    e.family = "vgg";
    e.heavy = name != "vgg11_bn";
    e.make = [name](const model_options& o) -> std::shared_ptr<ZooModelImpl> {
      check_options(o, "vgg", {/*dropout=*/true, false, false});
      VGGOptions v;
      v.arch = name;
      v.num_classes = o.num_classes;
      v.in_channels = o.in_channels;
      if (o.dropout >= 0)
        v.dropout = o.dropout;
      return VGG(v).ptr();
    };
    register_model(std::move(e));
  }
}

} // namespace rookery::zoo

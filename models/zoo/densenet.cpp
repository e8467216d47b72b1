#include "models/zoo/densenet.hpp"

#include "models/zoo/classic_util.hpp"
#include "models/zoo/families.hpp"

namespace rookery::zoo {

namespace nn = torch::nn;
using namespace classic;

namespace {

class DenseLayerImpl : public nn::Module {
public:
  DenseLayerImpl(int64_t in, int64_t growth, int64_t bn_size, double drop) : drop_(drop) {
    norm1 = register_module("norm1", batch_norm(in));
    conv1 = register_module("conv1", conv2d(in, bn_size * growth, 1, 1, 0, 1, false));
    norm2 = register_module("norm2", batch_norm(bn_size * growth));
    conv2 = register_module("conv2", conv2d(bn_size * growth, growth, 3, 1, 1, 1, false));
  }
  torch::Tensor forward(const std::vector<torch::Tensor>& prev) {
    auto x = torch::cat(prev, 1);
    x = conv1(torch::relu(norm1(x)));
    x = conv2(torch::relu(norm2(x)));
    if (drop_ > 0)
      x = torch::dropout(x, drop_, is_training());
    return x;
  }
  nn::BatchNorm2d norm1{nullptr}, norm2{nullptr};
  nn::Conv2d conv1{nullptr}, conv2{nullptr};

private:
  double drop_;
};
TORCH_MODULE(DenseLayer);

class DenseBlockImpl : public nn::Module {
public:
  DenseBlockImpl(int64_t layers, int64_t in, int64_t bn_size, int64_t growth, double drop) {
    for (int64_t i = 0; i < layers; ++i)
      layers_.push_back(register_module("denselayer" + std::to_string(i + 1),
                                        DenseLayer(in + i * growth, growth, bn_size, drop)));
  }
  torch::Tensor forward(torch::Tensor x) {
    std::vector<torch::Tensor> feats{x};
    for (auto& l : layers_)
      feats.push_back(l->forward(feats));
    return torch::cat(feats, 1);
  }

private:
  std::vector<DenseLayer> layers_;
};
TORCH_MODULE(DenseBlock);

// torchvision's _Transition is an nn.Sequential with named children.
Seq transition(int64_t in, int64_t out) {
  Seq t;
  t->push_back("norm", batch_norm(in));
  t->push_back("relu", relu());
  t->push_back("conv", conv2d(in, out, 1, 1, 0, 1, false));
  t->push_back("pool", nn::AvgPool2d(nn::AvgPool2dOptions(2).stride(2)));
  return t;
}

struct densenet_arch {
  int64_t growth, init;
  std::vector<int64_t> blocks;
};

const std::vector<std::pair<std::string, densenet_arch>>& densenet_archs() {
  static const std::vector<std::pair<std::string, densenet_arch>> a{
    {"densenet121", {32, 64, {6, 12, 24, 16}}},
    {"densenet161", {48, 96, {6, 12, 36, 24}}},
    {"densenet169", {32, 64, {6, 12, 32, 32}}},
    {"densenet201", {32, 64, {6, 12, 48, 32}}},
  };
  return a;
}

} // namespace

DenseNetImpl::DenseNetImpl(const DenseNetOptions& o) {
  TORCH_CHECK(o.num_classes >= 0 && o.in_channels > 0 && !o.block_config.empty(), "bad DenseNet options");
  features = nn::Sequential();
  features->push_back("conv0", conv2d(o.in_channels, o.num_init_features, 7, 2, 3, 1, false));
  features->push_back("norm0", batch_norm(o.num_init_features));
  features->push_back("relu0", relu());
  features->push_back("pool0", nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(2).padding(1)));
  int64_t n = o.num_init_features;
  for (size_t i = 0; i < o.block_config.size(); ++i) {
    const auto layers = o.block_config[i];
    features->push_back("denseblock" + std::to_string(i + 1),
                        DenseBlock(layers, n, o.bn_size, o.growth_rate, o.drop_rate));
    n += layers * o.growth_rate;
    if (i + 1 != o.block_config.size()) {
      features->push_back("transition" + std::to_string(i + 1), transition(n, n / 2));
      n /= 2;
    }
  }
  features->push_back("norm5", batch_norm(n));
  register_module("features", features);
  num_features_ = n;
  reset_classifier(o.num_classes);
  for (auto& m : modules(false)) {
    if (auto* c = m->as<nn::Conv2d>()) {
      kaiming_normal_(c->weight, /*fan_out=*/false);
    } else if (auto* b = m->as<nn::BatchNorm2d>()) {
      nn::init::ones_(b->weight);
      nn::init::zeros_(b->bias);
    }
  }
}

void DenseNetImpl::reset_classifier(int64_t n) {
  TORCH_CHECK(n >= 0, "num_classes must be >= 0");
  if (classifier)
    unregister_module("classifier");
  classifier = nullptr;
  if (n > 0) {
    classifier = register_module("classifier", nn::Linear(num_features_, n));
    nn::init::zeros_(classifier->bias);
  }
}

torch::Tensor DenseNetImpl::forward_features(torch::Tensor x) {
  x = torch::relu(features->forward(x));
  return torch::flatten(torch::adaptive_avg_pool2d(x, {1, 1}), 1);
}

torch::Tensor DenseNetImpl::forward(torch::Tensor x) {
  x = forward_features(x);
  return classifier ? classifier(x) : x;
}

std::vector<torch::Tensor> DenseNetImpl::forward_stages(torch::Tensor x) {
  std::vector<torch::Tensor> out;
  size_t i = 0;
  const size_t last = features->size() - 1;
  const auto children = features->named_children();
  for (auto& m : *features) {
    x = m.forward(x);
    const std::string& name = children[i].key();
    if (name == "relu0" || (name.rfind("denseblock", 0) == 0 && i + 2 < last))
      out.push_back(x);
    ++i;
  }
  out.push_back(torch::relu(x));
  return out;
}

std::vector<std::shared_ptr<nn::Module>> DenseNetImpl::backbone() {
  return {features.ptr()};
}

std::shared_ptr<nn::Module> DenseNetImpl::head() {
  if (classifier)
    return classifier.ptr();
  return std::make_shared<nn::IdentityImpl>();
}

void register_densenet_models() {
  for (const auto& [name, arch] : densenet_archs()) {
    model_entry e;
    e.name = name;
    e.family = "densenet";
    e.heavy = name != "densenet121";
    e.make = [arch = arch](const model_options& o) -> std::shared_ptr<ZooModelImpl> {
      check_options(o, "densenet", {/*dropout=*/true, false, false});
      DenseNetOptions d;
      d.growth_rate = arch.growth;
      d.num_init_features = arch.init;
      d.block_config = arch.blocks;
      d.num_classes = o.num_classes;
      d.in_channels = o.in_channels;
      if (o.dropout >= 0)
        d.drop_rate = o.dropout; // DenseNet's dropout is per dense layer
      return DenseNet(d).ptr();
    };
    register_model(std::move(e));
  }
}

} // namespace rookery::zoo

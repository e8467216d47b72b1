#include "models/zoo/alexnet.hpp"

#include "models/zoo/classic_util.hpp"
#include "models/zoo/families.hpp"

namespace rookery::zoo {

namespace nn = torch::nn;
using namespace classic;

AlexNetImpl::AlexNetImpl(const AlexNetOptions& o) {
  TORCH_CHECK(o.num_classes >= 0 && o.in_channels > 0, "bad AlexNet options");
  auto pool = [] { return nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(2)); };
  features = register_module(
    "features", nn::Sequential(conv2d(o.in_channels, 64, 11, 4, 2), relu(), pool(),
                               conv2d(64, 192, 5, 1, 2), relu(), pool(),
                               conv2d(192, 384, 3, 1, 1), relu(),
                               conv2d(384, 256, 3, 1, 1), relu(),
                               conv2d(256, 256, 3, 1, 1), relu(), pool()));
  avgpool = register_module("avgpool", nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions({6, 6})));
  classifier = register_module(
    "classifier", nn::Sequential(dropout(o.dropout), nn::Linear(256 * 6 * 6, 4096), relu(),
                                 dropout(o.dropout), nn::Linear(4096, 4096), relu()));
  // torchvision keeps PyTorch's default init for AlexNet, as LibTorch does.
  reset_classifier(o.num_classes);
}

void AlexNetImpl::reset_classifier(int64_t n) {
  TORCH_CHECK(n >= 0, "num_classes must be >= 0");
  if (fc)
    classifier->unregister_module("6");
  fc = nullptr;
  if (n > 0) {
    fc = nn::Linear(4096, n);
    classifier->register_module("6", fc);
  }
}

torch::Tensor AlexNetImpl::forward_features(torch::Tensor x) {
  x = features->forward(x);
  x = torch::flatten(avgpool(x), 1);
  return classifier->forward(x);
}

torch::Tensor AlexNetImpl::forward(torch::Tensor x) {
  x = forward_features(x);
  return fc ? fc(x) : x;
}

std::vector<torch::Tensor> AlexNetImpl::forward_stages(torch::Tensor x) {
  std::vector<torch::Tensor> out;
  run_sequential(features, x, {1, 4, 11}, &out);
  return out;
}

std::vector<std::shared_ptr<nn::Module>> AlexNetImpl::backbone() {
  std::vector<std::shared_ptr<nn::Module>> out{features.ptr(), avgpool.ptr()};
  for (size_t i = 0; i < classifier->size(); ++i)
    out.push_back(classifier->ptr(i));
  return out;
}

std::shared_ptr<nn::Module> AlexNetImpl::head() {
  if (fc)
    return fc.ptr();
  return std::make_shared<nn::IdentityImpl>();
}

void register_alexnet_models() {
  model_entry e;
  e.name = "alexnet";
  e.family = "alexnet";
  e.make = [](const model_options& o) -> std::shared_ptr<ZooModelImpl> {
    check_options(o, "alexnet", {/*dropout=*/true, false, false});
    AlexNetOptions a;
    a.num_classes = o.num_classes;
    a.in_channels = o.in_channels;
    if (o.dropout >= 0)
      a.dropout = o.dropout;
    return AlexNet(a).ptr();
  };
  register_model(std::move(e));
}

} // namespace rookery::zoo

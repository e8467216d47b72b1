// VGG 11/13/16/19, with and without BatchNorm (torchvision 0.14 module names:
// features.<i>, avgpool, classifier.{0,3,6}).
#pragma once
#include <string>

#include <torch/torch.h>

#include "models/zoo/zoo.hpp"

namespace rookery::zoo {

struct VGGOptions {
  std::string arch = "vgg16"; // vgg11, vgg11_bn, vgg13, vgg13_bn, vgg16, vgg16_bn, vgg19, vgg19_bn
  int64_t num_classes = 1000; // 0: no classifier.6 (forward() returns the 4096-d pre-logits)
  int64_t in_channels = 3;
  double dropout = 0.5;
};

class VGGImpl : public ZooModelImpl {
public:
  explicit VGGImpl(const VGGOptions& o = {});
  torch::Tensor forward(torch::Tensor x) override;
  /// classifier.0..5 applied to the pooled, flattened features: 4096-d.
  torch::Tensor forward_features(torch::Tensor x) override;
  /// The maps just before each max-pool (strides 1, 2, 4, 8, 16).
  std::vector<torch::Tensor> forward_stages(torch::Tensor x) override;
  int64_t num_features() const override { return 4096; }
  void reset_classifier(int64_t num_classes) override;
  std::vector<std::shared_ptr<torch::nn::Module>> backbone() override;
  std::shared_ptr<torch::nn::Module> head() override;

  torch::nn::Sequential features{nullptr};
  torch::nn::AdaptiveAvgPool2d avgpool{nullptr};
  torch::nn::Sequential classifier{nullptr}; // 0..5; classifier.6 is `fc`
  torch::nn::Linear fc{nullptr};

private:
  std::vector<size_t> taps_;
};
TORCH_MODULE(VGG);

} // namespace rookery::zoo

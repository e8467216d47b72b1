// AlexNet (torchvision 0.14 module names: features.{0,3,6,8,10}, avgpool,
// classifier.{1,4,6}).
#pragma once
#include <torch/torch.h>

#include "models/zoo/zoo.hpp"

namespace rookery::zoo {

struct AlexNetOptions {
  int64_t num_classes = 1000; // 0: no classifier.6
  int64_t in_channels = 3;
  double dropout = 0.5;
};

class AlexNetImpl : public ZooModelImpl {
public:
  explicit AlexNetImpl(const AlexNetOptions& o = {});
  torch::Tensor forward(torch::Tensor x) override;
  /// classifier.0..5 applied to the pooled, flattened features: 4096-d.
  torch::Tensor forward_features(torch::Tensor x) override;
  /// After the ReLUs of features.1 (stride 4), features.4 (8), features.11 (16).
  std::vector<torch::Tensor> forward_stages(torch::Tensor x) override;
  int64_t num_features() const override { return 4096; }
  void reset_classifier(int64_t num_classes) override;
  std::vector<std::shared_ptr<torch::nn::Module>> backbone() override;
  std::shared_ptr<torch::nn::Module> head() override;

  torch::nn::Sequential features{nullptr};
  torch::nn::AdaptiveAvgPool2d avgpool{nullptr};
  torch::nn::Sequential classifier{nullptr}; // 0..5; classifier.6 is `fc`
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(AlexNet);

} // namespace rookery::zoo

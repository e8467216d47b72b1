// ShuffleNet V2 x0.5 / x1.0 / x1.5 / x2.0 (torchvision 0.14 module names:
// conv1.{0,1}, stage<k>.<i>.branch{1,2}.<j>, conv5.{0,1}, fc).
#pragma once
#include <vector>

#include <torch/torch.h>

#include "models/zoo/zoo.hpp"

namespace rookery::zoo {

struct ShuffleNetV2Options {
  std::vector<int64_t> stages_repeats{4, 8, 4};
  std::vector<int64_t> stages_out_channels{24, 116, 232, 464, 1024}; // x1_0
  int64_t num_classes = 1000; // 0: no fc
  int64_t in_channels = 3;
  double dropout = 0; // before fc while training (torchvision has none)
};

class ShuffleNetV2Impl : public ZooModelImpl {
public:
  explicit ShuffleNetV2Impl(const ShuffleNetV2Options& o = {});
  torch::Tensor forward(torch::Tensor x) override;
  /// conv5 output globally averaged.
  torch::Tensor forward_features(torch::Tensor x) override;
  /// conv1 (stride 2), stage2 (8), stage3 (16), conv5 (32).
  std::vector<torch::Tensor> forward_stages(torch::Tensor x) override;
  int64_t num_features() const override { return num_features_; }
  void reset_classifier(int64_t num_classes) override;
  std::vector<std::shared_ptr<torch::nn::Module>> backbone() override;
  std::shared_ptr<torch::nn::Module> head() override;

  torch::nn::Sequential conv1{nullptr}, stage2{nullptr}, stage3{nullptr}, stage4{nullptr},
    conv5{nullptr};
  torch::nn::MaxPool2d maxpool{nullptr};
  torch::nn::Linear fc{nullptr};

private:
  int64_t num_features_ = 1024;
  double dropout_ = 0;
};
TORCH_MODULE(ShuffleNetV2);

} // namespace rookery::zoo

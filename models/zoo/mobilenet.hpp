// MobileNet V2 and V3 (small, large) with torchvision 0.14's module names:
//   V2: features.<i>.conv.<j>[.<k>], classifier.1
//   V3: features.<i>.block.<j>.{0,1,fc1,fc2}, classifier.{0,3}
#pragma once
#include <string>

#include <torch/torch.h>

#include "models/zoo/zoo.hpp"

namespace rookery::zoo {

struct MobileNetV2Options {
  int64_t num_classes = 1000; // 0: no classifier.1
  int64_t in_channels = 3;
  double width_mult = 1.0;
  int64_t round_nearest = 8;
  double dropout = 0.2;
};

class MobileNetV2Impl : public ZooModelImpl {
public:
  explicit MobileNetV2Impl(const MobileNetV2Options& o = {});
  torch::Tensor forward(torch::Tensor x) override;
  /// Global average of features (last_channel = 1280 * max(1, width_mult)).
  torch::Tensor forward_features(torch::Tensor x) override;
  /// Strides 2, 4, 8, 16, 32 (the last block before each stride change).
  std::vector<torch::Tensor> forward_stages(torch::Tensor x) override;
  int64_t num_features() const override { return last_channel_; }
  void reset_classifier(int64_t num_classes) override;
  std::vector<std::shared_ptr<torch::nn::Module>> backbone() override;
  std::shared_ptr<torch::nn::Module> head() override;

  torch::nn::Sequential features{nullptr};
  torch::nn::Sequential classifier{nullptr}; // classifier.0 (dropout); classifier.1 is `fc`
  torch::nn::Linear fc{nullptr};

private:
  int64_t last_channel_ = 1280;
  std::vector<size_t> taps_;
};
TORCH_MODULE(MobileNetV2);

struct MobileNetV3Options {
  std::string arch = "mobilenet_v3_large"; // or "mobilenet_v3_small"
  int64_t num_classes = 1000;              // 0: no classifier.3
  int64_t in_channels = 3;
  double width_mult = 1.0;
  bool reduced_tail = false;
  bool dilated = false;
  double dropout = 0.2;
};

class MobileNetV3Impl : public ZooModelImpl {
public:
  explicit MobileNetV3Impl(const MobileNetV3Options& o = {});
  torch::Tensor forward(torch::Tensor x) override;
  /// classifier.0..2 (Linear, Hardswish, Dropout) on the pooled features:
  /// last_channel (1280 large / 1024 small at width 1).
  torch::Tensor forward_features(torch::Tensor x) override;
  /// Strides 2, 4, 8, 16, 32.
  std::vector<torch::Tensor> forward_stages(torch::Tensor x) override;
  int64_t num_features() const override { return last_channel_; }
  void reset_classifier(int64_t num_classes) override;
  std::vector<std::shared_ptr<torch::nn::Module>> backbone() override;
  std::shared_ptr<torch::nn::Module> head() override;

  torch::nn::Sequential features{nullptr};
  torch::nn::AdaptiveAvgPool2d avgpool{nullptr};
  torch::nn::Sequential classifier{nullptr}; // 0..2; classifier.3 is `fc`
  torch::nn::Linear fc{nullptr};

private:
  int64_t last_channel_ = 1280;
  std::vector<size_t> taps_;
};
TORCH_MODULE(MobileNetV3);

} // namespace rookery::zoo

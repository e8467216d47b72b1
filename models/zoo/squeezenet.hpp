// SqueezeNet 1.0 / 1.1 (torchvision 0.14 module names: features.<i>.{squeeze,
// expand1x1,expand3x3}, classifier.1 -- the final 1x1 conv is the head).
#pragma once
#include <string>

#include <torch/torch.h>

#include "models/zoo/zoo.hpp"

namespace rookery::zoo {

struct SqueezeNetOptions {
  std::string version = "1_0"; // "1_0" or "1_1"
  int64_t num_classes = 1000;  // 0: no classifier.1
  int64_t in_channels = 3;
  double dropout = 0.5;
};

class FireImpl : public torch::nn::Module {
public:
  FireImpl(int64_t inplanes, int64_t squeeze, int64_t e1x1, int64_t e3x3);
  torch::Tensor forward(torch::Tensor x);
  torch::nn::Conv2d squeeze{nullptr}, expand1x1{nullptr}, expand3x3{nullptr};
};
TORCH_MODULE(Fire);

class SqueezeNetImpl : public ZooModelImpl {
public:
  explicit SqueezeNetImpl(const SqueezeNetOptions& o = {});
  /// features -> dropout -> classifier.1 (1x1 conv) -> relu -> global average.
  torch::Tensor forward(torch::Tensor x) override;
  /// Global average of the 512-channel features (the head's input, pooled).
  torch::Tensor forward_features(torch::Tensor x) override;
  /// Before each max-pool and the last Fire (strides 2, 4, 8, 16).
  std::vector<torch::Tensor> forward_stages(torch::Tensor x) override;
  int64_t num_features() const override { return 512; }
  void reset_classifier(int64_t num_classes) override;
  std::vector<std::shared_ptr<torch::nn::Module>> backbone() override;
  std::shared_ptr<torch::nn::Module> head() override;

  torch::nn::Sequential features{nullptr};
  torch::nn::Sequential classifier{nullptr}; // classifier.0 (dropout); classifier.1 is `final_conv`
  torch::nn::Conv2d final_conv{nullptr};

private:
  std::vector<size_t> taps_;
};
TORCH_MODULE(SqueezeNet);

} // namespace rookery::zoo

// MNASNet (B1) 0.5 / 0.75 / 1.0 / 1.3 (torchvision 0.14, _version 2: module
// names layers.<i>[.<j>.layers.<k>], classifier.1; BatchNorm momentum 0.0003).
#pragma once
#include <torch/torch.h>

#include "models/zoo/zoo.hpp"

namespace rookery::zoo {

struct MNASNetOptions {
  double alpha = 1.0;         // depth multiplier
  int64_t num_classes = 1000; // 0: no classifier.1
  int64_t in_channels = 3;
  double dropout = 0.2;
};

class MNASNetImpl : public ZooModelImpl {
public:
  explicit MNASNetImpl(const MNASNetOptions& o = {});
  torch::Tensor forward(torch::Tensor x) override;
  /// layers output (1280 channels) globally averaged.
  torch::Tensor forward_features(torch::Tensor x) override;
  /// Strides 2, 4, 8, 16, 32.
  std::vector<torch::Tensor> forward_stages(torch::Tensor x) override;
  int64_t num_features() const override { return 1280; }
  void reset_classifier(int64_t num_classes) override;
  std::vector<std::shared_ptr<torch::nn::Module>> backbone() override;
  std::shared_ptr<torch::nn::Module> head() override;

  torch::nn::Sequential layers{nullptr};
  torch::nn::Sequential classifier{nullptr}; // classifier.0 (dropout); classifier.1 is `fc`
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(MNASNet);

} // namespace rookery::zoo

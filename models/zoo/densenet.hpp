// DenseNet 121/161/169/201 (torchvision 0.14 module names: features.{conv0,
// norm0, denseblock<i>.denselayer<j>.{norm1,conv1,norm2,conv2}, transition<i>.
// {norm,conv}, norm5}, classifier). Checkpoints must use the current key names
// (torchvision's model.state_dict()), not the legacy "norm.1" style of the
// original download files.
#pragma once
#include <string>
#include <vector>

#include <torch/torch.h>

#include "models/zoo/zoo.hpp"

namespace rookery::zoo {

struct DenseNetOptions {
  int64_t growth_rate = 32;
  std::vector<int64_t> block_config{6, 12, 24, 16};
  int64_t num_init_features = 64;
  int64_t bn_size = 4;
  double drop_rate = 0; // dropout after each dense layer (torchvision's only dropout)
  int64_t num_classes = 1000; // 0: no classifier
  int64_t in_channels = 3;
};

class DenseNetImpl : public ZooModelImpl {
public:
  explicit DenseNetImpl(const DenseNetOptions& o = {});
  torch::Tensor forward(torch::Tensor x) override;
  /// relu(features) globally averaged.
  torch::Tensor forward_features(torch::Tensor x) override;
  /// relu0 (stride 2), denseblock1 (4), denseblock2 (8), denseblock3 (16), relu(norm5) (32).
  std::vector<torch::Tensor> forward_stages(torch::Tensor x) override;
  int64_t num_features() const override { return num_features_; }
  void reset_classifier(int64_t num_classes) override;
  std::vector<std::shared_ptr<torch::nn::Module>> backbone() override;
  std::shared_ptr<torch::nn::Module> head() override;

  torch::nn::Sequential features{nullptr};
  torch::nn::Linear classifier{nullptr};

private:
  int64_t num_features_ = 0;
};
TORCH_MODULE(DenseNet);

} // namespace rookery::zoo

// ConvNeXt tiny / small / base / large with torchvision 0.14's module names:
//   features.0 (stem: .0 Conv2d 4x4/4, .1 LayerNorm2d)
//   features.{1,3,5,7}.<i> (CNBlock: layer_scale, block.{0 dwconv 7x7, 2 LayerNorm,
//                           3 Linear, 5 Linear})
//   features.{2,4,6} (downsample: .0 LayerNorm2d, .1 Conv2d 2x2/2)
//   avgpool, classifier.{0 LayerNorm2d, 2 Linear}
#pragma once
#include <string>
#include <vector>

#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include "models/zoo/layers.hpp"
#include "models/zoo/zoo.hpp"

namespace rookery::zoo {

/// torchvision builder names, in torchvision order.
const std::vector<std::string>& convnext_names();

class CNBlockImpl : public torch::nn::Module {
public:
  CNBlockImpl(int64_t dim, double layer_scale, double stochastic_depth_prob);
  torch::Tensor forward(const torch::Tensor& x);

  torch::Tensor layer_scale;
  Seq block{nullptr};
  StochasticDepth stochastic_depth{nullptr};
};
TORCH_MODULE(CNBlock);

class ConvNeXtImpl : public ZooModelImpl {
public:
  /// `arch`: one of convnext_names(). Honours num_classes (0: no Linear),
  /// in_channels and drop_path (torchvision's stochastic_depth_prob; < 0: the
  /// variant's 0.1 / 0.4 / 0.5 / 0.5). ConvNeXt has no classifier dropout.
  explicit ConvNeXtImpl(const std::string& arch, const model_options& o = {});

  torch::Tensor forward(torch::Tensor x) override;
  /// avgpool, classifier.0 (LayerNorm2d), flatten: (N, num_features()).
  torch::Tensor forward_features(torch::Tensor x) override;
  /// The output of each stage (features.1, .3, .5, .7): strides 4, 8, 16, 32.
  std::vector<torch::Tensor> forward_stages(torch::Tensor x) override;
  int64_t num_features() const override { return num_features_; }
  void reset_classifier(int64_t num_classes) override;
  std::vector<std::shared_ptr<torch::nn::Module>> backbone() override;
  std::shared_ptr<torch::nn::Module> head() override;

  Seq features{nullptr};
  torch::nn::AdaptiveAvgPool2d avgpool{nullptr};
  Seq classifier{nullptr}; // 0 LayerNorm2d, 1 Flatten, 2 Linear (absent with 0 classes)

private:
  int64_t num_features_ = 0;
};
TORCH_MODULE(ConvNeXt);

} // namespace rookery::zoo

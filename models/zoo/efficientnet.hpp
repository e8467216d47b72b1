// EfficientNet B0..B7 and EfficientNetV2 S/M/L with torchvision 0.14's module
// names:
//   features.0 (stem Conv2dNormActivation: .0 conv, .1 bn)
//   features.<s>.<i>.block.<j>  (MBConv: [expand], depthwise, SE (fc1, fc2), project;
//                                FusedMBConv: fused expand [+ project])
//   features.<last> (1x1 head conv), avgpool, classifier.{0 Dropout, 1 Linear}
#pragma once
#include <string>
#include <vector>

#include "models/zoo/layers.hpp"
#include "models/zoo/zoo.hpp"

namespace rookery::zoo {

/// torchvision builder names, in torchvision order.
const std::vector<std::string>& efficientnet_names();

/// MBConv and FusedMBConv (same module names: block, stochastic_depth).
class MBConvImpl : public torch::nn::Module {
public:
  struct config {
    bool fused = false;
    double expand_ratio = 1;
    int64_t kernel = 3, stride = 1, input_channels = 0, out_channels = 0;
  };
  MBConvImpl(const config& c, double stochastic_depth_prob, double bn_eps, double bn_momentum);
  torch::Tensor forward(const torch::Tensor& x);

  Seq block{nullptr};
  StochasticDepth stochastic_depth{nullptr};
  bool use_res_connect = false;
};
TORCH_MODULE(MBConv);

class EfficientNetImpl : public ZooModelImpl {
public:
  /// `arch`: one of efficientnet_names(). Honours num_classes (0: no Linear),
  /// in_channels, dropout (< 0: the variant's), drop_path (torchvision's
  /// stochastic_depth_prob; < 0: 0.2) and, for B0..B7, width_mult (multiplies
  /// the variant's width). Throws c10::Error for anything else.
  explicit EfficientNetImpl(const std::string& arch, const model_options& o = {});

  torch::Tensor forward(torch::Tensor x) override;
  /// avgpool + flatten of features: (N, num_features()).
  torch::Tensor forward_features(torch::Tensor x) override;
  /// Last block output at each stride 2, 4, 8, 16, 32 (timm's feature taps;
  /// the 1x1 head conv is not a stage).
  std::vector<torch::Tensor> forward_stages(torch::Tensor x) override;
  int64_t num_features() const override { return num_features_; }
  void reset_classifier(int64_t num_classes) override;
  std::vector<std::shared_ptr<torch::nn::Module>> backbone() override;
  std::shared_ptr<torch::nn::Module> head() override;

  Seq features{nullptr};
  torch::nn::AdaptiveAvgPool2d avgpool{nullptr};
  Seq classifier{nullptr};

private:
  int64_t num_features_ = 0;
  double dropout_ = 0;
  std::vector<size_t> taps_; // indices into features whose outputs are stages
};
TORCH_MODULE(EfficientNet);

} // namespace rookery::zoo

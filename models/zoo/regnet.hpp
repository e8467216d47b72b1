// RegNet X and Y (regnet_x_400mf ... regnet_x_32gf, regnet_y_400mf ...
// regnet_y_128gf) with torchvision 0.14's module names:
//   stem.{0 conv, 1 bn}
//   trunk_output.block<s>.block<s>-<i>.{proj.{0,1}, f.{a,b,se,c}}
//   avgpool, fc
// The per-stage widths / depths / group widths come from torchvision's
// BlockParams.from_init_params (quantized linear widths), ported with the
// same float32 tensor arithmetic so the rounding is identical.
#pragma once
#include <string>
#include <vector>

#include <torch/nn/modules/linear.h>

#include "models/zoo/layers.hpp"
#include "models/zoo/zoo.hpp"

namespace rookery::zoo {

/// torchvision builder names, in torchvision order.
const std::vector<std::string>& regnet_names();

/// torchvision.models.regnet.BlockParams.
struct regnet_block_params {
  std::vector<int64_t> depths, widths, group_widths, strides;
  std::vector<double> bottleneck_multipliers;
  double se_ratio = 0; // 0: no SqueezeExcitation
};
regnet_block_params regnet_params_from_init(int64_t depth, int64_t w_0, double w_a, double w_m,
                                            int64_t group_width, double bottleneck_multiplier = 1.0,
                                            double se_ratio = 0);
/// The BlockParams of a torchvision builder name; false when unknown.
bool regnet_arch(const std::string& arch, regnet_block_params& out);

class ResBottleneckBlockImpl : public torch::nn::Module {
public:
  ResBottleneckBlockImpl(int64_t width_in, int64_t width_out, int64_t stride, int64_t group_width,
                         double bottleneck_multiplier, double se_ratio);
  torch::Tensor forward(const torch::Tensor& x);

  Seq proj{nullptr}; // null when the shape is kept
  Seq f{nullptr};    // a, b, [se], c
};
TORCH_MODULE(ResBottleneckBlock);

class RegNetImpl : public ZooModelImpl {
public:
  /// `arch`: one of regnet_names(). Honours num_classes (0: no fc) and in_channels.
  explicit RegNetImpl(const std::string& arch, const model_options& o = {});

  torch::Tensor forward(torch::Tensor x) override;
  /// avgpool + flatten: (N, num_features()).
  torch::Tensor forward_features(torch::Tensor x) override;
  /// stem, block1..block4: strides 2, 4, 8, 16, 32.
  std::vector<torch::Tensor> forward_stages(torch::Tensor x) override;
  int64_t num_features() const override { return num_features_; }
  void reset_classifier(int64_t num_classes) override;
  std::vector<std::shared_ptr<torch::nn::Module>> backbone() override;
  std::shared_ptr<torch::nn::Module> head() override;

  Seq stem{nullptr};
  Seq trunk_output{nullptr};
  torch::nn::AdaptiveAvgPool2d avgpool{nullptr};
  torch::nn::Linear fc{nullptr}; // null with 0 classes

private:
  int64_t num_features_ = 0;
};
TORCH_MODULE(RegNet);

} // namespace rookery::zoo

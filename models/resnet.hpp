// ResNet family in LibTorch with torchvision 0.14's exact module tree, so a
// torchvision `state_dict()` loads by name (see models/state_dict.hpp):
//   conv1, bn1, relu, maxpool, layer1..layer4, avgpool, fc
//   layerN.<i>.{conv1,bn1,conv2,bn2[,conv3,bn3],downsample.0,downsample.1}
// ResNetImpl is a zoo model (models/zoo/zoo.hpp): the registry's "resnet" family
// (models/zoo/resnet_zoo.cpp) builds it. Actor and HTTP code never include this
// header (it pulls in torch); they use models/embedding_model.hpp instead.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>
#include <torch/nn/pimpl.h>

#include "common/result.hpp"
#include "models/zoo/zoo.hpp"

namespace rookery {

struct ResNetOptions {
  /// resnet18, resnet34, resnet50, resnet101, resnet152, resnext50_32x4d,
  /// resnext101_32x8d, resnext101_64x4d, wide_resnet50_2, wide_resnet101_2.
  std::string arch = "resnet18";
  /// 0: no classifier (forward() returns forward_features()).
  int64_t num_classes = 1000;
  int64_t in_channels = 3;
  /// Bottleneck grouping. The resnext*/wide_* archs bring their torchvision
  /// values (e.g. 32 and 4 for resnext50_32x4d); values that differ from the
  /// defaults (1, 64) override the arch's. BasicBlock archs (resnet18/34)
  /// require 1 and 64, as in torchvision.
  int64_t groups = 1;
  int64_t width_per_group = 64;
  /// Dropout before fc while training (timm's drop_rate); torchvision has none.
  double dropout = 0;
  /// Stochastic depth (timm's drop_path_rate): block i of n drops its residual
  /// branch with probability drop_path * i / (n - 1) while training.
  double drop_path = 0;
};

/// Block depths and kind of a known arch; false for an unknown one.
struct resnet_arch_info {
  bool bottleneck = false;
  std::vector<int64_t> layers;
  int64_t groups = 1;
  int64_t width_per_group = 64;
};
bool resnet_arch(const std::string& arch, resnet_arch_info& out);
/// Names accepted by ResNetOptions::arch, in torchvision order.
const std::vector<std::string>& resnet_archs();

class BasicBlockImpl : public torch::nn::Module {
public:
  static constexpr int64_t expansion = 1;
  BasicBlockImpl(int64_t inplanes, int64_t planes, int64_t stride,
                 torch::nn::Sequential downsample);
  torch::Tensor forward(torch::Tensor x);

  double drop_path = 0; // stochastic depth rate of the residual branch
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
  torch::nn::ReLU relu{nullptr};
  torch::nn::Sequential downsample{nullptr};
};
TORCH_MODULE(BasicBlock);

class BottleneckImpl : public torch::nn::Module {
public:
  static constexpr int64_t expansion = 4;
  BottleneckImpl(int64_t inplanes, int64_t planes, int64_t stride,
                 torch::nn::Sequential downsample, int64_t groups, int64_t base_width);
  torch::Tensor forward(torch::Tensor x);

  double drop_path = 0; // stochastic depth rate of the residual branch
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  torch::nn::ReLU relu{nullptr};
  torch::nn::Sequential downsample{nullptr};
};
TORCH_MODULE(Bottleneck);

class ResNetImpl : public zoo::ZooModelImpl {
public:
  /// Throws c10::Error for an unknown arch or invalid options, like any torch
  /// module constructor; make_resnet() is the non-throwing way.
  explicit ResNetImpl(const ResNetOptions& options = {});

  /// Logits, N x num_classes (the features when num_classes is 0).
  torch::Tensor forward(torch::Tensor x) override;
  /// Globally pooled penultimate features, N x feature_dim().
  torch::Tensor forward_features(torch::Tensor x) override;
  /// Stem (after relu, stride 2), layer1 (4), layer2 (8), layer3 (16), layer4 (32).
  std::vector<torch::Tensor> forward_stages(torch::Tensor x) override;
  int64_t num_features() const override { return feature_dim_; }
  void reset_classifier(int64_t num_classes) override;
  std::vector<std::shared_ptr<torch::nn::Module>> backbone() override;
  std::shared_ptr<torch::nn::Module> head() override;
  /// 512 for BasicBlock archs, 2048 for Bottleneck archs.
  int64_t feature_dim() const { return feature_dim_; }
  const ResNetOptions& options() const { return options_; }

  /// Re-initialises every parameter and buffer like the constructor does
  /// (kaiming-normal fan_out convs, BN 1/0, torch-default Linear) but from a
  /// private generator seeded with `seed`, so the result is reproducible and
  /// independent of the global RNG.
  void reset_parameters(uint64_t seed);

  torch::nn::Conv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr};
  torch::nn::ReLU relu{nullptr};
  torch::nn::MaxPool2d maxpool{nullptr};
  torch::nn::Sequential layer1{nullptr}, layer2{nullptr}, layer3{nullptr}, layer4{nullptr};
  torch::nn::AdaptiveAvgPool2d avgpool{nullptr};
  torch::nn::Linear fc{nullptr}; // nullptr when num_classes is 0

private:
  torch::Tensor stem(torch::Tensor x);
  torch::nn::Sequential make_layer(bool bottleneck, int64_t planes, int64_t blocks,
                                   int64_t stride);

  ResNetOptions options_;
  int64_t inplanes_ = 64;
  int64_t groups_ = 1;
  int64_t base_width_ = 64;
  int64_t feature_dim_ = 512;
};
TORCH_MODULE(ResNet);

/// Non-throwing constructor: bad_request for an unknown arch or bad options.
result<ResNet> make_resnet(const ResNetOptions& options);

} // namespace rookery

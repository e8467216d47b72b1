// GoogLeNet (Inception v1) with torchvision 0.14's module names (conv1.conv,
// conv1.bn, inception3a.branch2.1.conv, aux1.fc2, fc, ...). Defaults are those
// of torchvision.models.googlenet(weights=None): aux_logits=True (aux1/aux2 are
// built; they only run while training and are in the state_dict) and
// transform_input=False. torchvision's pretrained googlenet uses
// transform_input=True and drops the aux heads from its state_dict.
#pragma once
#include <torch/torch.h>

#include "models/zoo/zoo.hpp"

namespace rookery::zoo {

namespace classic {

/// conv (no bias) + BatchNorm (eps 0.001) + ReLU: GoogLeNet's and Inception V3's BasicConv2d.
class BasicConv2dImpl : public torch::nn::Module {
public:
  BasicConv2dImpl(int64_t in, int64_t out, torch::ExpandingArray<2> k,
                  torch::ExpandingArray<2> stride = 1, torch::ExpandingArray<2> pad = 0);
  torch::Tensor forward(torch::Tensor x);
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
};
TORCH_MODULE(BasicConv2d);

/// GoogLeNet's Inception block: branch1, branch2.{0,1}, branch3.{0,1}, branch4.1.
class InceptionV1BlockImpl : public torch::nn::Module {
public:
  InceptionV1BlockImpl(int64_t in, int64_t ch1x1, int64_t ch3x3red, int64_t ch3x3, int64_t ch5x5red,
                       int64_t ch5x5, int64_t pool_proj);
  torch::Tensor forward(torch::Tensor x);
  BasicConv2d branch1{nullptr};
  torch::nn::Sequential branch2{nullptr}, branch3{nullptr}, branch4{nullptr};
};
TORCH_MODULE(InceptionV1Block);

/// GoogLeNet's auxiliary classifier: conv, fc1, fc2.
class GoogLeNetAuxImpl : public torch::nn::Module {
public:
  GoogLeNetAuxImpl(int64_t in, int64_t num_classes, double dropout);
  torch::Tensor forward(torch::Tensor x);
  BasicConv2d conv{nullptr};
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  torch::nn::Dropout dropout{nullptr};
};
TORCH_MODULE(GoogLeNetAux);

} // namespace classic

struct GoogLeNetOptions {
  int64_t num_classes = 1000; // 0: no fc (and no aux heads)
  int64_t in_channels = 3;
  bool aux_logits = true;
  bool transform_input = false;
  double dropout = 0.2;
  double dropout_aux = 0.7;
};

class GoogLeNetImpl : public ZooModelImpl {
public:
  explicit GoogLeNetImpl(const GoogLeNetOptions& o = {});
  /// Main logits (the aux heads are training-only outputs: see aux_forward()).
  torch::Tensor forward(torch::Tensor x) override;
  /// avgpool output flattened: 1024-d.
  torch::Tensor forward_features(torch::Tensor x) override;
  /// conv1 (stride 2), conv3 (4), inception3b (8), inception4e (16), inception5b (32).
  std::vector<torch::Tensor> forward_stages(torch::Tensor x) override;
  int64_t num_features() const override { return 1024; }
  void reset_classifier(int64_t num_classes) override;
  std::vector<std::shared_ptr<torch::nn::Module>> backbone() override;
  std::shared_ptr<torch::nn::Module> head() override;
  std::vector<std::shared_ptr<torch::nn::Module>> aux_heads() override;
  /// {logits, aux2, aux1} like torchvision's GoogLeNetOutputs in training mode
  /// (aux outputs undefined without aux heads).
  std::vector<torch::Tensor> forward_with_aux(torch::Tensor x);

  classic::BasicConv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  classic::InceptionV1Block inception3a{nullptr}, inception3b{nullptr}, inception4a{nullptr},
    inception4b{nullptr}, inception4c{nullptr}, inception4d{nullptr}, inception4e{nullptr},
    inception5a{nullptr}, inception5b{nullptr};
  classic::GoogLeNetAux aux1{nullptr}, aux2{nullptr};
  torch::nn::Linear fc{nullptr};

private:
  torch::Tensor body(torch::Tensor x, std::vector<torch::Tensor>* stages,
                     std::vector<torch::Tensor>* aux);
  GoogLeNetOptions options_;
};
TORCH_MODULE(GoogLeNet);

} // namespace rookery::zoo

// Inception V3 with torchvision 0.14's module names (Conv2d_1a_3x3.conv,
// Mixed_5b.branch5x5_1.bn, AuxLogits.conv1, fc, ...). Defaults are those of
// torchvision.models.inception_v3(weights=None): aux_logits=True (AuxLogits is
// built; it only runs while training and is in the state_dict) and
// transform_input=False (torchvision's pretrained weights use True). Needs
// inputs of at least 75 x 75.
#pragma once
#include <torch/torch.h>

#include "models/zoo/googlenet.hpp"
#include "models/zoo/zoo.hpp"

namespace rookery::zoo {

struct InceptionV3Options {
  int64_t num_classes = 1000; // 0: no fc (and no AuxLogits)
  int64_t in_channels = 3;
  bool aux_logits = true;
  bool transform_input = false;
  double dropout = 0.5;
};

class InceptionV3Impl : public ZooModelImpl {
public:
  explicit InceptionV3Impl(const InceptionV3Options& o = {});
  torch::Tensor forward(torch::Tensor x) override;
  /// avgpool output flattened: 2048-d.
  torch::Tensor forward_features(torch::Tensor x) override;
  /// Conv2d_2b_3x3 (stride 2), Conv2d_4a_3x3 (4), Mixed_5d (8), Mixed_6e (16), Mixed_7c (32).
  std::vector<torch::Tensor> forward_stages(torch::Tensor x) override;
  int64_t num_features() const override { return 2048; }
  void reset_classifier(int64_t num_classes) override;
  std::vector<std::shared_ptr<torch::nn::Module>> backbone() override;
  std::shared_ptr<torch::nn::Module> head() override;
  std::vector<std::shared_ptr<torch::nn::Module>> aux_heads() override;
  /// {logits, aux} like torchvision's InceptionOutputs in training mode
  /// (aux undefined without AuxLogits; needs inputs of 299 px or so).
  std::vector<torch::Tensor> forward_with_aux(torch::Tensor x);

  std::vector<std::shared_ptr<torch::nn::Module>> blocks; // stem + Mixed_*, in order
  std::shared_ptr<torch::nn::Module> aux{nullptr};        // AuxLogits
  torch::nn::Linear fc{nullptr};

private:
  torch::Tensor body(torch::Tensor x, std::vector<torch::Tensor>* stages, torch::Tensor* aux_out);
  InceptionV3Options options_;
  std::vector<std::function<torch::Tensor(torch::Tensor)>> run_;
  std::vector<std::string> names_;
};
TORCH_MODULE(InceptionV3);

} // namespace rookery::zoo

// Vision Transformer (vit_b_16, vit_b_32, vit_l_16, vit_l_32, vit_h_14) with
// torchvision 0.14's module names:
//   conv_proj, class_token, encoder.pos_embedding,
//   encoder.layers.encoder_layer_<i>.{ln_1, self_attention.{in_proj_weight,
//     in_proj_bias, out_proj}, ln_2, mlp.{0, 3}},
//   encoder.ln, heads.head
#pragma once
#include <string>
#include <vector>

#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include "models/zoo/layers.hpp"
#include "models/zoo/zoo.hpp"

namespace rookery::zoo {

/// torchvision builder names, in torchvision order.
const std::vector<std::string>& vit_names();

/// nn.MultiheadAttention(dim, heads, batch_first=True) used as self-attention
/// (query = key = value, no masks): in_proj_weight, in_proj_bias, out_proj.
class SelfAttentionImpl : public torch::nn::Module {
public:
  SelfAttentionImpl(int64_t dim, int64_t num_heads, double attention_dropout = 0.0);
  /// (N, L, dim) -> (N, L, dim)
  torch::Tensor forward(const torch::Tensor& x);

  torch::Tensor in_proj_weight, in_proj_bias;
  torch::nn::Linear out_proj{nullptr};
  int64_t num_heads;
  double attention_dropout;
};
TORCH_MODULE(SelfAttention);

class EncoderBlockImpl : public torch::nn::Module {
public:
  EncoderBlockImpl(int64_t num_heads, int64_t hidden_dim, int64_t mlp_dim, double dropout,
                   double attention_dropout);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::LayerNorm ln_1{nullptr}, ln_2{nullptr};
  SelfAttention self_attention{nullptr};
  torch::nn::Dropout dropout{nullptr};
  Seq mlp{nullptr};
};
TORCH_MODULE(EncoderBlock);

class ViTEncoderImpl : public torch::nn::Module {
public:
  ViTEncoderImpl(int64_t seq_length, int64_t num_layers, int64_t num_heads, int64_t hidden_dim,
                 int64_t mlp_dim, double dropout, double attention_dropout);
  torch::Tensor forward(const torch::Tensor& x);

  torch::Tensor pos_embedding;
  torch::nn::Dropout dropout{nullptr};
  Seq layers{nullptr};
  torch::nn::LayerNorm ln{nullptr};
};
TORCH_MODULE(ViTEncoder);

class VisionTransformerImpl : public ZooModelImpl {
public:
  /// `arch`: one of vit_names(). Honours num_classes (0: no heads.head),
  /// in_channels, image_size (0: 224; must be a multiple of the patch size;
  /// the position embedding follows it) and dropout (torchvision's encoder
  /// dropout, default 0). ViT has no stochastic depth.
  explicit VisionTransformerImpl(const std::string& arch, const model_options& o = {});

  torch::Tensor forward(torch::Tensor x) override;
  /// The class token after encoder.ln: (N, hidden_dim).
  torch::Tensor forward_features(torch::Tensor x) override;
  /// The patch tokens after each encoder layer (before encoder.ln), as NCHW
  /// maps (N, hidden_dim, image_size / patch, image_size / patch).
  std::vector<torch::Tensor> forward_stages(torch::Tensor x) override;
  int64_t num_features() const override { return hidden_dim_; }
  void reset_classifier(int64_t num_classes) override;
  std::vector<std::shared_ptr<torch::nn::Module>> backbone() override;
  std::shared_ptr<torch::nn::Module> head() override;

  int64_t image_size() const { return image_size_; }
  int64_t patch_size() const { return patch_size_; }

  torch::nn::Conv2d conv_proj{nullptr};
  torch::Tensor class_token;
  ViTEncoder encoder{nullptr};
  torch::nn::Sequential heads{nullptr}; // "head" (absent with 0 classes)

private:
  /// conv_proj, flatten, prepend the class token: (N, 1 + patches, hidden_dim).
  torch::Tensor tokens(const torch::Tensor& x);

  int64_t image_size_ = 224, patch_size_ = 16, hidden_dim_ = 768;
};
TORCH_MODULE(VisionTransformer);

} // namespace rookery::zoo

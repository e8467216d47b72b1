// Swin Transformer V1 (swin_t, swin_s, swin_b) and V2 (swin_v2_t, swin_v2_s,
// swin_v2_b) with torchvision 0.14's module names:
//   features.0 (patch embedding: .0 Conv2d 4x4/4, .2 LayerNorm; NHWC after it)
//   features.{1,3,5,7}.<i> (SwinTransformerBlock[V2]: norm1, attn.{qkv, proj,
//     relative_position_bias_table (V1) | logit_scale, cpb_mlp.{0,2},
//     relative_coords_table (V2), relative_position_index}, norm2, mlp.{0,3})
//   features.{2,4,6} (PatchMerging[V2]: reduction, norm)
//   norm, head
#pragma once
#include <string>
#include <vector>

#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include "models/zoo/layers.hpp"
#include "models/zoo/zoo.hpp"

namespace rookery::zoo {

/// torchvision builder names, in torchvision order.
const std::vector<std::string>& swin_names();

/// torchvision.models.swin_transformer.shifted_window_attention on an NHWC
/// tensor: pads to whole windows, cyclic shift (dropped along a dim where the
/// window covers the padded map), window attention with the relative position
/// bias and the shifted-window mask, reverse shift, crop. `logit_scale`
/// defined: V2's cosine attention (and the key bias is zeroed).
torch::Tensor shifted_window_attention(const torch::Tensor& input, const torch::Tensor& qkv_weight,
                                       const torch::Tensor& proj_weight,
                                       const torch::Tensor& relative_position_bias,
                                       const std::vector<int64_t>& window_size, int64_t num_heads,
                                       std::vector<int64_t> shift_size, double attention_dropout,
                                       double dropout, const torch::Tensor& qkv_bias,
                                       const torch::Tensor& proj_bias,
                                       const torch::Tensor& logit_scale, bool training);

class ShiftedWindowAttentionImpl : public torch::nn::Module {
public:
  ShiftedWindowAttentionImpl(int64_t dim, std::vector<int64_t> window_size,
                             std::vector<int64_t> shift_size, int64_t num_heads, bool v2,
                             double attention_dropout = 0.0, double dropout = 0.0);
  /// (B, H, W, C) -> (B, H, W, C)
  torch::Tensor forward(const torch::Tensor& x);
  /// (1, heads, Wh*Ww, Wh*Ww)
  torch::Tensor relative_position_bias();

  torch::nn::Linear qkv{nullptr}, proj{nullptr};
  torch::Tensor relative_position_bias_table; // V1
  torch::Tensor logit_scale;                  // V2
  Seq cpb_mlp{nullptr};                       // V2
  torch::Tensor relative_coords_table;        // V2 (buffer)
  torch::Tensor relative_position_index;      // buffer
  std::vector<int64_t> window_size, shift_size;
  int64_t num_heads;
  bool v2;
  double attention_dropout, dropout;
};
TORCH_MODULE(ShiftedWindowAttention);

class SwinTransformerBlockImpl : public torch::nn::Module {
public:
  SwinTransformerBlockImpl(int64_t dim, int64_t num_heads, std::vector<int64_t> window_size,
                           std::vector<int64_t> shift_size, bool v2, double mlp_ratio,
                           double dropout, double attention_dropout, double stochastic_depth_prob);
  torch::Tensor forward(torch::Tensor x);

  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  ShiftedWindowAttention attn{nullptr};
  StochasticDepth stochastic_depth{nullptr};
  Seq mlp{nullptr};
  bool v2;
};
TORCH_MODULE(SwinTransformerBlock);

/// PatchMerging (V1: norm(4C) then reduction) and PatchMergingV2 (reduction
/// then norm(2C)); NHWC (B, H, W, C) -> (B, ceil(H/2), ceil(W/2), 2C).
class PatchMergingImpl : public torch::nn::Module {
public:
  PatchMergingImpl(int64_t dim, bool v2);
  torch::Tensor forward(torch::Tensor x);

  torch::nn::Linear reduction{nullptr};
  torch::nn::LayerNorm norm{nullptr};
  bool v2;
};
TORCH_MODULE(PatchMerging);

class SwinTransformerImpl : public ZooModelImpl {
public:
  /// `arch`: one of swin_names(). Honours num_classes (0: no head),
  /// in_channels, dropout (torchvision's dropout of the attention output and
  /// MLP, default 0) and drop_path (stochastic_depth_prob; < 0: the variant's
  /// 0.2 / 0.3 / 0.5). Any input size works (windows are padded).
  explicit SwinTransformerImpl(const std::string& arch, const model_options& o = {});

  torch::Tensor forward(torch::Tensor x) override;
  /// norm, then the spatial average: (N, num_features()).
  torch::Tensor forward_features(torch::Tensor x) override;
  /// The output of each stage (features.1, .3, .5, .7) as NCHW maps: strides
  /// 4, 8, 16, 32 (no final norm).
  std::vector<torch::Tensor> forward_stages(torch::Tensor x) override;
  int64_t num_features() const override { return num_features_; }
  void reset_classifier(int64_t num_classes) override;
  std::vector<std::shared_ptr<torch::nn::Module>> backbone() override;
  std::shared_ptr<torch::nn::Module> head() override;

  Seq features{nullptr};
  torch::nn::LayerNorm norm{nullptr};
  torch::nn::AdaptiveAvgPool2d avgpool{nullptr};
  torch::nn::Linear head_{nullptr}; // registered as "head"; null with 0 classes

private:
  int64_t num_features_ = 0;
};
TORCH_MODULE(SwinTransformer);

} // namespace rookery::zoo

// MaxViT (maxvit_t) with torchvision 0.14's module names:
//   stem.0.{0 Conv2d 3x3/2, 1 BatchNorm2d}, stem.1.0 (Conv2d 3x3 with bias)
//   blocks.<b>.layers.<l>.layers.MBconv.{proj.1 (stride 2: after proj.0, an
//     AvgPool2d) | proj.0 (channels change only), layers.{pre_norm,
//     conv_a.{0,1}, conv_b.{0,1}, squeeze_excitation.{fc1, fc2}, conv_c}}
//   blocks.<b>.layers.<l>.layers.{window_attention, grid_attention}.{
//     attn_layer.{0 LayerNorm, 1.{to_qkv, merge, relative_position_bias_table,
//     relative_position_index}}, mlp_layer.{0 LayerNorm, 1 Linear, 3 Linear}}
//   classifier.{2 LayerNorm, 3 Linear, 5 Linear (no bias)}
// The attention is tied to the input size (grid attention partitions the
// feature map into a fixed number of cells), so the model is built for one
// image_size, like ViT.
#pragma once
#include <string>
#include <vector>

#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include "models/zoo/layers.hpp"
#include "models/zoo/zoo.hpp"

namespace rookery::zoo {

/// torchvision builder names.
const std::vector<std::string>& maxvit_names();

/// The arguments of torchvision.models.maxvit.MaxVit (activation GELU and
/// BatchNorm2d(eps 1e-3, momentum 0.99), as torchvision's defaults).
struct maxvit_config {
  int64_t stem_channels = 64;
  std::vector<int64_t> block_channels{64, 128, 256, 512};
  std::vector<int64_t> block_layers{2, 2, 5, 2};
  int64_t head_dim = 32;
  int64_t partition_size = 7;
  double stochastic_depth_prob = 0.2;
  double squeeze_ratio = 0.25;
  double expansion_ratio = 4;
  int64_t mlp_ratio = 4;
};

/// The config of `arch` (one of maxvit_names()); false for an unknown name.
bool maxvit_arch(const std::string& arch, maxvit_config& c);

/// The feature-map size of each block (after its stride-2 first layer) for a
/// square input of `image_size`, as torchvision computes it.
std::vector<int64_t> maxvit_block_sizes(int64_t image_size, size_t n_blocks);

/// Empty when `image_size` suits `c` (every block's size a multiple of
/// partition_size); otherwise why not, with the nearest sizes that do.
std::string maxvit_size_problem(const maxvit_config& c, int64_t image_size);

/// torchvision.models.maxvit.MBConv (not EfficientNet's MBConv, models/zoo/efficientnet.hpp):
/// proj(x) + stochastic_depth(layers(x)).
class MaxVitMBConvImpl : public torch::nn::Module {
public:
  MaxVitMBConvImpl(int64_t in_channels, int64_t out_channels, double expansion_ratio,
                   double squeeze_ratio, int64_t stride, double p_stochastic_dropout);
  torch::Tensor forward(torch::Tensor x);

  Seq proj{nullptr}; // empty (the identity) when neither stride nor channels change
  Seq layers{nullptr};
  StochasticDepth stochastic_depth{nullptr};
};
TORCH_MODULE(MaxVitMBConv);

/// torchvision's RelativePositionalMultiHeadAttention on (B, G, P, D) tokens
/// (G groups of P = partition_size^2 tokens). Note torchvision scales the keys
/// by feat_dim^-0.5 (not head_dim^-0.5); so does this.
class RelativePositionalMultiHeadAttentionImpl : public torch::nn::Module {
public:
  RelativePositionalMultiHeadAttentionImpl(int64_t feat_dim, int64_t head_dim, int64_t max_seq_len);
  torch::Tensor forward(const torch::Tensor& x);
  /// (1, heads, P, P)
  torch::Tensor relative_positional_bias() const;

  torch::nn::Linear to_qkv{nullptr}, merge{nullptr};
  torch::Tensor relative_position_bias_table; // ((2s - 1)^2, heads)
  torch::Tensor relative_position_index;      // buffer (P, P), int64
  int64_t n_heads, head_dim, size, max_seq_len;
  double scale_factor;
};
TORCH_MODULE(RelativePositionalMultiHeadAttention);

/// Block ("window") or grid partitioned attention + MLP on an NCHW map of
/// size grid_size x grid_size.
class PartitionAttentionLayerImpl : public torch::nn::Module {
public:
  PartitionAttentionLayerImpl(int64_t in_channels, int64_t head_dim, int64_t partition_size,
                              bool grid, int64_t grid_size, int64_t mlp_ratio,
                              double attention_dropout, double mlp_dropout,
                              double p_stochastic_dropout);
  torch::Tensor forward(torch::Tensor x);

  Seq attn_layer{nullptr}; // 0 LayerNorm, 1 attention, 2 Dropout
  Seq mlp_layer{nullptr};  // 0 LayerNorm, 1 Linear, 2 GELU, 3 Linear, 4 Dropout
  StochasticDepth stochastic_dropout{nullptr};
  bool grid;
  int64_t p;         // the side of a partition window (window: partition_size; grid: cells)
  int64_t grid_size; // the side of the feature map
};
TORCH_MODULE(PartitionAttentionLayer);

/// MBConv, then window attention, then grid attention: layers.{MBconv,
/// window_attention, grid_attention}.
class MaxVitLayerImpl : public torch::nn::Module {
public:
  MaxVitLayerImpl(int64_t in_channels, int64_t out_channels, const maxvit_config& c, int64_t stride,
                  int64_t grid_size, double attention_dropout, double mlp_dropout,
                  double p_stochastic_dropout);
  torch::Tensor forward(torch::Tensor x) { return layers->forward(std::move(x)); }

  Seq layers{nullptr};
  MaxVitMBConv mbconv{nullptr};
  PartitionAttentionLayer window_attention{nullptr}, grid_attention{nullptr};
};
TORCH_MODULE(MaxVitLayer);

/// A stage: layers.<i> (MaxVitLayer), the first with stride 2.
class MaxVitBlockImpl : public torch::nn::Module {
public:
  MaxVitBlockImpl(int64_t in_channels, int64_t out_channels, const maxvit_config& c,
                  int64_t input_grid_size, int64_t n_layers,
                  const std::vector<double>& p_stochastic, double attention_dropout,
                  double mlp_dropout);
  torch::Tensor forward(torch::Tensor x);

  torch::nn::ModuleList layers{nullptr};
  int64_t grid_size; // the side of this block's feature map
};
TORCH_MODULE(MaxVitBlock);

class MaxVitImpl : public ZooModelImpl {
public:
  /// `arch`: one of maxvit_names(). Honours num_classes (0: no classifier.5),
  /// in_channels, image_size (0: 224; each block's feature map must be a
  /// multiple of the partition size 7, e.g. 221..224 or 445..448 -- anything
  /// else is a c10::Error naming the nearest sizes that work), drop_path
  /// (stochastic_depth_prob; < 0: 0.2) and dropout (torchvision's
  /// attention_dropout and mlp_dropout, default 0: the dropout of the
  /// attention output and of the MLP output; MaxViT has no classifier dropout).
  explicit MaxVitImpl(const std::string& arch, const model_options& o = {});
  /// Any MaxVit configuration (tests build reduced ones); image_size 0 means 224.
  MaxVitImpl(const maxvit_config& c, const model_options& o, const std::string& name = "maxvit");

  torch::Tensor forward(torch::Tensor x) override;
  /// The input of classifier.5: pool, LayerNorm, Linear, Tanh: (N, num_features()).
  torch::Tensor forward_features(torch::Tensor x) override;
  /// The output of each block as NCHW maps: strides 4, 8, 16, 32.
  std::vector<torch::Tensor> forward_stages(torch::Tensor x) override;
  int64_t num_features() const override { return num_features_; }
  void reset_classifier(int64_t num_classes) override;
  std::vector<std::shared_ptr<torch::nn::Module>> backbone() override;
  std::shared_ptr<torch::nn::Module> head() override;

  int64_t image_size() const { return image_size_; }

  Seq stem{nullptr};
  torch::nn::ModuleList blocks{nullptr}; // MaxVitBlock
  Seq classifier{nullptr}; // 0 pool, 1 flatten, 2 LayerNorm, 3 Linear, 4 Tanh, 5 Linear

private:
  void build(const maxvit_config& c, const model_options& o, const std::string& name);
  torch::Tensor trunk(torch::Tensor x, std::vector<torch::Tensor>* stages);

  int64_t num_features_ = 0, image_size_ = 224;
  std::string name_;
};
TORCH_MODULE(MaxVit);

} // namespace rookery::zoo

#include "models/zoo/maxvit.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

#include <torch/nn/init.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>

#include "models/zoo/families.hpp"

namespace rookery::zoo {

namespace nn = torch::nn;

namespace {

/// torchvision's _get_conv_output_shape for a 3x3, stride-2, padding-1 conv.
int64_t conv_out(int64_t n) {
  return (n - 3 + 2) / 2 + 1;
}

nn::BatchNorm2d maxvit_bn(int64_t channels) {
  return batch_norm2d(channels, 1e-3, 0.99); // torchvision's MaxVit norm_layer default
}

nn::LayerNorm layer_norm(int64_t dim) {
  return nn::LayerNorm(nn::LayerNormOptions({dim}).eps(1e-5));
}

std::string join(const std::vector<int64_t>& v) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < v.size(); ++i)
    o << (i ? ", " : "") << v[i];
  o << "]";
  return o.str();
}

} // namespace

const std::vector<std::string>& maxvit_names() {
  static const std::vector<std::string> n{"maxvit_t"};
  return n;
}

bool maxvit_arch(const std::string& arch, maxvit_config& c) {
  if (arch != "maxvit_t")
    return false;
  c = maxvit_config{}; // the defaults are maxvit_t's
  return true;
}

std::vector<int64_t> maxvit_block_sizes(int64_t image_size, size_t n_blocks) {
  std::vector<int64_t> out;
  int64_t s = conv_out(image_size); // the stem
  for (size_t i = 0; i < n_blocks; ++i) {
    s = conv_out(s);
    out.push_back(s);
  }
  return out;
}

std::string maxvit_size_problem(const maxvit_config& c, int64_t image_size) {
  const size_t nb = c.block_channels.size();
  auto fits = [&](int64_t n) {
    if (n <= 0)
      return false;
    for (auto s : maxvit_block_sizes(n, nb))
      if (s <= 0 || s % c.partition_size != 0)
        return false;
    return true;
  };
  if (fits(image_size))
    return {};
  std::ostringstream o;
  o << "image_size " << image_size << " does not suit partition size " << c.partition_size;
  if (image_size > 0)
    o << ": the blocks' feature maps would be " << join(maxvit_block_sizes(image_size, nb));
  o << " and each must be a multiple of " << c.partition_size;
  // Valid sizes repeat with a period of 2^(blocks + 1) * partition_size.
  const int64_t period = (int64_t{1} << (nb + 1)) * c.partition_size;
  int64_t below = 0, above = 0;
  for (int64_t n = image_size - 1; n > 0 && n >= image_size - period; --n)
    if (fits(n)) {
      below = n;
      break;
    }
  for (int64_t n = std::max<int64_t>(image_size + 1, 1);
       n <= std::max<int64_t>(image_size, 0) + period; ++n)
    if (fits(n)) {
      above = n;
      break;
    }
  o << " (nearest sizes that work:";
  if (below > 0)
    o << " " << below;
  if (below > 0 && above > 0)
    o << " and";
  if (above > 0)
    o << " " << above;
  o << ")";
  return o.str();
}

// --- MBConv ---------------------------------------------------------------------------------

MaxVitMBConvImpl::MaxVitMBConvImpl(int64_t in_channels, int64_t out_channels,
                                   double expansion_ratio, double squeeze_ratio, int64_t stride,
                                   double p_sd) {
  TORCH_CHECK(stride == 1 || stride == 2, "MBConv: stride must be 1 or 2, got ", stride);
  proj = Seq();
  if (stride != 1 || in_channels != out_channels) {
    if (stride == 2)
      proj->push_back(nn::AvgPool2d(nn::AvgPool2dOptions(3).stride(2).padding(1)));
    proj->push_back(nn::Conv2d(nn::Conv2dOptions(in_channels, out_channels, 1).bias(true)));
  }
  register_module("proj", proj);
  // Python's int(): truncation.
  const auto mid = static_cast<int64_t>(static_cast<double>(out_channels) * expansion_ratio);
  const auto sqz = static_cast<int64_t>(static_cast<double>(out_channels) * squeeze_ratio);
  stochastic_depth = register_module("stochastic_depth", StochasticDepth(p_sd, "row"));
  layers = Seq();
  layers->push_back("pre_norm", maxvit_bn(in_channels));
  auto cna = [](int64_t in, int64_t out, int64_t k) {
    return ConvNormActOptions(in, out, k).bn_eps(1e-3).bn_momentum(0.99).activation(act::gelu);
  };
  layers->push_back("conv_a", conv_norm_act(cna(in_channels, mid, 1).padding(0)));
  layers->push_back("conv_b",
                    conv_norm_act(cna(mid, mid, 3).stride(stride).padding(1).groups(mid)));
  layers->push_back("squeeze_excitation", SqueezeExcitation(mid, sqz, act::silu, act::sigmoid));
  layers->push_back("conv_c", nn::Conv2d(nn::Conv2dOptions(mid, out_channels, 1).bias(true)));
  register_module("layers", layers);
}

torch::Tensor MaxVitMBConvImpl::forward(torch::Tensor x) {
  auto res = proj->is_empty() ? x : proj->forward(x);
  return res + stochastic_depth(layers->forward(x));
}

// --- RelativePositionalMultiHeadAttention ---------------------------------------------------

RelativePositionalMultiHeadAttentionImpl::RelativePositionalMultiHeadAttentionImpl(
    int64_t feat_dim, int64_t head_dim_, int64_t max_seq_len_)
    : head_dim(head_dim_), max_seq_len(max_seq_len_) {
  TORCH_CHECK(head_dim > 0 && feat_dim % head_dim == 0, "feat_dim: ", feat_dim,
              " must be divisible by head_dim: ", head_dim);
  n_heads = feat_dim / head_dim;
  size = static_cast<int64_t>(std::sqrt(static_cast<double>(max_seq_len)));
  TORCH_CHECK(size * size == max_seq_len, "max_seq_len must be a square, got ", max_seq_len);
  scale_factor = std::pow(static_cast<double>(feat_dim), -0.5);
  to_qkv = register_module("to_qkv", nn::Linear(feat_dim, n_heads * head_dim * 3));
  merge = register_module("merge", nn::Linear(head_dim * n_heads, feat_dim));
  relative_position_bias_table = register_parameter(
      "relative_position_bias_table", torch::empty({(2 * size - 1) * (2 * size - 1), n_heads}));
  // Pair-wise relative position index of the size x size tokens of a partition.
  auto coords = torch::stack(torch::meshgrid({torch::arange(size), torch::arange(size)}, "ij"));
  auto flat = torch::flatten(coords, 1);
  auto rel = (flat.unsqueeze(2) - flat.unsqueeze(1)).permute({1, 2, 0}).contiguous();
  rel.select(2, 0).add_(size - 1);
  rel.select(2, 1).add_(size - 1);
  rel.select(2, 0).mul_(2 * size - 1);
  relative_position_index = register_buffer("relative_position_index", rel.sum(-1));
  init_trunc_normal(relative_position_bias_table, 0.02);
}

torch::Tensor RelativePositionalMultiHeadAttentionImpl::relative_positional_bias() const {
  return relative_position_bias_table.index({relative_position_index.view(-1)})
      .view({max_seq_len, max_seq_len, -1})
      .permute({2, 0, 1})
      .contiguous()
      .unsqueeze(0);
}

torch::Tensor RelativePositionalMultiHeadAttentionImpl::forward(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 4, "partition attention expects (B, G, P, D), got ", x.sizes());
  const int64_t B = x.size(0), G = x.size(1), P = x.size(2), D = x.size(3);
  auto qkv = to_qkv(x).chunk(3, -1);
  auto heads = [&](const torch::Tensor& t) {
    return t.reshape({B, G, P, n_heads, head_dim}).permute({0, 1, 3, 2, 4});
  };
  auto q = heads(qkv[0]), k = heads(qkv[1]) * scale_factor, v = heads(qkv[2]);
  auto attn =
      torch::softmax(torch::matmul(q, k.transpose(-2, -1)) + relative_positional_bias(), -1);
  auto out = torch::matmul(attn, v).permute({0, 1, 3, 2, 4}).reshape({B, G, P, D});
  return merge(out);
}

// --- PartitionAttentionLayer -----------------------------------------------------------------

PartitionAttentionLayerImpl::PartitionAttentionLayerImpl(int64_t in_channels, int64_t head_dim,
                                                         int64_t partition_size, bool grid_,
                                                         int64_t grid_size_, int64_t mlp_ratio,
                                                         double attention_dropout,
                                                         double mlp_dropout, double p_sd)
    : grid(grid_), grid_size(grid_size_) {
  TORCH_CHECK(partition_size > 0 && grid_size % partition_size == 0, "grid size ", grid_size,
              " is not divisible by the partition size ", partition_size);
  const int64_t n_partitions = grid_size / partition_size;
  p = grid ? n_partitions : partition_size;
  attn_layer = Seq();
  attn_layer->push_back(layer_norm(in_channels));
  // Always partition_size^2 tokens: grid attention swaps the axes.
  attn_layer->push_back(
      RelativePositionalMultiHeadAttention(in_channels, head_dim, partition_size * partition_size));
  attn_layer->push_back(nn::Dropout(nn::DropoutOptions(attention_dropout)));
  register_module("attn_layer", attn_layer);
  mlp_layer = Seq();
  mlp_layer->push_back(layer_norm(in_channels));
  mlp_layer->push_back(nn::Linear(in_channels, in_channels * mlp_ratio));
  mlp_layer->push_back(Activation(act::gelu));
  mlp_layer->push_back(nn::Linear(in_channels * mlp_ratio, in_channels));
  mlp_layer->push_back(nn::Dropout(nn::DropoutOptions(mlp_dropout)));
  register_module("mlp_layer", mlp_layer);
  stochastic_dropout = register_module("stochastic_dropout", StochasticDepth(p_sd, "row"));
}

torch::Tensor PartitionAttentionLayerImpl::forward(torch::Tensor x) {
  TORCH_CHECK(x.dim() == 4 && x.size(2) == grid_size && x.size(3) == grid_size,
              "MaxViT partition attention built for ", grid_size, " x ", grid_size,
              " feature maps got ", x.sizes());
  const int64_t B = x.size(0), C = x.size(1), g = grid_size / p;
  // Partition: (B, C, H, W) -> (B, g * g windows, p * p, C).
  x = x.reshape({B, C, g, p, g, p}).permute({0, 2, 4, 3, 5, 1}).reshape({B, g * g, p * p, C});
  if (grid)
    x = x.transpose(-2, -3);
  x = x + stochastic_dropout(attn_layer->forward(x));
  x = x + stochastic_dropout(mlp_layer->forward(x));
  if (grid)
    x = x.transpose(-2, -3);
  // Departition: back to (B, C, H, W).
  return x.reshape({B, g, g, p, p, C}).permute({0, 5, 1, 3, 2, 4}).reshape({B, C, g * p, g * p});
}

// --- MaxVitLayer / MaxVitBlock -------------------------------------------------------------------

MaxVitLayerImpl::MaxVitLayerImpl(int64_t in_channels, int64_t out_channels, const maxvit_config& c,
                                 int64_t stride, int64_t grid_size, double attention_dropout,
                                 double mlp_dropout, double p_sd) {
  mbconv =
      MaxVitMBConv(in_channels, out_channels, c.expansion_ratio, c.squeeze_ratio, stride, p_sd);
  window_attention =
      PartitionAttentionLayer(out_channels, c.head_dim, c.partition_size, /*grid=*/false, grid_size,
                              c.mlp_ratio, attention_dropout, mlp_dropout, p_sd);
  grid_attention =
      PartitionAttentionLayer(out_channels, c.head_dim, c.partition_size, /*grid=*/true, grid_size,
                              c.mlp_ratio, attention_dropout, mlp_dropout, p_sd);
  layers = Seq();
  layers->push_back("MBconv", mbconv);
  layers->push_back("window_attention", window_attention);
  layers->push_back("grid_attention", grid_attention);
  register_module("layers", layers);
}

MaxVitBlockImpl::MaxVitBlockImpl(int64_t in_channels, int64_t out_channels, const maxvit_config& c,
                                 int64_t input_grid_size, int64_t n_layers,
                                 const std::vector<double>& p_stochastic, double attention_dropout,
                                 double mlp_dropout) {
  TORCH_CHECK(static_cast<int64_t>(p_stochastic.size()) == n_layers,
              "p_stochastic must have length n_layers=", n_layers);
  grid_size = conv_out(input_grid_size); // the first layer's stride
  layers = nn::ModuleList();
  for (int64_t i = 0; i < n_layers; ++i)
    layers->push_back(MaxVitLayer(i == 0 ? in_channels : out_channels, out_channels, c,
                                  i == 0 ? 2 : 1, grid_size, attention_dropout, mlp_dropout,
                                  p_stochastic[static_cast<size_t>(i)]));
  register_module("layers", layers);
}

torch::Tensor MaxVitBlockImpl::forward(torch::Tensor x) {
  for (const auto& l : *layers)
    x = l->as<MaxVitLayerImpl>()->forward(x);
  return x;
}

// --- MaxVit
// ----------------------------------------------------------------------------------------

MaxVitImpl::MaxVitImpl(const std::string& arch, const model_options& o) {
  maxvit_config c;
  TORCH_CHECK(maxvit_arch(arch, c), "unknown MaxViT arch '", arch, "'");
  build(c, o, arch);
}

MaxVitImpl::MaxVitImpl(const maxvit_config& c, const model_options& o, const std::string& name) {
  build(c, o, name);
}

void MaxVitImpl::build(const maxvit_config& c, const model_options& o, const std::string& name) {
  name_ = name;
  validate_options(o, name, {/*dropout=*/true, /*drop_path=*/true, /*width_mult=*/false});
  TORCH_CHECK(!c.block_channels.empty() && c.block_channels.size() == c.block_layers.size(), name,
              ": block_channels and block_layers must be non-empty and of one length");
  for (auto ch : c.block_channels)
    TORCH_CHECK(c.head_dim > 0 && ch % c.head_dim == 0, name, ": block channels ", ch,
                " not divisible by head_dim ", c.head_dim);
  for (auto n : c.block_layers)
    TORCH_CHECK(n > 0, name, ": every block needs at least one layer");
  TORCH_CHECK(c.partition_size > 0, name, ": partition_size must be positive");
  TORCH_CHECK(o.image_size >= 0, name, ": image_size must be >= 0, got ", o.image_size);
  image_size_ = o.image_size > 0 ? o.image_size : 224;
  const auto problem = maxvit_size_problem(c, image_size_);
  TORCH_CHECK(problem.empty(), name, ": ", problem);
  const double sd = drop_path_or(o, c.stochastic_depth_prob);
  const double drop = dropout_or(o, 0.0);

  stem = Seq();
  stem->push_back(conv_norm_act(ConvNormActOptions(o.in_channels, c.stem_channels, 3)
                                    .stride(2)
                                    .bn_eps(1e-3)
                                    .bn_momentum(0.99)
                                    .activation(act::gelu)
                                    .bias(0)));
  stem->push_back(conv_norm_act(ConvNormActOptions(c.stem_channels, c.stem_channels, 3)
                                    .norm(false)
                                    .activation(act::none)
                                    .bias(1)));
  register_module("stem", stem);

  // np.linspace(0, sd, total layers).
  int64_t total = 0;
  for (auto n : c.block_layers)
    total += n;
  std::vector<double> p_all;
  for (int64_t i = 0; i < total; ++i)
    p_all.push_back(
        total > 1
            ? (i == total - 1 ? sd : sd * static_cast<double>(i) / static_cast<double>(total - 1))
            : 0.0);
  blocks = nn::ModuleList();
  int64_t grid = conv_out(image_size_); // after the stem
  size_t p_idx = 0;
  for (size_t b = 0; b < c.block_channels.size(); ++b) {
    const int64_t in = b == 0 ? c.stem_channels : c.block_channels[b - 1];
    const auto n = static_cast<size_t>(c.block_layers[b]);
    std::vector<double> ps(p_all.begin() + static_cast<std::ptrdiff_t>(p_idx),
                           p_all.begin() + static_cast<std::ptrdiff_t>(p_idx + n));
    MaxVitBlock block(in, c.block_channels[b], c, grid, c.block_layers[b], ps, drop, drop);
    grid = block->grid_size;
    blocks->push_back(block);
    p_idx += n;
  }
  register_module("blocks", blocks);
  num_features_ = c.block_channels.back();

  // torchvision's _init_weights (the bias tables keep their trunc_normal init).
  {
    torch::NoGradGuard ng;
    for (auto& m : modules(/*include_self=*/false)) {
      if (auto* conv = m->as<nn::Conv2d>()) {
        nn::init::normal_(conv->weight, 0.0, 0.02);
        if (conv->bias.defined())
          conv->bias.zero_();
      } else if (auto* bn = m->as<nn::BatchNorm2d>()) {
        bn->weight.fill_(1.0);
        bn->bias.zero_();
      } else if (auto* l = m->as<nn::Linear>()) {
        nn::init::normal_(l->weight, 0.0, 0.02);
        if (l->bias.defined())
          l->bias.zero_();
      }
    }
  }
  MaxVitImpl::reset_classifier(o.num_classes); // not virtually: under construction
}

void MaxVitImpl::reset_classifier(int64_t num_classes) {
  TORCH_CHECK(num_classes >= 0, "num_classes must be >= 0, got ", num_classes);
  Seq c;
  if (classifier) {
    // Keep the pre-logits part (pool, flatten, LayerNorm, Linear, Tanh) as it is.
    size_t i = 0;
    for (auto it = classifier->begin(); it != classifier->end() && i < 5; ++it, ++i)
      c->push_back(*it);
  } else {
    c->push_back(nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions(1)));
    c->push_back(nn::Flatten(nn::FlattenOptions().start_dim(1)));
    c->push_back(layer_norm(num_features_));
    nn::Linear pre(num_features_, num_features_);
    torch::NoGradGuard ng;
    nn::init::normal_(pre->weight, 0.0, 0.02);
    pre->bias.zero_();
    c->push_back(pre);
    c->push_back(Activation(act::tanh));
  }
  if (num_classes > 0) {
    nn::Linear fc(nn::LinearOptions(num_features_, num_classes).bias(false));
    torch::NoGradGuard ng;
    nn::init::normal_(fc->weight, 0.0, 0.02);
    fc->train(is_training());
    c->push_back(fc);
  }
  c->train(is_training());
  classifier = classifier ? replace_module("classifier", c) : register_module("classifier", c);
}

torch::Tensor MaxVitImpl::trunk(torch::Tensor x, std::vector<torch::Tensor>* stages) {
  TORCH_CHECK(x.dim() == 4 && x.size(2) == image_size_ && x.size(3) == image_size_, name_,
              " was built for (N, C, ", image_size_, ", ", image_size_,
              ") input (its grid attention is tied to the size; set image_size), got ", x.sizes());
  x = stem->forward(std::move(x));
  for (const auto& b : *blocks) {
    x = b->as<MaxVitBlockImpl>()->forward(x);
    if (stages)
      stages->push_back(x);
  }
  return x;
}

torch::Tensor MaxVitImpl::forward_features(torch::Tensor x) {
  x = trunk(std::move(x), nullptr);
  size_t i = 0;
  for (auto it = classifier->begin(); it != classifier->end() && i < 5; ++it, ++i)
    x = it->forward(x);
  return x;
}

torch::Tensor MaxVitImpl::forward(torch::Tensor x) {
  return classifier->forward(trunk(std::move(x), nullptr));
}

std::vector<torch::Tensor> MaxVitImpl::forward_stages(torch::Tensor x) {
  std::vector<torch::Tensor> out;
  trunk(std::move(x), &out);
  return out;
}

std::vector<std::shared_ptr<nn::Module>> MaxVitImpl::backbone() {
  std::vector<std::shared_ptr<nn::Module>> out{stem.ptr(), blocks.ptr()};
  for (size_t i = 0; i < 5 && i < classifier->size(); ++i)
    out.push_back(classifier->ptr(i));
  return out;
}

std::shared_ptr<nn::Module> MaxVitImpl::head() {
  if (classifier->size() > 5)
    return classifier->ptr(5);
  return std::make_shared<IdentityImpl>();
}

void register_maxvit_models() {
  for (const auto& name : maxvit_names()) {
    model_entry e;
    e.name = name;
    e.family = "maxvit";
    e.default_size = 224;
    e.heavy = true; // 224 px at least (partition size 7 in every block)
    e.make = [name](const model_options& o) -> std::shared_ptr<ZooModelImpl> {
      return MaxVit(name, o).ptr();
    };
    register_model(std::move(e));
  }
}

} // namespace rookery::zoo

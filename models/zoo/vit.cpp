#include "models/zoo/vit.hpp"

#include <cmath>

#include <torch/nn/init.h>

#include "models/zoo/families.hpp"

namespace rookery::zoo {

namespace nn = torch::nn;

namespace {

struct variant {
  int64_t patch, layers, heads, hidden, mlp;
};

bool make_variant(const std::string& arch, variant& v) {
  if (arch == "vit_b_16")
    v = {16, 12, 12, 768, 3072};
  else if (arch == "vit_b_32")
    v = {32, 12, 12, 768, 3072};
  else if (arch == "vit_l_16")
    v = {16, 24, 16, 1024, 4096};
  else if (arch == "vit_l_32")
    v = {32, 24, 16, 1024, 4096};
  else if (arch == "vit_h_14")
    v = {14, 32, 16, 1280, 5120};
  else
    return false;
  return true;
}

} // namespace

const std::vector<std::string>& vit_names() {
  static const std::vector<std::string> n{"vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32",
                                          "vit_h_14"};
  return n;
}

// --- SelfAttention ---------------------------------------------------------------------

SelfAttentionImpl::SelfAttentionImpl(int64_t dim, int64_t heads, double attn_dropout)
    : num_heads(heads), attention_dropout(attn_dropout) {
  TORCH_CHECK(dim % heads == 0, "embed_dim must be divisible by num_heads");
  in_proj_weight = register_parameter("in_proj_weight", torch::empty({3 * dim, dim}));
  in_proj_bias = register_parameter("in_proj_bias", torch::zeros({3 * dim}));
  out_proj = register_module("out_proj", nn::Linear(dim, dim));
  // nn.MultiheadAttention._reset_parameters
  nn::init::xavier_uniform_(in_proj_weight);
  torch::NoGradGuard ng;
  out_proj->bias.zero_();
}

torch::Tensor SelfAttentionImpl::forward(const torch::Tensor& x) {
  const int64_t n = x.size(0), l = x.size(1), e = x.size(2);
  const int64_t d = e / num_heads;
  auto qkv = torch::linear(x, in_proj_weight, in_proj_bias)
                 .reshape({n, l, 3, num_heads, d})
                 .permute({2, 0, 3, 1, 4}); // 3, N, H, L, D
  auto q = qkv[0] * (1.0 / std::sqrt(static_cast<double>(d)));
  auto attn = torch::softmax(torch::matmul(q, qkv[1].transpose(-2, -1)), -1);
  if (attention_dropout > 0 && is_training())
    attn = torch::dropout(attn, attention_dropout, true);
  auto out = torch::matmul(attn, qkv[2]).transpose(1, 2).reshape({n, l, e});
  return out_proj(out);
}

// --- EncoderBlock ------------------------------------------------------------------------

EncoderBlockImpl::EncoderBlockImpl(int64_t num_heads, int64_t hidden_dim, int64_t mlp_dim,
                                   double drop, double attention_dropout) {
  ln_1 = register_module("ln_1", nn::LayerNorm(nn::LayerNormOptions({hidden_dim}).eps(1e-6)));
  self_attention =
      register_module("self_attention", SelfAttention(hidden_dim, num_heads, attention_dropout));
  dropout = register_module("dropout", nn::Dropout(drop));
  ln_2 = register_module("ln_2", nn::LayerNorm(nn::LayerNormOptions({hidden_dim}).eps(1e-6)));
  mlp = register_module("mlp", zoo::mlp(hidden_dim, {mlp_dim, hidden_dim}, act::gelu, drop));
  // MLPBlock init: xavier_uniform weights, N(0, 1e-6) biases.
  torch::NoGradGuard ng;
  for (auto& m : mlp->modules(false))
    if (auto* l = m->as<nn::Linear>()) {
      nn::init::xavier_uniform_(l->weight);
      l->bias.normal_(0.0, 1e-6);
    }
}

torch::Tensor EncoderBlockImpl::forward(const torch::Tensor& input) {
  auto x = dropout(self_attention(ln_1(input))) + input;
  return x + mlp->forward(ln_2(x));
}

// --- Encoder -----------------------------------------------------------------------------

ViTEncoderImpl::ViTEncoderImpl(int64_t seq_length, int64_t num_layers, int64_t num_heads,
                               int64_t hidden_dim, int64_t mlp_dim, double drop,
                               double attention_dropout) {
  pos_embedding = register_parameter("pos_embedding",
                                     torch::empty({1, seq_length, hidden_dim}).normal_(0.0, 0.02));
  dropout = register_module("dropout", nn::Dropout(drop));
  layers = Seq();
  for (int64_t i = 0; i < num_layers; ++i)
    layers->push_back("encoder_layer_" + std::to_string(i),
                      EncoderBlock(num_heads, hidden_dim, mlp_dim, drop, attention_dropout));
  register_module("layers", layers);
  ln = register_module("ln", nn::LayerNorm(nn::LayerNormOptions({hidden_dim}).eps(1e-6)));
}

torch::Tensor ViTEncoderImpl::forward(const torch::Tensor& x) {
  return ln(layers->forward(dropout(x + pos_embedding)));
}

// --- VisionTransformer -------------------------------------------------------------------

VisionTransformerImpl::VisionTransformerImpl(const std::string& arch, const model_options& o) {
  validate_options(o, arch, {/*dropout=*/true, /*drop_path=*/false, /*width_mult=*/false});
  variant v;
  TORCH_CHECK(make_variant(arch, v), "unknown ViT arch '", arch, "'");
  TORCH_CHECK(o.image_size >= 0, "image_size must be >= 0, got ", o.image_size);
  image_size_ = o.image_size > 0 ? o.image_size : 224;
  patch_size_ = v.patch;
  hidden_dim_ = v.hidden;
  TORCH_CHECK(image_size_ % patch_size_ == 0, arch, ": image_size ", image_size_,
              " is not a multiple of the patch size ", patch_size_);
  const double drop = dropout_or(o, 0.0);

  conv_proj = register_module(
      "conv_proj", nn::Conv2d(nn::Conv2dOptions(o.in_channels, v.hidden, v.patch).stride(v.patch)));
  const int64_t g = image_size_ / patch_size_;
  class_token = register_parameter("class_token", torch::zeros({1, 1, v.hidden}));
  encoder = register_module("encoder",
                            ViTEncoder(g * g + 1, v.layers, v.heads, v.hidden, v.mlp, drop, 0.0));
  // Init the patchify stem: trunc_normal(std = sqrt(1 / fan_in)), zero bias.
  const auto fan_in = static_cast<double>(o.in_channels * v.patch * v.patch);
  init_trunc_normal(conv_proj->weight, std::sqrt(1.0 / fan_in));
  {
    torch::NoGradGuard ng;
    conv_proj->bias.zero_();
  }
  VisionTransformerImpl::reset_classifier(o.num_classes); // not virtually: under construction
}

void VisionTransformerImpl::reset_classifier(int64_t num_classes) {
  TORCH_CHECK(num_classes >= 0, "num_classes must be >= 0, got ", num_classes);
  nn::Sequential h;
  if (num_classes > 0) {
    nn::Linear fc(hidden_dim_, num_classes);
    torch::NoGradGuard ng;
    fc->weight.zero_(); // torchvision zero-inits the head
    fc->bias.zero_();
    h->push_back("head", fc);
  }
  h->train(is_training());
  if (heads)
    heads = replace_module("heads", h);
  else
    heads = register_module("heads", h);
}

torch::Tensor VisionTransformerImpl::tokens(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.size(2) == image_size_ && x.size(3) == image_size_,
              "ViT expects (N, C, ", image_size_, ", ", image_size_, ") input, got ", x.sizes());
  const int64_t n = x.size(0);
  auto t = conv_proj(x).flatten(2).transpose(1, 2); // N, patches, hidden
  return torch::cat({class_token.expand({n, -1, -1}), t}, 1);
}

torch::Tensor VisionTransformerImpl::forward_features(torch::Tensor x) {
  return encoder(tokens(x)).select(1, 0);
}

torch::Tensor VisionTransformerImpl::forward(torch::Tensor x) {
  auto f = forward_features(std::move(x));
  return heads->is_empty() ? f : heads->forward(f);
}

std::vector<torch::Tensor> VisionTransformerImpl::forward_stages(torch::Tensor x) {
  auto t = encoder->dropout(tokens(x) + encoder->pos_embedding);
  const int64_t n = t.size(0), g = image_size_ / patch_size_;
  std::vector<torch::Tensor> out;
  for (size_t i = 0; i < encoder->layers->size(); ++i) {
    t = encoder->layers->ptr(i)->as<EncoderBlockImpl>()->forward(t);
    out.push_back(t.slice(1, 1).transpose(1, 2).reshape({n, hidden_dim_, g, g}));
  }
  return out;
}

std::vector<std::shared_ptr<nn::Module>> VisionTransformerImpl::backbone() {
  // class_token is a parameter of the model itself, used with conv_proj.
  return {conv_proj.ptr(), encoder.ptr()};
}

std::shared_ptr<nn::Module> VisionTransformerImpl::head() {
  if (!heads->is_empty())
    return heads->ptr(0);
  return std::make_shared<IdentityImpl>();
}

void register_vit_models() {
  for (const auto& name : vit_names()) {
    model_entry e;
    e.name = name;
    e.family = "vit";
    e.default_size = 224;
    e.heavy = name != "vit_b_32";
    e.make = [name](const model_options& o) -> std::shared_ptr<ZooModelImpl> {
      return VisionTransformer(name, o).ptr();
    };
    register_model(std::move(e));
  }
}

} // namespace rookery::zoo

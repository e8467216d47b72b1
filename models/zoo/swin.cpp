#include "models/zoo/swin.hpp"

#include <cmath>
#include <limits>

#include <torch/nn/functional/normalization.h>
#include <torch/nn/init.h>

#include "models/zoo/families.hpp"

namespace rookery::zoo {

namespace nn = torch::nn;
namespace F = torch::nn::functional;

namespace {

struct variant {
  int64_t embed_dim;
  std::vector<int64_t> depths, heads;
  int64_t window;
  double drop_path;
  bool v2;
  int64_t default_size;
};

bool make_variant(const std::string& arch, variant& v) {
  if (arch == "swin_t")
    v = {96, {2, 2, 6, 2}, {3, 6, 12, 24}, 7, 0.2, false, 224};
  else if (arch == "swin_s")
    v = {96, {2, 2, 18, 2}, {3, 6, 12, 24}, 7, 0.3, false, 224};
  else if (arch == "swin_b")
    v = {128, {2, 2, 18, 2}, {4, 8, 16, 32}, 7, 0.5, false, 224};
  else if (arch == "swin_v2_t")
    v = {96, {2, 2, 6, 2}, {3, 6, 12, 24}, 8, 0.2, true, 256};
  else if (arch == "swin_v2_s")
    v = {96, {2, 2, 18, 2}, {3, 6, 12, 24}, 8, 0.3, true, 256};
  else if (arch == "swin_v2_b")
    v = {128, {2, 2, 18, 2}, {4, 8, 16, 32}, 8, 0.5, true, 256};
  else
    return false;
  return true;
}

nn::LayerNorm layer_norm(int64_t dim) {
  return nn::LayerNorm(nn::LayerNormOptions({dim}).eps(1e-5));
}

/// Python's a[start:stop] bounds on a dimension of length n (nullopt: omitted).
std::pair<int64_t, int64_t> py_slice(c10::optional<int64_t> start, c10::optional<int64_t> stop,
                                     int64_t n) {
  auto norm = [n](int64_t i) { return std::clamp<int64_t>(i < 0 ? i + n : i, 0, n); };
  const int64_t b = start ? norm(*start) : 0;
  const int64_t e = stop ? norm(*stop) : n;
  return {b, std::max(b, e)};
}

/// The shifted-window mask: (num_windows, L, L) with 0 within a region and -100 across.
torch::Tensor shift_mask(int64_t pad_h, int64_t pad_w, const std::vector<int64_t>& ws,
                         const std::vector<int64_t>& ss, const torch::TensorOptions& opt) {
  auto mask = torch::zeros({pad_h, pad_w}, opt);
  const c10::optional<int64_t> none;
  const std::vector<std::pair<c10::optional<int64_t>, c10::optional<int64_t>>> hs{
      {0, -ws[0]}, {-ws[0], -ss[0]}, {-ss[0], none}};
  const std::vector<std::pair<c10::optional<int64_t>, c10::optional<int64_t>>> wss{
      {0, -ws[1]}, {-ws[1], -ss[1]}, {-ss[1], none}};
  int64_t count = 0;
  for (const auto& h : hs) {
    const auto [h0, h1] = py_slice(h.first, h.second, pad_h);
    for (const auto& w : wss) {
      const auto [w0, w1] = py_slice(w.first, w.second, pad_w);
      if (h1 > h0 && w1 > w0)
        mask.slice(0, h0, h1).slice(1, w0, w1).fill_(static_cast<double>(count));
      ++count;
    }
  }
  const int64_t nw = (pad_h / ws[0]) * (pad_w / ws[1]);
  mask = mask.view({pad_h / ws[0], ws[0], pad_w / ws[1], ws[1]})
             .permute({0, 2, 1, 3})
             .reshape({nw, ws[0] * ws[1]});
  mask = mask.unsqueeze(1) - mask.unsqueeze(2);
  return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0);
}

} // namespace

const std::vector<std::string>& swin_names() {
  static const std::vector<std::string> n{"swin_t",    "swin_s",    "swin_b",
                                          "swin_v2_t", "swin_v2_s", "swin_v2_b"};
  return n;
}

torch::Tensor shifted_window_attention(const torch::Tensor& input, const torch::Tensor& qkv_weight,
                                       const torch::Tensor& proj_weight,
                                       const torch::Tensor& relative_position_bias,
                                       const std::vector<int64_t>& ws, int64_t num_heads,
                                       std::vector<int64_t> ss, double attention_dropout,
                                       double dropout, const torch::Tensor& qkv_bias_in,
                                       const torch::Tensor& proj_bias,
                                       const torch::Tensor& logit_scale, bool training) {
  const int64_t B = input.size(0), H = input.size(1), W = input.size(2), C = input.size(3);
  // Pad to whole windows.
  const int64_t pad_r = (ws[1] - W % ws[1]) % ws[1];
  const int64_t pad_b = (ws[0] - H % ws[0]) % ws[0];
  auto x = F::pad(input, F::PadFuncOptions({0, 0, 0, pad_r, 0, pad_b}));
  const int64_t pad_h = x.size(1), pad_w = x.size(2);
  // No shift along a dim that a single window covers.
  if (ws[0] >= pad_h)
    ss[0] = 0;
  if (ws[1] >= pad_w)
    ss[1] = 0;
  const bool shifted = ss[0] + ss[1] > 0;
  if (shifted)
    x = torch::roll(x, {-ss[0], -ss[1]}, {1, 2});
  // Partition windows: (B * nW, Wh * Ww, C).
  const int64_t nw = (pad_h / ws[0]) * (pad_w / ws[1]);
  const int64_t L = ws[0] * ws[1];
  x = x.view({B, pad_h / ws[0], ws[0], pad_w / ws[1], ws[1], C})
          .permute({0, 1, 3, 2, 4, 5})
          .reshape({B * nw, L, C});
  // Multi-head attention.
  torch::Tensor qkv_bias = qkv_bias_in;
  if (logit_scale.defined() && qkv_bias.defined()) {
    qkv_bias = qkv_bias.clone();
    const int64_t len = qkv_bias.numel() / 3;
    qkv_bias.slice(0, len, 2 * len).zero_();
  }
  auto qkv = torch::linear(x, qkv_weight, qkv_bias)
                 .reshape({x.size(0), x.size(1), 3, num_heads, C / num_heads})
                 .permute({2, 0, 3, 1, 4});
  auto q = qkv[0], k = qkv[1], v = qkv[2];
  torch::Tensor attn;
  if (logit_scale.defined()) {
    attn = torch::matmul(F::normalize(q, F::NormalizeFuncOptions().dim(-1)),
                         F::normalize(k, F::NormalizeFuncOptions().dim(-1)).transpose(-2, -1));
    attn = attn * torch::clamp(logit_scale, c10::nullopt, std::log(100.0)).exp();
  } else {
    const int64_t head_dim = C / num_heads; // Python: (C // num_heads) ** -0.5
    q = q * std::pow(static_cast<double>(head_dim), -0.5);
    attn = torch::matmul(q, k.transpose(-2, -1));
  }
  attn = attn + relative_position_bias;
  if (shifted) {
    auto mask = shift_mask(pad_h, pad_w, ws, ss, x.options());
    attn = attn.view({x.size(0) / nw, nw, num_heads, L, L}) + mask.unsqueeze(1).unsqueeze(0);
    attn = attn.view({-1, num_heads, L, L});
  }
  attn = torch::softmax(attn, -1);
  if (training && attention_dropout > 0)
    attn = torch::dropout(attn, attention_dropout, true);
  x = torch::matmul(attn, v).transpose(1, 2).reshape({x.size(0), x.size(1), C});
  x = torch::linear(x, proj_weight, proj_bias);
  if (training && dropout > 0)
    x = torch::dropout(x, dropout, true);
  // Reverse windows, shift and padding.
  x = x.view({B, pad_h / ws[0], pad_w / ws[1], ws[0], ws[1], C})
          .permute({0, 1, 3, 2, 4, 5})
          .reshape({B, pad_h, pad_w, C});
  if (shifted)
    x = torch::roll(x, {ss[0], ss[1]}, {1, 2});
  return x.slice(1, 0, H).slice(2, 0, W).contiguous();
}

// --- ShiftedWindowAttention ---------------------------------------------------------------

ShiftedWindowAttentionImpl::ShiftedWindowAttentionImpl(int64_t dim, std::vector<int64_t> ws,
                                                       std::vector<int64_t> ss, int64_t heads,
                                                       bool v2_, double attn_drop, double drop)
    : window_size(std::move(ws)), shift_size(std::move(ss)), num_heads(heads), v2(v2_),
      attention_dropout(attn_drop), dropout(drop) {
  TORCH_CHECK(window_size.size() == 2 && shift_size.size() == 2,
              "window_size and shift_size must be of length 2");
  qkv = register_module("qkv", nn::Linear(dim, dim * 3));
  proj = register_module("proj", nn::Linear(dim, dim));
  const int64_t wh = window_size[0], ww = window_size[1];
  if (!v2) {
    relative_position_bias_table = register_parameter(
        "relative_position_bias_table", torch::zeros({(2 * wh - 1) * (2 * ww - 1), heads}));
    init_trunc_normal(relative_position_bias_table, 0.02);
  } else {
    logit_scale = register_parameter("logit_scale", torch::log(10 * torch::ones({heads, 1, 1})));
    cpb_mlp = Seq();
    cpb_mlp->push_back(nn::Linear(2, 512));
    cpb_mlp->push_back(Activation(act::relu, true));
    cpb_mlp->push_back(nn::Linear(nn::LinearOptions(512, heads).bias(false)));
    register_module("cpb_mlp", cpb_mlp);
    // The continuous relative coordinates, log-spaced into [-8, 8] / 3.
    auto ch = torch::arange(-(wh - 1), wh, torch::kFloat32);
    auto cw = torch::arange(-(ww - 1), ww, torch::kFloat32);
    auto table =
        torch::stack(torch::meshgrid({ch, cw}, "ij")).permute({1, 2, 0}).contiguous().unsqueeze(0);
    table.select(3, 0).div_(static_cast<double>(wh - 1));
    table.select(3, 1).div_(static_cast<double>(ww - 1));
    table.mul_(8);
    table = torch::sign(table) * torch::log2(torch::abs(table) + 1.0) / 3.0;
    relative_coords_table = register_buffer("relative_coords_table", table);
  }
  // Pair-wise relative position index of the tokens of a window.
  auto coords = torch::stack(torch::meshgrid({torch::arange(wh), torch::arange(ww)}, "ij"));
  auto flat = torch::flatten(coords, 1);
  auto rel = (flat.unsqueeze(2) - flat.unsqueeze(1)).permute({1, 2, 0}).contiguous();
  rel.select(2, 0).add_(wh - 1);
  rel.select(2, 1).add_(ww - 1);
  rel.select(2, 0).mul_(2 * ww - 1);
  relative_position_index = register_buffer("relative_position_index", rel.sum(-1).flatten());
  if (v2) {
    torch::NoGradGuard ng;
    qkv->bias.slice(0, dim, 2 * dim).zero_();
  }
}

torch::Tensor ShiftedWindowAttentionImpl::relative_position_bias() {
  const int64_t n = window_size[0] * window_size[1];
  torch::Tensor table = v2 ? cpb_mlp->forward(relative_coords_table).view({-1, num_heads})
                           : relative_position_bias_table;
  auto bias = table.index({relative_position_index})
                  .view({n, n, -1})
                  .permute({2, 0, 1})
                  .contiguous()
                  .unsqueeze(0);
  return v2 ? 16 * torch::sigmoid(bias) : bias;
}

torch::Tensor ShiftedWindowAttentionImpl::forward(const torch::Tensor& x) {
  return shifted_window_attention(x, qkv->weight, proj->weight, relative_position_bias(),
                                  window_size, num_heads, shift_size, attention_dropout, dropout,
                                  qkv->bias, proj->bias, v2 ? logit_scale : torch::Tensor(),
                                  is_training());
}

// --- SwinTransformerBlock -------------------------------------------------------------------

SwinTransformerBlockImpl::SwinTransformerBlockImpl(int64_t dim, int64_t heads,
                                                   std::vector<int64_t> ws, std::vector<int64_t> ss,
                                                   bool v2_, double mlp_ratio, double drop,
                                                   double attn_drop, double sd_prob)
    : v2(v2_) {
  norm1 = register_module("norm1", layer_norm(dim));
  attn = register_module("attn", ShiftedWindowAttention(dim, std::move(ws), std::move(ss), heads,
                                                        v2, attn_drop, drop));
  stochastic_depth = register_module("stochastic_depth", StochasticDepth(sd_prob, "row"));
  norm2 = register_module("norm2", layer_norm(dim));
  const auto hidden = static_cast<int64_t>(static_cast<double>(dim) * mlp_ratio);
  mlp = register_module("mlp", zoo::mlp(dim, {hidden, dim}, act::gelu, drop));
}

torch::Tensor SwinTransformerBlockImpl::forward(torch::Tensor x) {
  if (v2) {
    x = x + stochastic_depth(norm1(attn(x)));
    return x + stochastic_depth(norm2(mlp->forward(x)));
  }
  x = x + stochastic_depth(attn(norm1(x)));
  return x + stochastic_depth(mlp->forward(norm2(x)));
}

// --- PatchMerging ---------------------------------------------------------------------------

PatchMergingImpl::PatchMergingImpl(int64_t dim, bool v2_) : v2(v2_) {
  reduction =
      register_module("reduction", nn::Linear(nn::LinearOptions(4 * dim, 2 * dim).bias(false)));
  norm = register_module("norm", layer_norm(v2 ? 2 * dim : 4 * dim));
}

torch::Tensor PatchMergingImpl::forward(torch::Tensor x) {
  const int64_t H = x.size(-3), W = x.size(-2);
  x = F::pad(x, F::PadFuncOptions({0, 0, 0, W % 2, 0, H % 2}));
  constexpr int64_t end = std::numeric_limits<int64_t>::max();
  const int64_t hd = x.dim() - 3, wd = x.dim() - 2;
  auto x0 = x.slice(hd, 0, end, 2).slice(wd, 0, end, 2);
  auto x1 = x.slice(hd, 1, end, 2).slice(wd, 0, end, 2);
  auto x2 = x.slice(hd, 0, end, 2).slice(wd, 1, end, 2);
  auto x3 = x.slice(hd, 1, end, 2).slice(wd, 1, end, 2);
  x = torch::cat({x0, x1, x2, x3}, -1);
  return v2 ? norm(reduction(x)) : reduction(norm(x));
}

// --- SwinTransformer ------------------------------------------------------------------------

SwinTransformerImpl::SwinTransformerImpl(const std::string& arch, const model_options& o) {
  validate_options(o, arch, {/*dropout=*/true, /*drop_path=*/true, /*width_mult=*/false});
  variant v;
  TORCH_CHECK(make_variant(arch, v), "unknown Swin arch '", arch, "'");
  const double sd = drop_path_or(o, v.drop_path);
  const double drop = dropout_or(o, 0.0);
  const std::vector<int64_t> ws{v.window, v.window};

  features = Seq();
  Seq embed;
  embed->push_back(nn::Conv2d(nn::Conv2dOptions(o.in_channels, v.embed_dim, 4).stride(4)));
  embed->push_back(Permute(std::vector<int64_t>{0, 2, 3, 1}));
  embed->push_back(layer_norm(v.embed_dim));
  features->push_back(embed);
  int64_t total = 0;
  for (auto d : v.depths)
    total += d;
  int64_t id = 0;
  for (size_t s = 0; s < v.depths.size(); ++s) {
    const int64_t dim = v.embed_dim << s;
    Seq stage;
    for (int64_t i = 0; i < v.depths[s]; ++i) {
      const double p = sd * static_cast<double>(id) / static_cast<double>(total - 1);
      std::vector<int64_t> shift{i % 2 == 0 ? 0 : v.window / 2, i % 2 == 0 ? 0 : v.window / 2};
      stage->push_back(SwinTransformerBlock(dim, v.heads[s], ws, shift, v.v2, 4.0, drop, 0.0, p));
      ++id;
    }
    features->push_back(stage);
    if (s + 1 < v.depths.size())
      features->push_back(PatchMerging(dim, v.v2));
  }
  register_module("features", features);
  num_features_ = v.embed_dim << (v.depths.size() - 1);
  norm = register_module("norm", layer_norm(num_features_));
  avgpool = register_module("avgpool", nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions(1)));

  // torchvision: every Linear trunc_normal(0.02) with zero bias (after the blocks' own init).
  torch::NoGradGuard ng;
  for (auto& m : modules(/*include_self=*/false))
    if (auto* l = m->as<nn::Linear>()) {
      init_trunc_normal(l->weight, 0.02);
      if (l->bias.defined())
        l->bias.zero_();
    }
  SwinTransformerImpl::reset_classifier(o.num_classes); // not virtually: under construction
}

void SwinTransformerImpl::reset_classifier(int64_t num_classes) {
  TORCH_CHECK(num_classes >= 0, "num_classes must be >= 0, got ", num_classes);
  if (head_)
    unregister_module("head");
  head_ = nullptr;
  if (num_classes > 0) {
    head_ = register_module("head", nn::Linear(num_features_, num_classes));
    head_->train(is_training());
    init_trunc_normal(head_->weight, 0.02);
    torch::NoGradGuard ng;
    head_->bias.zero_();
  }
}

torch::Tensor SwinTransformerImpl::forward_features(torch::Tensor x) {
  x = norm(features->forward(std::move(x)));
  return torch::flatten(avgpool(x.permute({0, 3, 1, 2})), 1);
}

torch::Tensor SwinTransformerImpl::forward(torch::Tensor x) {
  x = forward_features(std::move(x));
  return head_ ? head_(x) : x;
}

std::vector<torch::Tensor> SwinTransformerImpl::forward_stages(torch::Tensor x) {
  std::vector<torch::Tensor> out;
  for (size_t i = 0; i < features->size(); ++i) {
    auto m = features->ptr(i);
    if (auto* s = m->as<SeqImpl>())
      x = s->forward(x);
    else
      x = m->as<PatchMergingImpl>()->forward(x);
    if (i % 2 == 1)
      out.push_back(x.permute({0, 3, 1, 2}));
  }
  return out;
}

std::vector<std::shared_ptr<nn::Module>> SwinTransformerImpl::backbone() {
  return {features.ptr(), norm.ptr(), avgpool.ptr()};
}

std::shared_ptr<nn::Module> SwinTransformerImpl::head() {
  if (head_)
    return head_.ptr();
  return std::make_shared<IdentityImpl>();
}

void register_swin_models() {
  for (const auto& name : swin_names()) {
    variant v;
    make_variant(name, v);
    model_entry e;
    e.name = name;
    e.family = "swin";
    e.default_size = v.default_size;
    e.heavy = !(name == "swin_t" || name == "swin_v2_t");
    e.make = [name](const model_options& o) -> std::shared_ptr<ZooModelImpl> {
      return SwinTransformer(name, o).ptr();
    };
    register_model(std::move(e));
  }
}

} // namespace rookery::zoo

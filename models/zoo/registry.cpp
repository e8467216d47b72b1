// The zoo's registry and its model-independent tools: create_model,
// load_pretrained, count_parameters, count_macs (through the LibTorch tracer),
// adapt_first_conv, forward_feature_maps.
#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

#include <torch/csrc/jit/frontend/tracer.h>
#include <torch/torch.h>

#include "models/state_dict.hpp"
#include "models/zoo/families.hpp"
#include "models/zoo/zoo.hpp"

namespace rookery::zoo {

// models/zoo/maxvit.cpp. Declared here rather than in families.hpp, which
// every zoo file includes through zoo.hpp: one more line there recompiles the
// whole zoo (and the precompiled header's users) for a single new family.
void register_maxvit_models();

namespace {

struct registry {
  std::mutex mu;
  std::map<std::string, model_entry> entries;
};

registry& reg() {
  static registry r;
  return r;
}

void ensure_registered() {
  static std::once_flag once;
  std::call_once(once, [] {
    register_resnet_models();
    register_vgg_models();
    register_alexnet_models();
    register_squeezenet_models();
    register_densenet_models();
    register_googlenet_models();
    register_inception_models();
    register_mobilenet_models();
    register_mnasnet_models();
    register_shufflenet_models();
    register_efficientnet_models();
    register_regnet_models();
    register_convnext_models();
    register_vit_models();
    register_swin_models();
    register_maxvit_models();
    register_small_models();
    register_autoencoder_models();
    register_keras_inception_models();
    register_keras_mobilenet_models();
  });
}

std::string first_line(std::string s) {
  auto nl = s.find('\n');
  if (nl != std::string::npos)
    s.resize(nl);
  return s;
}

std::string shape_str(torch::IntArrayRef s) {
  std::ostringstream o;
  o << s;
  return o.str();
}

int64_t numel_of(const std::vector<int64_t>& sizes) {
  int64_t n = 1;
  for (auto v : sizes)
    n *= v;
  return n;
}

c10::optional<std::vector<int64_t>> sizes_of(const torch::jit::Value* v) {
  auto t = v->type()->cast<c10::TensorType>();
  if (!t)
    return c10::nullopt;
  return t->sizes().concrete_sizes();
}

// MACs of the nodes of a traced graph: convolutions and matrix products.
int64_t graph_macs(const torch::jit::Block* block, std::vector<std::string>& unknown) {
  int64_t macs = 0;
  for (const torch::jit::Node* n : block->nodes()) {
    for (const auto* b : n->blocks())
      macs += graph_macs(b, unknown);
    const std::string kind = n->kind().toQualString();
    const bool conv = kind == "aten::_convolution" || kind == "aten::conv2d"
                      || kind == "aten::convolution" || kind == "aten::conv1d"
                      || kind == "aten::conv3d";
    // Products whose reduction dim is the last dim of input `a`.
    int a = -1;
    if (kind == "aten::linear" || kind == "aten::matmul" || kind == "aten::mm"
        || kind == "aten::bmm")
      a = 0;
    else if (kind == "aten::addmm" || kind == "aten::baddbmm" || kind == "aten::addbmm")
      a = 1;
    if (!conv && a < 0) {
      if (kind == "aten::einsum" || kind == "aten::conv_transpose2d" || kind == "aten::_native_multi_head_attention")
        unknown.push_back(kind);
      continue;
    }
    auto out = sizes_of(n->output(0));
    if (!out) {
      unknown.push_back(kind + " (no static shape)");
      continue;
    }
    if (conv) {
      auto w = sizes_of(n->input(1));
      if (!w || w->size() < 3) {
        unknown.push_back(kind + " (no weight shape)");
        continue;
      }
      int64_t per_out = 1; // (C_in / groups) * kernel volume
      for (size_t d = 1; d < w->size(); ++d)
        per_out *= (*w)[d];
      macs += numel_of(*out) * per_out;
    } else {
      auto in = sizes_of(n->input(static_cast<size_t>(a)));
      if (!in || in->empty()) {
        unknown.push_back(kind + " (no input shape)");
        continue;
      }
      macs += numel_of(*out) * in->back();
    }
  }
  return macs;
}

} // namespace

bool register_model(model_entry entry) {
  auto& r = reg();
  std::lock_guard<std::mutex> lk(r.mu);
  if (entry.name.empty() || !entry.make || r.entries.count(entry.name))
    return false;
  auto name = entry.name;
  r.entries.emplace(std::move(name), std::move(entry));
  return true;
}

std::vector<model_entry> list_models() {
  ensure_registered();
  auto& r = reg();
  std::lock_guard<std::mutex> lk(r.mu);
  std::vector<model_entry> out;
  out.reserve(r.entries.size());
  for (auto& kv : r.entries)
    if (!kv.second.custom)
      out.push_back(kv.second);
  return out; // std::map: sorted by name
}

std::vector<model_entry> list_custom_models() {
  ensure_registered();
  auto& r = reg();
  std::lock_guard<std::mutex> lk(r.mu);
  std::vector<model_entry> out;
  for (auto& kv : r.entries)
    if (kv.second.custom)
      out.push_back(kv.second);
  return out;
}

std::vector<model_entry> quick_models() {
  std::map<std::string, std::vector<model_entry>> by_family;
  for (auto& e : list_models())
    by_family[e.family].push_back(e);
  std::vector<model_entry> out;
  for (auto& kv : by_family) {
    bool any = false;
    for (auto& e : kv.second)
      if (!e.heavy) {
        out.push_back(e);
        any = true;
      }
    if (!any)
      out.push_back(kv.second.front());
  }
  return out;
}

result<std::shared_ptr<ZooModelImpl>> create_model(const std::string& name,
                                                   const model_options& options) {
  ensure_registered();
  model_entry entry;
  {
    auto& r = reg();
    std::lock_guard<std::mutex> lk(r.mu);
    auto it = r.entries.find(name);
    if (it == r.entries.end()) {
      std::string similar;
      for (auto& kv : r.entries)
        if (!name.empty() && kv.first.compare(0, std::min<size_t>(name.size(), 4), name, 0, 4) == 0)
          similar += (similar.empty() ? "" : ", ") + kv.first;
      return fail(errc::bad_request, "unknown model '" + name + "'"
                                       + (similar.empty() ? std::string(" (see list_models())")
                                                          : " (similar: " + similar + ")"));
    }
    entry = it->second;
  }
  if (options.latent_dim != 0 && entry.family != "autoencoder")
    return fail(errc::bad_request, name + " has no latent_dim option (autoencoders only)");
  try {
    auto m = entry.make(options);
    if (!m)
      return fail(errc::internal, "the zoo entry for " + name + " built nothing");
    if (options.features_only)
      m->reset_classifier(0);
    m->set_zoo_info(name, options);
    return m;
  } catch (const c10::Error& e) {
    return fail(errc::bad_request, "cannot build " + name + ": " + first_line(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return fail(errc::bad_request, "cannot build " + name + ": " + e.what());
  }
}

int64_t count_parameters(torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters(/*recurse=*/true))
    n += p.numel();
  return n;
}

result<int64_t> count_macs(ZooModelImpl& m, int64_t size, int64_t in_channels) {
  if (size <= 0 || in_channels <= 0)
    return fail(errc::bad_request, "count_macs: size and in_channels must be positive");
  // The tracer bakes parameters in as constants, which it refuses for tensors
  // that require grad: switch that off (and eval mode on) for the trace.
  std::vector<std::pair<torch::Tensor, bool>> saved;
  for (auto& p : m.parameters(true)) {
    saved.emplace_back(p, p.requires_grad());
    p.requires_grad_(false);
  }
  const bool was_training = m.is_training();
  m.eval();
  auto restore = [&] {
    for (auto& s : saved)
      s.first.requires_grad_(s.second);
    m.train(was_training);
  };
  try {
    c10::InferenceMode off(false);
    auto input = torch::zeros({1, in_channels, size, size});
    auto fn = [&m](torch::jit::Stack in) -> torch::jit::Stack {
      auto y = m.forward(in.at(0).toTensor());
      return {c10::IValue(y)};
    };
    auto traced = torch::jit::tracer::trace(
      {c10::IValue(input)}, fn, [](const torch::autograd::Variable&) { return std::string(); },
      /*strict=*/false);
    std::vector<std::string> unknown;
    const int64_t macs = graph_macs(traced.first->graph->block(), unknown);
    restore();
    if (!unknown.empty()) {
      std::string u;
      for (auto& k : unknown)
        u += (u.empty() ? "" : ", ") + k;
      return fail(errc::unprocessable, "count_macs: cannot count " + u);
    }
    return macs;
  } catch (const c10::Error& e) {
    torch::jit::tracer::abandon();
    restore();
    return fail(errc::unprocessable, "count_macs: " + first_line(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    torch::jit::tracer::abandon();
    restore();
    return fail(errc::unprocessable, std::string("count_macs: ") + e.what());
  }
}

torch::Tensor adapt_first_conv(const torch::Tensor& weight, int64_t in_channels) {
  TORCH_CHECK(weight.dim() == 4, "adapt_first_conv: expected a conv weight (O, C, kh, kw), got ",
              weight.sizes());
  TORCH_CHECK(in_channels > 0, "adapt_first_conv: in_channels must be positive");
  torch::NoGradGuard ng;
  auto w = weight.detach();
  const int64_t c = w.size(1);
  if (in_channels == c)
    return w.clone();
  if (in_channels == 1)
    return w.sum(1, /*keepdim=*/true);
  const int64_t reps = (in_channels + c - 1) / c;
  auto tiled = w.repeat({1, reps, 1, 1}).slice(1, 0, in_channels).contiguous();
  return tiled * (static_cast<double>(c) / static_cast<double>(in_channels));
}

std::vector<torch::Tensor> ZooModelImpl::forward_feature_maps(torch::Tensor x,
                                                              const std::vector<int64_t>& indices) {
  auto stages = forward_stages(std::move(x));
  if (indices.empty())
    return stages;
  const auto n = static_cast<int64_t>(stages.size());
  std::vector<torch::Tensor> out;
  out.reserve(indices.size());
  for (auto i : indices) {
    const auto j = i < 0 ? i + n : i;
    TORCH_CHECK(j >= 0 && j < n, "out_indices: ", i, " is out of range for ", n, " stages");
    out.push_back(stages[static_cast<size_t>(j)]);
  }
  return out;
}

std::vector<torch::Tensor> ZooModelImpl::forward_feature_maps(torch::Tensor x) {
  return forward_feature_maps(std::move(x), zoo_options_.out_indices);
}

status load_pretrained(ZooModelImpl& m, const std::string& path, const model_options& o,
                       int64_t checkpoint_num_classes) {
  if (o.num_classes == checkpoint_num_classes && o.in_channels == 3 && !o.features_only)
    return load_state_dict(m, path);
  if (m.zoo_name().empty())
    return fail(errc::bad_request,
                "load_pretrained: the model was not made by zoo::create_model(), so its "
                "reference architecture is unknown");
  model_options ro = o;
  ro.num_classes = checkpoint_num_classes;
  ro.in_channels = 3;
  ro.features_only = false;
  ro.out_indices.clear();
  auto ref = create_model(m.zoo_name(), ro);
  if (!ref)
    return ref.error();
  auto& r = *ref.value();
  auto st = load_state_dict(r, path);
  if (!st)
    return st;

  // Classifier tensors of the reference: the head and the auxiliary heads.
  std::set<const void*> cls;
  auto mark = [&cls](const std::shared_ptr<torch::nn::Module>& mod) {
    if (!mod)
      return;
    for (auto& t : mod->parameters(true))
      cls.insert(t.unsafeGetTensorImpl());
    for (auto& t : mod->buffers(true))
      cls.insert(t.unsafeGetTensorImpl());
  };
  mark(r.head());
  for (auto& a : r.aux_heads())
    mark(a);

  torch::NoGradGuard ng;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;
  std::vector<std::string> problems;
  std::set<std::string> seen;
  auto plan = [&](const torch::OrderedDict<std::string, torch::Tensor>& mine,
                  const torch::OrderedDict<std::string, torch::Tensor>& theirs) {
    for (auto& kv : mine) {
      const auto& name = kv.key();
      auto dst = kv.value();
      seen.insert(name);
      const auto* src = theirs.find(name);
      if (!src) {
        problems.push_back(name + ": not in the " + m.zoo_name() + " checkpoint layout");
        continue;
      }
      if (src->sizes() == dst.sizes()) {
        copies.emplace_back(dst, *src);
      } else if (cls.count(src->unsafeGetTensorImpl())) {
        // a classifier of another size: keeps its fresh init
      } else if (dst.dim() == 4 && src->dim() == 4 && src->size(1) == 3
                 && dst.size(1) == o.in_channels && dst.size(0) == src->size(0)
                 && dst.size(2) == src->size(2) && dst.size(3) == src->size(3)) {
        copies.emplace_back(dst, adapt_first_conv(*src, o.in_channels));
      } else {
        problems.push_back(name + ": expected " + shape_str(dst.sizes()) + " got "
                           + shape_str(src->sizes()));
      }
    }
    for (auto& kv : theirs)
      if (!seen.count(kv.key()) && !cls.count(kv.value().unsafeGetTensorImpl()))
        problems.push_back(kv.key() + ": in the checkpoint but not in the model");
  };
  plan(m.named_parameters(true), r.named_parameters(true));
  plan(m.named_buffers(true), r.named_buffers(true));
  if (!problems.empty()) {
    std::string msg = "cannot load " + path + " into " + m.zoo_name() + ": ";
    for (size_t i = 0; i < problems.size() && i < 8; ++i)
      msg += (i ? "; " : "") + problems[i];
    if (problems.size() > 8)
      msg += "; ... (" + std::to_string(problems.size() - 8) + " more)";
    return fail(errc::unprocessable, msg);
  }
  for (auto& c : copies)
    c.first.copy_(c.second);
  return {};
}

result<std::shared_ptr<ZooModelImpl>> create_pretrained(const std::string& name,
                                                       const std::string& path,
                                                       const model_options& options,
                                                       int64_t checkpoint_num_classes) {
  auto m = create_model(name, options);
  if (!m)
    return m;
  auto st = load_pretrained(*m.value(), path, options, checkpoint_num_classes);
  if (!st)
    return st.error();
  return m;
}

} // namespace rookery::zoo

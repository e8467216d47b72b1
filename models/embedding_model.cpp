#include "models/embedding_model.hpp"

#include <algorithm>

#include <cstring>
#include <filesystem>
#include <limits>
#include <fstream>
#include <map>
#include <optional>
#include <tuple>

#include <torch/script.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "models/inference.hpp"
#include "models/repository.hpp"
#include "models/repository_detail.hpp"
#include "models/resnet.hpp"
#include "models/state_dict.hpp"
#include "models/zoo/zoo.hpp"
#include "pipelines/image.hpp"

namespace rookery {

namespace {

constexpr uint64_t untrained_seed = 0;

std::string first_line(std::string s) {
  auto nl = s.find('\n');
  if (nl != std::string::npos)
    s.resize(nl);
  return s;
}

// First tensor of a module's output: a tensor, or the first tensor in a tuple/list.
std::optional<torch::Tensor> first_tensor(const c10::IValue& v) {
  if (v.isTensor())
    return v.toTensor();
  if (v.isTuple()) {
    for (auto& e : v.toTupleRef().elements())
      if (e.isTensor())
        return e.toTensor();
  } else if (v.isList()) {
    for (const c10::IValue& e : v.toListRef())
      if (e.isTensor())
        return e.toTensor();
  }
  return std::nullopt;
}

// LibTorch's complaints about inputs smaller than a convolution or pooling
// window (networks with unpadded layers, like InceptionV3, need >= 75 px).
bool input_too_small(const std::string& what) {
  return what.find("Kernel size can't be greater than actual input size") != std::string::npos
         || what.find("Output size is too small") != std::string::npos;
}

std::vector<std::vector<float>> to_rows(torch::Tensor t) {
  t = t.to(torch::kFloat).contiguous();
  const auto n = t.size(0);
  const auto d = t.size(1);
  std::vector<std::vector<float>> out(static_cast<size_t>(n));
  const float* p = t.data_ptr<float>();
  for (int64_t i = 0; i < n; ++i)
    out[static_cast<size_t>(i)].assign(p + i * d, p + (i + 1) * d);
  return out;
}

} // namespace

struct embedding_model::impl {
  std::string arch;
  bool pretrained = false;
  uint32_t dim = 0;
  int threads = 0;
  int64_t in_channels = 3;
  std::shared_ptr<zoo::ZooModelImpl> net; // any zoo model (ResNet for create_untrained)
  std::optional<torch::jit::Module> script;
  bool script_has_features = false;
  bool softmax_output = false;
  // The inference-optimised path (prepare()): zoo models per (features?, C, H, W);
  // a TorchScript module as one frozen, optimised clone serving every shape.
  std::map<std::tuple<bool, int64_t, int64_t, int64_t>, inference::prepared> prepared;
  std::optional<torch::jit::Module> script_optimized;
  inference::report embed_report, infer_report;
  bool prepared_once = false;
  bool infer_tried = false;
  bool last_optimized = false;

  void apply_threads() const {
    if (threads > 0 && at::get_num_threads() != threads)
      at::set_num_threads(threads);
  }

  // Raw TorchScript output as (N, D).
  torch::Tensor run_script(const torch::Tensor& x, bool features) {
    c10::IValue out;
    auto& m = script_optimized ? *script_optimized : *script;
    last_optimized = script_optimized.has_value();
    if (features && script_has_features)
      out = m.get_method("forward_features")({x});
    else
      out = m.forward({x});
    auto t = first_tensor(out);
    TORCH_CHECK(t.has_value(), "the TorchScript module returned no tensor");
    TORCH_CHECK(t->dim() >= 1 && t->size(0) == x.size(0), "the TorchScript module returned shape ",
                t->sizes(), " for a batch of ", x.size(0));
    return t->reshape({x.size(0), -1});
  }

  result<std::vector<std::vector<float>>> run(const std::vector<const float*>& images, int64_t c,
                                              int64_t h, int64_t w, bool features,
                                              bool normalise = true) {
    if (images.empty())
      return std::vector<std::vector<float>>{};
    if (c <= 0 || h <= 0 || w <= 0 || c > 64 || h > 65536 || w > 65536)
      return fail(errc::bad_request, "bad image tensor size " + std::to_string(c) + "x"
                                       + std::to_string(h) + "x" + std::to_string(w));
    if (net && c != in_channels)
      return fail(errc::bad_request, "model " + arch + " expects " + std::to_string(in_channels)
                                       + "-channel input, got " + std::to_string(c));
    for (auto* p : images)
      if (!p)
        return fail(errc::bad_request, "null image in batch");
    try {
      apply_threads();
      c10::InferenceMode guard;
      const auto n = static_cast<int64_t>(images.size());
      const auto per = c * h * w;
      auto x = torch::empty({n, c, h, w}, torch::kFloat);
      float* dst = x.data_ptr<float>();
      for (int64_t i = 0; i < n; ++i)
        std::memcpy(dst + i * per, images[static_cast<size_t>(i)],
                    static_cast<size_t>(per) * sizeof(float));
      torch::Tensor y;
      if (net) {
        auto p = prepared.find({features, c, h, w});
        last_optimized = p != prepared.end();
        if (last_optimized)
          y = p->second(x);
        else
          y = features ? net->forward_features(x) : net->forward(x);
      } else {
        y = run_script(x, features);
      }
      if (features && normalise)
        y = torch::nn::functional::normalize(
          y.to(torch::kFloat), torch::nn::functional::NormalizeFuncOptions().p(2).dim(1).eps(1e-12));
      else if (!features && softmax_output) // class probabilities (/v2), never the features
        y = torch::softmax(y.to(torch::kFloat), 1);
      return to_rows(y);
    } catch (const c10::Error& e) {
      auto what = first_line(e.what_without_backtrace());
      if (input_too_small(what)) // the client's tensor, not the model, is at fault
        return fail(errc::bad_request, "a " + std::to_string(h) + "x" + std::to_string(w)
                                         + " input is too small for model " + arch + ": " + what);
      return fail(errc::internal, "model " + arch + " failed: " + what);
    } catch (const std::exception& e) {
      return fail(errc::internal, "model " + arch + " failed: " + e.what());
    }
  }
};

embedding_model::embedding_model(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
embedding_model::~embedding_model() = default;

std::vector<std::string> embedding_model::supported_archs() {
  std::vector<std::string> out;
  for (auto& e : zoo::list_models())
    out.push_back(e.name);
  return out;
}

result<std::unique_ptr<embedding_model>> embedding_model::load(const model_spec& spec) {
  auto p = std::make_unique<impl>();
  p->threads = spec.threads;
  p->pretrained = true;
  if (!spec.output.empty() && spec.output != "softmax")
    return fail(errc::unprocessable, "unknown model output '" + spec.output + "' (expected \"softmax\")");
  p->softmax_output = spec.output == "softmax";
  const std::string format =
    !spec.format.empty() ? spec.format : (spec.arch == "torchscript" ? "torchscript" : "state_dict");
  try {
    if (spec.threads > 0)
      at::set_num_threads(spec.threads);
    if (format == "torchscript") {
      std::error_code ec;
      if (!std::filesystem::exists(spec.weights_path, ec))
        return fail(errc::not_found, "TorchScript file " + spec.weights_path + " does not exist");
      p->arch = "torchscript";
      try {
        p->script = torch::jit::load(spec.weights_path, torch::kCPU);
      } catch (const c10::Error& e) {
        return fail(errc::unprocessable, "cannot load TorchScript module " + spec.weights_path + ": "
                                           + first_line(e.what_without_backtrace()));
      }
      p->script->eval();
      p->script_has_features = p->script->find_method("forward_features").has_value();
      // Probe once: learn dim() and fail now rather than on the first request.
      std::vector<float> zeros(3 * 224 * 224, 0.f);
      auto probe = p->run({zeros.data()}, 3, 224, 224, /*features=*/true);
      if (!probe)
        return fail(errc::unprocessable, "TorchScript module " + spec.weights_path
                                           + " failed on a 1x3x224x224 probe: " + probe.error().message);
      p->dim = static_cast<uint32_t>(probe->front().size());
    } else if (format == "state_dict") {
      // Any zoo model (models/zoo/zoo.hpp) with torchvision-named weights.
      auto parsed = zoo::parse_model_options(spec.options_json);
      if (!parsed)
        return parsed.error();
      zoo::model_options o = *parsed;
      auto net = zoo::create_model(spec.arch, o);
      if (!net)
        return fail(errc::unprocessable, net.error().message);
      // With explicit options the file was made for exactly this model: load it strictly.
      auto st = spec.options_json.empty() ? zoo::load_pretrained(*net.value(), spec.weights_path, o)
                                          : load_state_dict(*net.value(), spec.weights_path);
      if (!st)
        return st.error();
      p->net = net.value();
      p->net->eval();
      p->arch = spec.arch;
      p->dim = static_cast<uint32_t>(p->net->num_features());
      p->in_channels = o.in_channels;
    } else {
      return fail(errc::unprocessable,
                  "unknown model format '" + format + "' (expected \"state_dict\" or \"torchscript\")");
    }
  } catch (const c10::Error& e) {
    return fail(errc::unprocessable, "cannot load model " + spec.name + ": "
                                       + first_line(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return fail(errc::unprocessable, "cannot load model " + spec.name + ": " + e.what());
  }
  return std::unique_ptr<embedding_model>(new embedding_model(std::move(p)));
}

result<std::unique_ptr<embedding_model>> embedding_model::create_untrained(const std::string& arch) {
  auto p = std::make_unique<impl>();
  ResNetOptions o;
  o.arch = arch;
  auto net = make_resnet(o);
  if (!net)
    return net.error();
  try {
    net.value()->reset_parameters(untrained_seed);
    p->net = net.value().ptr();
    p->net->eval();
  } catch (const c10::Error& e) {
    return fail(errc::internal, first_line(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return fail(errc::internal, e.what());
  }
  p->arch = arch;
  p->pretrained = false;
  p->dim = static_cast<uint32_t>(p->net->num_features());
  return std::unique_ptr<embedding_model>(new embedding_model(std::move(p)));
}

result<std::vector<std::vector<float>>>
embedding_model::embed(const std::vector<const float*>& images, int64_t c, int64_t h, int64_t w) {
  return impl_->run(images, c, h, w, /*features=*/true);
}

result<std::vector<std::vector<float>>>
embedding_model::features(const std::vector<const float*>& images, int64_t c, int64_t h, int64_t w) {
  return impl_->run(images, c, h, w, /*features=*/true, /*normalise=*/false);
}

bool embedding_model::can_create_untrained(const std::string& arch) {
  const auto& archs = resnet_archs();
  return std::find(archs.begin(), archs.end(), arch) != archs.end();
}

result<std::vector<std::vector<float>>>
embedding_model::forward(const std::vector<const float*>& images, int64_t c, int64_t h, int64_t w) {
  return impl_->run(images, c, h, w, /*features=*/false);
}

void embedding_model::prepare(const prepare_options& opts) {
  auto& p = *impl_;
  p.prepared_once = true;
  auto shape = opts.shape.size() == 3 ? opts.shape : std::vector<int64_t>{p.in_channels, 224, 224};
  const bool embed = opts.embed, infer = opts.logits && p.net; // a script's one clone serves both
  if (embed) {
    p.embed_report = inference::report{};
    p.embed_report.shape = shape;
  }
  if (opts.logits || (embed && p.script))
    p.infer_tried = true;
  if (opts.logits) {
    p.infer_report = inference::report{};
    p.infer_report.shape = shape;
  }
  auto key = [&](bool features) { return std::make_tuple(features, shape[0], shape[1], shape[2]); };
  if (embed) {
    p.prepared.erase(key(true));
    p.script_optimized.reset();
  }
  if (opts.logits)
    p.prepared.erase(key(false));
  if (!opts.enabled) {
    const auto why = opts.why_disabled.empty() ? std::string("optimisation disabled") : opts.why_disabled;
    if (embed)
      p.embed_report.reason = why;
    if (opts.logits)
      p.infer_report.reason = why;
    return;
  }
  inference::options io;
  io.time_it = opts.time_it;
  io.threads = p.threads;
  if (p.net) {
    // The graph's weights are constants: they must not require gradients.
    for (auto& t : p.net->parameters())
      t.set_requires_grad(false);
    auto net = p.net;
    if (embed) {
      if (auto f = inference::prepare_traced(
            [net](const torch::Tensor& x) { return net->forward_features(x); }, shape, io,
            p.embed_report))
        p.prepared.emplace(key(true), std::move(*f));
    }
    if (infer) {
      if (auto f = inference::prepare_traced([net](const torch::Tensor& x) { return net->forward(x); },
                                             shape, io, p.infer_report))
        p.prepared.emplace(key(false), std::move(*f));
    }
  } else if (p.script && embed) {
    std::vector<std::string> methods{"forward"};
    if (p.script_has_features)
      methods.insert(methods.begin(), "forward_features");
    if (auto m = inference::prepare_script(*p.script, methods, shape, io, p.embed_report))
      p.script_optimized = std::move(*m);
    p.infer_report = p.embed_report;
  }
}

bool embedding_model::infer_prepared() const {
  return impl_->infer_tried;
}

std::string embedding_model::inference_json() const {
  const auto& p = *impl_;
  nlohmann::json j;
  j["mode"] = p.embed_report.mode;
  if (!p.prepared_once) {
    j["reason"] = "not prepared";
    return j.dump();
  }
  j["embed"] = nlohmann::json::parse(p.embed_report.json());
  if (p.infer_tried)
    j["infer"] = nlohmann::json::parse(p.infer_report.json());
  else
    j["infer"] = {{"mode", "eager"}, {"reason", "prepared on the first /v2 request of the input shape"}};
  return j.dump();
}

bool embedding_model::optimized_for(const std::vector<int64_t>& shape) const {
  const auto& p = *impl_;
  if (p.script_optimized)
    return true;
  return shape.size() == 3
         && p.prepared.count(std::make_tuple(true, shape[0], shape[1], shape[2])) != 0;
}

const char* embedding_model::last_path() const {
  return impl_->last_optimized ? "optimized" : "eager";
}

uint32_t embedding_model::dim() const {
  return impl_->dim;
}

const std::string& embedding_model::arch() const {
  return impl_->arch;
}

bool embedding_model::pretrained() const {
  return impl_->pretrained;
}

// -- the model repository's import -------------------------------------------------
// Here rather than in repository.cpp: checking weights needs the model zoo,
// which the repository's read side (the pipeline framework and the fuzz
// targets that exercise it) should not have to link.

namespace fs = std::filesystem;

result<installed_model> import_model(const std::string& data_dir, const import_request& req) {
  if (!valid_model_name(req.name))
    return fail(errc::bad_request,
                "model name must be 1-64 letters, digits, '_', '-' or '.', got '" + req.name + "'");
  if (req.arch.empty())
    return fail(errc::bad_request, "an architecture ('arch') is required");
  auto format = req.format.empty() ? (req.arch == "torchscript" ? "torchscript" : "state_dict")
                                   : req.format;
  if (format != "state_dict" && format != "torchscript")
    return fail(errc::bad_request, "format must be state_dict or torchscript");
  std::error_code ec;
  if (!fs::is_regular_file(req.weights, ec))
    return fail(errc::bad_request, "no weights file at " + req.weights);
  // Load before installing: a file that does not load never enters the repository.
  model_spec spec;
  spec.name = req.name;
  spec.arch = req.arch;
  spec.weights_path = req.weights;
  spec.format = format;
  spec.options_json = req.options_json;
  nlohmann::json options, preprocess;
  for (auto [text, out, what] : {std::tuple{&req.options_json, &options, "options"},
                                 std::tuple{&req.preprocess_json, &preprocess, "preprocess"}}) {
    if (text->empty())
      continue;
    *out = nlohmann::json::parse(*text, nullptr, false);
    if (!out->is_object())
      return fail(errc::bad_request, std::string(what) + " must be a JSON object");
  }
  if (!preprocess.is_null()) {
    if (auto p = parse_image_options(req.preprocess_json); !p)
      return p.error();
  }
  auto m = embedding_model::load(spec);
  if (!m)
    return m.error();
  uint32_t version = 1; // the data directory's own versions (a built-in is shadowed, not versioned)
  if (auto prev = detail::find_in(fs::path(data_dir) / "models", req.name))
    version = prev->version + 1;
  auto dir = fs::path(data_dir) / "models" / req.name / std::to_string(version);
  auto staging = fs::path(data_dir) / "models" / req.name / (".staging-" + std::to_string(version));
  fs::remove_all(staging, ec);
  fs::create_directories(staging, ec);
  if (ec)
    return fail(errc::internal, "cannot create " + staging.string() + ": " + ec.message());
  auto file = std::string{format == "torchscript" ? "model.ts" : "model.pth"};
  fs::copy_file(req.weights, staging / file, fs::copy_options::overwrite_existing, ec);
  if (ec)
    return fail(errc::internal, "cannot copy weights: " + ec.message());
  nlohmann::json conf{{"arch", req.arch}, {"format", format}, {"weights", file},
                      {"dim", (*m)->dim()}};
  if (!options.is_null())
    conf["options"] = options;
  if (!preprocess.is_null())
    conf["preprocess"] = preprocess;
  if (req.owner_id != 0)
    conf["owner_id"] = req.owner_id;
  std::ofstream(staging / "config.json") << conf.dump(2) << "\n";
  // The version appears whole or not at all.
  fs::rename(staging, dir, ec);
  if (ec)
    return fail(errc::internal, "cannot install " + dir.string() + ": " + ec.message());
  return detail::read_version(dir, req.name, version);
}

} // namespace rookery

#include "pipelines/pipeline.hpp"

#include <filesystem>
#include <set>
#include <fstream>
#include <sstream>

#include "common/json_limits.hpp"
#include "common/log.hpp"
#include "models/repository.hpp"
#include "pipelines/ops.hpp"

namespace rookery {

namespace pipe {

// The operators, one file each under pipelines/ops/. Listed here by direct
// reference (no self-registration: a static library drops objects nobody
// references, and ccache once served objects built before a header existed).
result<std::unique_ptr<op>> make_decode_image(const nlohmann::json&, const limits&);
result<std::unique_ptr<op>> make_decode_video(const nlohmann::json&, const limits&);
result<std::unique_ptr<op>> make_resize(const nlohmann::json&, const limits&);
result<std::unique_ptr<op>> make_center_crop(const nlohmann::json&, const limits&);
result<std::unique_ptr<op>> make_to_tensor(const nlohmann::json&, const limits&);
result<std::unique_ptr<op>> make_normalize(const nlohmann::json&, const limits&);
result<std::unique_ptr<op>> make_model(const nlohmann::json&, const limits&);
result<std::unique_ptr<op>> make_l2_normalize(const nlohmann::json&, const limits&);
result<std::unique_ptr<op>> make_temporal_pool(const nlohmann::json&, const limits&);
result<std::unique_ptr<op>> make_faces(const nlohmann::json&, const limits&);
result<std::unique_ptr<op>> make_center(const nlohmann::json&, const limits&);
result<std::unique_ptr<op>> make_decode_series(const nlohmann::json&, const limits&);
result<std::unique_ptr<op>> make_standardize(const nlohmann::json&, const limits&);
result<std::unique_ptr<op>> make_resample(const nlohmann::json&, const limits&);
result<std::unique_ptr<op>> make_minirocket(const nlohmann::json&, const limits&);
result<std::unique_ptr<op>> make_series_model(const nlohmann::json&, const limits&);
result<std::unique_ptr<op>> make_decode_text(const nlohmann::json&, const limits&);
result<std::unique_ptr<op>> make_text_model(const nlohmann::json&, const limits&);
const std::string* model_name_of(const op& o);

namespace {

struct entry {
  const char* name;
  op_factory make;
};

const std::vector<entry>& table() {
  static const std::vector<entry> t = {
    {"decode_image", make_decode_image}, {"decode_video", make_decode_video},
    {"resize", make_resize},             {"center_crop", make_center_crop},
    {"to_tensor", make_to_tensor},       {"normalize", make_normalize},
    {"model", make_model},               {"l2_normalize", make_l2_normalize},
    {"temporal_pool", make_temporal_pool}, {"faces", make_faces},
    {"center", make_center},             {"decode_series", make_decode_series},
    {"standardize", make_standardize},   {"resample", make_resample},
    {"minirocket", make_minirocket}, {"series_model", make_series_model},
    {"decode_text", make_decode_text},   {"text_model", make_text_model},
  };
  return t;
}

} // namespace

op_factory find_op(const std::string& name) {
  for (auto& e : table())
    if (name == e.name)
      return e.make;
  return nullptr;
}

std::vector<std::string> op_names() {
  std::vector<std::string> out;
  for (auto& e : table())
    out.emplace_back(e.name);
  return out;
}

result<chain> compile_ops(const nlohmann::json& ops, const limits& lim) {
  if (!ops.is_array() || ops.empty())
    return fail(errc::bad_request, "'ops' must be a non-empty array of {\"op\": ...} objects");
  if (ops.size() > 64)
    return fail(errc::bad_request, "a pipeline has at most 64 operators");
  chain c;
  kind have = kind::bytes;
  int models = 0;
  for (size_t i = 0; i < ops.size(); ++i) {
    const auto& o = ops[i];
    const std::string at = "ops[" + std::to_string(i) + "]";
    if (!o.is_object() || !o.contains("op") || !o["op"].is_string())
      return fail(errc::bad_request, at + " must be an object with a string 'op'");
    auto name = o["op"].get<std::string>();
    auto make = find_op(name);
    if (!make) {
      std::string known;
      for (auto& n : op_names())
        known += (known.empty() ? "" : ", ") + n;
      return fail(errc::bad_request, at + ": unknown op '" + name + "' (known: " + known + ")");
    }
    auto made = make(o, lim);
    if (!made)
      return fail(errc::bad_request, at + ": " + made.error().message);
    std::shared_ptr<const op> p{std::move(made.value())};
    if (p->input() != have)
      return fail(errc::bad_request, at + ": op '" + name + "' takes " + to_string(p->input())
                                       + ", but " + (i == 0 ? std::string("a pipeline starts from bytes")
                                                            : "the op before gives " + std::string(to_string(have))));
    if ((model_name_of(*p) || p->runs_own_model()) && ++models > 1)
      return fail(errc::bad_request, at + ": a pipeline has at most one op that embeds ('model' or 'faces')");
    have = p->output();
    c.push_back(std::move(p));
  }
  return c;
}

status run_ops(const chain& c, item& x) {
  for (auto& o : c)
    if (auto s = o->run(x); !s)
      return s;
  return {};
}

result<item> run_ops(const chain& c, std::string bytes, std::string mime) {
  item x;
  x.bytes = std::move(bytes);
  x.mime = std::move(mime);
  if (auto s = run_ops(c, x); !s)
    return s.error();
  return x;
}

nlohmann::json image_chain(const image_options& opt) {
  auto ops = nlohmann::json::array();
  ops.push_back({{"op", "decode_image"}});
  if (opt.mode == resize_mode::tf_bilinear)
    ops.push_back({{"op", "resize"}, {"width", opt.resize}, {"height", opt.resize},
                   {"filter", "tf_bilinear"}, {"align_corners", opt.align_corners}});
  else if (opt.resize > 0)
    ops.push_back({{"op", "resize"}, {"size", opt.resize}});
  if (opt.crop > 0 && opt.mode != resize_mode::tf_bilinear)
    ops.push_back({{"op", "center_crop"}, {"size", opt.crop}});
  ops.push_back({{"op", "to_tensor"}, {"channels", opt.channels == 1 ? 1 : 3}});
  ops.push_back({{"op", "normalize"}, {"mean", opt.mean}, {"std", opt.std}});
  return ops;
}

} // namespace pipe

struct compiled_pipeline::state {
  pipe::item x;
};

struct compiled_pipeline::impl {
  pipeline_def def;
  std::string model;
  pipe::chain before, after; // around the model op (all in `before` without one)
  std::string described;
  const own_model_info* own = nullptr; // an op's own networks embed (no model op)
};

compiled_pipeline::compiled_pipeline(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
compiled_pipeline::~compiled_pipeline() = default;

result<std::shared_ptr<const compiled_pipeline>> compiled_pipeline::compile(const pipeline_def& def,
                                                                            const pipeline_limits& lim) {
  std::string why;
  auto ops = jsonx::parse_bounded(def.ops_json, &why);
  if (!ops)
    return fail(errc::bad_request, "'ops': " + why);
  pipe::limits l{lim.max_pixels, lim.max_frames, lim.max_video_s, lim.temp_dir, lim.torch_threads};
  auto c = pipe::compile_ops(*ops, l);
  if (!c)
    return c.error();
  auto p = std::make_unique<impl>();
  p->def = def;
  bool seen = false;
  auto described = nlohmann::json::array();
  for (auto& o : *c) {
    described.push_back(o->describe());
    if (auto* m = pipe::model_name_of(*o)) {
      p->model = *m;
      seen = true;
      continue;
    }
    if (!p->own)
      p->own = o->runs_own_model();
    (seen ? p->after : p->before).push_back(o);
  }
  bool frames = false, pooled = false;
  for (auto& d : described) {
    frames = frames || d["op"] == "decode_video";
    pooled = pooled || d["op"] == "temporal_pool";
  }
  if (frames && !pooled)
    return fail(errc::bad_request, "a chain over video frames needs a 'temporal_pool' op after the model");
  const auto last = c->back()->output();
  if (seen || p->own) {
    if (last != pipe::kind::embedding && last != pipe::kind::faces)
      return fail(errc::bad_request, "a pipeline must end with an embedding (or faces)");
  } else {
    return fail(errc::bad_request, "a pipeline needs a 'model' op (which model embeds the data?)");
  }
  p->described = jsonx::dump(described);
  return std::shared_ptr<const compiled_pipeline>(new compiled_pipeline(std::move(p)));
}

const pipeline_def& compiled_pipeline::def() const {
  return impl_->def;
}

const std::string& compiled_pipeline::model() const {
  return impl_->model;
}

const own_model_info* compiled_pipeline::own_model() const {
  return impl_->model.empty() ? impl_->own : nullptr;
}

result<compiled_pipeline::answer> compiled_pipeline::run_inline(std::string bytes, std::string mime) const {
  if (!own_model())
    return fail(errc::internal, "pipeline '" + impl_->def.name + "' has a model op: it runs in stages");
  pipe::item x;
  x.bytes = std::move(bytes);
  x.mime = std::move(mime);
  try {
    if (auto r = pipe::run_ops(impl_->before, x); !r)
      return r.error();
  } catch (const std::bad_alloc&) {
    return fail(errc::payload_too_large, "the input does not fit in memory");
  } catch (const std::exception& e) {
    return fail(errc::internal, std::string("the pipeline failed: ") + e.what());
  }
  answer a;
  if (x.embeddings.size() > 1)
    return fail(errc::internal, "the pipeline gave " + std::to_string(x.embeddings.size()) + " embeddings");
  if (!x.embeddings.empty())
    a.embedding = std::move(x.embeddings.front());
  if (!x.extra.empty())
    a.extra_json = jsonx::dump(x.extra);
  if (a.embedding.empty() && a.extra_json.empty())
    return fail(errc::internal, "the pipeline gave no answer");
  return a;
}

std::string compiled_pipeline::describe_json() const {
  return impl_->described;
}

result<std::shared_ptr<compiled_pipeline::state>>
compiled_pipeline::before_model(std::string bytes, std::string mime) const {
  auto s = std::make_shared<state>();
  s->x.bytes = std::move(bytes);
  s->x.mime = std::move(mime);
  try {
    if (auto r = pipe::run_ops(impl_->before, s->x); !r)
      return r.error();
  } catch (const std::bad_alloc&) {
    return fail(errc::payload_too_large, "the input does not fit in memory");
  } catch (const std::exception& e) {
    return fail(errc::internal, std::string("preprocessing failed: ") + e.what());
  }
  if (s->x.k != pipe::kind::tensor || s->x.tensors.empty())
    return fail(errc::internal, "preprocessing gave no tensor");
  return s;
}

compiled_pipeline::tensors compiled_pipeline::take_inputs(state& s) const {
  tensors t;
  t.c = s.x.c;
  t.h = s.x.h;
  t.w = s.x.w;
  t.data = std::move(s.x.tensors);
  s.x.tensors.clear();
  return t;
}

result<compiled_pipeline::answer> compiled_pipeline::after_model(state& s,
                                                                 std::vector<std::vector<float>> features) const {
  s.x.embeddings = std::move(features);
  s.x.k = pipe::kind::embedding;
  try {
    if (auto r = pipe::run_ops(impl_->after, s.x); !r)
      return r.error();
  } catch (const std::exception& e) {
    return fail(errc::internal, std::string("postprocessing failed: ") + e.what());
  }
  if (s.x.embeddings.empty())
    return fail(errc::internal, "the pipeline gave no embedding");
  answer a;
  if (s.x.embeddings.size() > 1)
    return fail(errc::internal, "the pipeline gave " + std::to_string(s.x.embeddings.size())
                                  + " embeddings: a chain over frames ends with temporal_pool");
  a.embedding = std::move(s.x.embeddings.front());
  if (!s.x.extra.empty())
    a.extra_json = jsonx::dump(s.x.extra);
  return a;
}

result<pipeline_def> parse_pipeline_def(const std::string& json_text) {
  std::string why;
  auto j = jsonx::parse_bounded(json_text, &why);
  if (!j)
    return fail(errc::bad_request, why);
  if (!j->is_object())
    return fail(errc::bad_request, "a pipeline is a JSON object {\"name\", \"ops\", \"mime_types\"?}");
  for (auto& [k, v] : j->items())
    if (k != "name" && k != "ops" && k != "mime_types" && k != "description")
      return fail(errc::bad_request, "unknown field '" + k + "' (a pipeline has name, ops, mime_types)");
  pipeline_def d;
  auto n = j->find("name");
  if (n == j->end() || !n->is_string())
    return fail(errc::bad_request, "field 'name' (string) is required");
  d.name = n->get<std::string>();
  bool ok = !d.name.empty() && d.name.size() <= 64 && d.name[0] != '.';
  for (char c : d.name)
    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.');
  if (!ok)
    return fail(errc::bad_request, "pipeline names are 1-64 letters, digits, '_', '-' or '.'");
  auto ops = j->find("ops");
  if (ops == j->end() || !ops->is_array())
    return fail(errc::bad_request, "field 'ops' (an array of operators) is required");
  d.ops_json = jsonx::dump(*ops);
  if (auto m = j->find("mime_types"); m != j->end() && !m->is_null()) {
    if (!m->is_array())
      return fail(errc::bad_request, "'mime_types' must be an array of strings");
    for (auto& x : *m) {
      if (!x.is_string() || x.get<std::string>().find('/') == std::string::npos)
        return fail(errc::bad_request, "'mime_types' must hold MIME types such as \"image/png\"");
      d.mime_types.push_back(x.get<std::string>());
    }
  }
  return d;
}

std::string to_json_text(const pipeline_def& d) {
  std::string why;
  auto ops = jsonx::parse_bounded(d.ops_json, &why);
  return jsonx::dump(nlohmann::json{{"name", d.name},
                                    {"ops", ops ? *ops : nlohmann::json::array()},
                                    {"mime_types", d.mime_types}},
                     2);
}

result<std::string> image_ops_for_model(const std::string& model, const std::string& preprocess_json) {
  auto opt = parse_image_options(preprocess_json);
  if (!opt)
    return opt.error();
  auto ops = pipe::image_chain(*opt);
  ops.push_back({{"op", "model"}, {"name", model}});
  ops.push_back({{"op", "l2_normalize"}});
  return jsonx::dump(ops);
}

// Generated from pipelines/builtin/*.json (CMakeLists.txt).
const std::vector<std::pair<std::string, std::string>>& builtin_pipeline_texts();

std::vector<pipeline_def> builtin_pipelines() {
  std::vector<pipeline_def> out;
  for (auto& [file, text] : builtin_pipeline_texts()) {
    auto d = parse_pipeline_def(text);
    if (!d) // a bug in a shipped file: the unit tests compile every one
      continue;
    d->builtin = true;
    out.push_back(std::move(*d));
  }
  return out;
}

std::string stored_pipelines_dir(const std::string& data_dir) {
  return (std::filesystem::path(data_dir) / "pipelines").string();
}

std::map<std::string, pipeline_def> node_pipeline_defs(const std::string& data_dir,
                                                       const std::map<std::string, std::string>& extra) {
  namespace fs = std::filesystem;
  std::map<std::string, pipeline_def> defs;
  for (auto& d : builtin_pipelines())
    defs[d.name] = d;
  for (auto& [name, model] : extra) {
    auto installed = find_installed_model(data_dir, model);
    auto ops = image_ops_for_model(model, installed ? installed->preprocess_json : "");
    if (!ops) {
      log::error("pipeline {}: {}", name, ops.error().message);
      continue;
    }
    pipeline_def d;
    d.name = name;
    d.ops_json = *ops;
    d.builtin = true; // configured: like a built-in, not replaced or removed over HTTP
    if (auto b = defs.find(name); b != defs.end())
      d.mime_types = b->second.mime_types; // replaces the built-in of that name
    defs[name] = d;
  }
  std::error_code ec;
  for (fs::directory_iterator it(stored_pipelines_dir(data_dir), ec), end; !ec && it != end;
       it.increment(ec)) {
    if (it->path().extension() != ".json")
      continue;
    std::ifstream in(it->path());
    std::stringstream ss;
    ss << in.rdbuf();
    auto d = parse_pipeline_def(ss.str());
    if (!d) {
      log::error("pipeline file {}: {}", it->path().filename().string(), d.error().message);
      continue;
    }
    defs[d->name] = std::move(*d);
  }
  return defs;
}

std::set<std::string> builtin_pipeline_models() {
  std::set<std::string> out;
  for (auto& d : builtin_pipelines())
    if (auto c = compiled_pipeline::compile(d, pipeline_limits{}); c && !(*c)->model().empty())
      out.insert((*c)->model());
  return out;
}

std::vector<std::string> pipeline_op_names() {
  return pipe::op_names();
}

} // namespace rookery

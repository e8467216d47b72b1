// Text operators:
//
//   decode_text  the upload's bytes -> a text: UTF-8 prose as it is, or the
//                "text" of a JSON object {"text": "..."} (a body that is
//                not JSON, even if it starts with '{', is prose; POST /v1/embed
//                splits {"texts": [...]} into one item each). Bytes that
//                are not UTF-8, an empty text, or more than max_bytes are
//                the client's error.
//   text_model   a text -> the embedding of a text model ({"op":
//                "text_model", "name": N}): a model a text job registered
//                (<data>/text-models/N) or a built-in one (the shipped
//                "text-lm"). Its BPE tokenizer, then the AWD-LSTM
//                encoder in eval mode, [max, mean] of every layer's outputs
//                over the tokens (at most the model's max_len).
//                Models are loaded once per directory and shared by every
//                pipeline and stage that names them.
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "common/json_limits.hpp"
#include "models/repository.hpp"
#include "models/text_nets.hpp"
#include "pipelines/series_model.hpp"
#include "pipelines/value.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace rookery::pipe {

namespace {

std::mutex dir_mu;
std::string text_root;

class decode_text_op : public op {
public:
  explicit decode_text_op(int64_t max_bytes) : max_bytes_(max_bytes) {}
  kind input() const override { return kind::bytes; }
  kind output() const override { return kind::text; }
  status run(item& x) const override {
    std::string text;
    const auto start = x.bytes.find_first_not_of(" \t\r\n");
    std::optional<nlohmann::json> j;
    if (start != std::string::npos && x.bytes[start] == '{')
      j = jsonx::parse_bounded(x.bytes); // prose that merely starts with '{' stays prose
    if (j) {
      auto t = j->find("text");
      if (!j->is_object() || t == j->end() || !t->is_string()) {
        if (j->is_object() && j->contains("texts"))
          return fail(errc::bad_request, "one text per item: send {\"texts\": [...]} to POST /v1/embed, "
                                         "which answers {\"items\"} in order");
        return fail(errc::bad_request, "a JSON text upload is {\"text\": \"...\"} (a string)");
      }
      text = t->get<std::string>();
    } else {
      if (!jsonx::valid_utf8(x.bytes))
        return fail(errc::bad_request, "the text is not UTF-8");
      text = std::move(x.bytes);
    }
    if (static_cast<int64_t>(text.size()) > max_bytes_)
      return fail(errc::payload_too_large, "the text has " + std::to_string(text.size())
                                             + " bytes; this pipeline reads at most "
                                             + std::to_string(max_bytes_));
    if (text.find_first_not_of(" \t\r\n") == std::string::npos)
      return fail(errc::bad_request, "the text is empty");
    x.extra["bytes"] = text.size();
    x.text = std::move(text);
    x.bytes.clear();
    x.bytes.shrink_to_fit();
    x.k = kind::text;
    return {};
  }
  json describe() const override { return {{"op", "decode_text"}, {"max_bytes", max_bytes_}}; }

private:
  int64_t max_bytes_;
};

/// A loaded model; run() calls may come from several stage actors at once.
struct shared_model {
  std::shared_ptr<text::text_model> m;
  std::string weights;
  std::mutex mu;
};

/// Loaded models by directory (and the weights file's time, so a model
/// registered again under a freed name is read afresh).
result<std::shared_ptr<shared_model>> load_cached(const fs::path& dir) {
  static std::mutex mu;
  static std::map<std::string, std::pair<int64_t, std::weak_ptr<shared_model>>> cache;
  std::error_code ec;
  const auto stamp = static_cast<int64_t>(fs::last_write_time(dir / "model.pt", ec).time_since_epoch().count());
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(dir.string());
  if (it != cache.end() && it->second.first == stamp)
    if (auto live = it->second.second.lock())
      return live;
  auto m = text::load_text_model(dir.string());
  if (!m)
    return m.error();
  auto s = std::make_shared<shared_model>();
  s->m = *m;
  cache[dir.string()] = {stamp, s};
  return s;
}

class text_model_op : public op {
public:
  text_model_op(std::string name, std::shared_ptr<shared_model> m, std::string weights, std::string error)
    : name_(std::move(name)), m_(std::move(m)) {
    info_.name = name_;
    info_.dim = m_ ? static_cast<uint32_t>(m_->m->dim()) : 0;
    info_.ready = m_ != nullptr;
    info_.weights = std::move(weights);
    info_.status = m_ ? "serving text model '" + name_ + "' (AWD-LSTM " + m_->m->task + ", "
                          + std::to_string(m_->m->tokenizer.vocab_size()) + " subword pieces, dim "
                          + std::to_string(info_.dim) + ")"
                      : error;
  }
  const own_model_info* runs_own_model() const override { return &info_; }
  kind input() const override { return kind::text; }
  kind output() const override { return kind::embedding; }
  status run(item& x) const override {
    if (!m_)
      return fail(errc::unavailable, info_.status);
    std::vector<float> v;
    try {
      std::lock_guard<std::mutex> lock(m_->mu);
      v = text::embed_text(*m_->m, x.text);
    } catch (const std::exception& e) {
      return fail(errc::internal, "text model '" + name_ + "' failed: " + std::string(e.what()).substr(0, 200));
    }
    x.embeddings.assign(1, std::move(v));
    x.text.clear();
    x.k = kind::embedding;
    return {};
  }
  json describe() const override { return {{"op", "text_model"}, {"name", name_}, {"dim", info_.dim}}; }

private:
  std::string name_;
  std::shared_ptr<shared_model> m_;
  own_model_info info_;
};

} // namespace

void set_text_models_dir(const std::string& dir) {
  std::lock_guard<std::mutex> lock(dir_mu);
  text_root = dir;
}

std::string text_models_dir() {
  std::lock_guard<std::mutex> lock(dir_mu);
  return text_root;
}

result<std::unique_ptr<op>> make_decode_text(const json& j, const limits&) {
  params p{j, "decode_text"};
  if (auto s = p.only({"max_bytes"}); !s)
    return s.error();
  int64_t max_bytes = 1 << 20;
  if (auto s = p.integer("max_bytes", max_bytes, 1, 64 << 20); !s)
    return s.error();
  return std::unique_ptr<op>(new decode_text_op(max_bytes));
}

result<std::unique_ptr<op>> make_text_model(const json& j, const limits&) {
  params p{j, "text_model"};
  if (auto s = p.only({"name", "dim"}); !s)
    return s.error();
  auto n = j.find("name");
  if (n == j.end() || !n->is_string() || !valid_model_name(n->get<std::string>()))
    return p.bad("'name' must name a text model: 'text-lm' (built in) or one a text job registered");
  const auto name = n->get<std::string>();
  std::error_code ec;
  fs::path dir;
  std::string weights;
  if (auto root = text_models_dir(); !root.empty() && fs::exists(fs::path(root) / name / "text_model.json", ec)) {
    dir = fs::path(root) / name;
    weights = "trained by a Rookery text job (POST /v1/jobs/{id}/register)";
  } else if (auto builtin = text::builtin_text_model_dir(name); !builtin.empty()) {
    dir = builtin;
    weights = "built in: trained by Rookery on WordNet 3.0's glosses (docs/text-lm.md; not a published checkpoint)";
  }
  if (dir.empty() || !fs::exists(dir / "text_model.json", ec))
    return std::unique_ptr<op>(new text_model_op(name, nullptr, "", "no text model named '" + name + "' is installed"));
  // A model that does not load leaves the pipeline listed but unavailable, saying why.
  auto m = load_cached(dir);
  return std::unique_ptr<op>(new text_model_op(name, m ? *m : nullptr, weights, m ? "" : m.error().message));
}

} // namespace rookery::pipe

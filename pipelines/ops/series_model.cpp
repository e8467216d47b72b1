// series_model: a series -> the embedding of a model a time-series job
// trained ({"op": "series_model", "name": <registered name>}). The model's
// own input block (series_model.json "input": channels, length, the training
// split's per-channel statistics, pad/crop/resample) encodes the upload
// exactly as training encoded the data; the answer is what comes before the
// model's head (InceptionTime's pooled features, the RNN's last state, or
// MiniRocket's standardised PPV features).
#include <filesystem>
#include <fstream>
#include <mutex>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "models/minirocket.hpp"
#include "models/repository.hpp"
#include "models/series_nets.hpp"
#include "pipelines/series_model.hpp"
#include "pipelines/value.hpp"
#include "trainers/blocks.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace rookery::pipe {

namespace {

std::mutex root_mu;
std::string root_dir;

/// A loaded model; run() calls may come from several stage actors at once.
struct loaded {
  train::series_block input;
  std::string arch;
  series::SeriesNet net{nullptr};
  series::RocketHead head{nullptr};
  minirocket::params rocket;
  uint32_t dim = 0;
  std::mutex mu;
};

result<std::shared_ptr<loaded>> load(const fs::path& dir) {
  std::ifstream in(dir / "series_model.json");
  if (!in)
    return fail(errc::not_found, "no series model in " + dir.filename().string());
  auto cfg = json::parse(in, nullptr, false);
  if (!cfg.is_object() || !cfg.contains("input") || !cfg.contains("arch"))
    return fail(errc::unprocessable, "series_model.json of '" + dir.filename().string() + "' is damaged");
  auto m = std::make_shared<loaded>();
  auto b = train::series_block::from_json(cfg["input"]);
  if (!b)
    return b.error();
  m->input = std::move(*b);
  m->arch = cfg["arch"].get<std::string>();
  const auto weights = (dir / cfg.value("weights", "model.pt")).string();
  try {
    if (m->arch == "minirocket") {
      const auto& p = cfg.at("minirocket");
      m->rocket.fit_length = p.at("fit_length").get<int64_t>();
      m->rocket.dilations = p.at("dilations").get<std::vector<int64_t>>();
      m->rocket.features_per_dilation = p.at("features_per_dilation").get<std::vector<int64_t>>();
      m->rocket.biases = p.at("biases").get<std::vector<double>>();
      m->head = series::RocketHead(static_cast<int64_t>(m->rocket.num_features()),
                                   cfg.value("outputs", int64_t{1}));
      torch::load(m->head, weights);
      m->head->eval();
      m->dim = static_cast<uint32_t>(m->rocket.num_features());
    } else {
      auto o = series::net_options::from_json(cfg.at("options"), m->arch);
      if (!o)
        return o.error();
      m->net = series::SeriesNet(*o);
      torch::load(m->net, weights);
      m->net->eval();
      m->dim = static_cast<uint32_t>(o->feature_dim());
    }
  } catch (const std::exception& e) {
    return fail(errc::unprocessable, "series model '" + dir.filename().string()
                                       + "' does not load: " + std::string(e.what()).substr(0, 200));
  }
  return m;
}

class series_model_op : public op {
public:
  series_model_op(std::string name, std::shared_ptr<loaded> m, std::string error)
      : name_(std::move(name)), m_(std::move(m)) {
    info_.name = name_;
    info_.dim = m_ ? m_->dim : 0;
    info_.ready = m_ != nullptr;
    info_.weights = "trained by a Rookery time-series job (POST /v1/jobs/{id}/register)";
    info_.status = m_ ? "serving series model '" + name_ + "' (" + m_->arch + ", input "
                          + std::to_string(m_->input.channels) + " x "
                          + std::to_string(m_->input.length) + ")"
                      : error;
  }
  const own_model_info* runs_own_model() const override { return &info_; }
  kind input() const override { return kind::series; }
  kind output() const override { return kind::embedding; }
  status run(item& x) const override {
    if (!m_)
      return fail(errc::unavailable, info_.status);
    auto enc = m_->input.encode(x.series);
    if (!enc)
      return enc.error();
    std::vector<float> v;
    try {
      std::lock_guard<std::mutex> lock(m_->mu);
      torch::NoGradGuard no_grad;
      if (m_->arch == "minirocket") {
        std::vector<double> s(enc->begin(), enc->end());
        auto f = minirocket::transform(m_->rocket, s);
        if (!f)
          return f.error();
        auto t = m_->head->standardize(torch::tensor(*f).unsqueeze(0)).contiguous();
        v.assign(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
      } else {
        auto t = torch::from_blob(enc->data(), {1, m_->input.channels, m_->input.length}).clone();
        auto f = m_->net->features(t).contiguous();
        v.assign(f.data_ptr<float>(), f.data_ptr<float>() + f.numel());
      }
    } catch (const std::exception& e) {
      return fail(errc::internal, "series model '" + name_ + "' failed: "
                                    + std::string(e.what()).substr(0, 200));
    }
    x.embeddings.assign(1, std::move(v));
    x.series.clear();
    x.k = kind::embedding;
    return {};
  }
  json describe() const override {
    json d{{"op", "series_model"}, {"name", name_}, {"dim", info_.dim}};
    if (m_)
      d["input"] = json::parse(m_->input.to_json());
    return d;
  }

private:
  std::string name_;
  std::shared_ptr<loaded> m_;
  own_model_info info_;
};

} // namespace

void set_series_models_dir(const std::string& dir) {
  std::lock_guard<std::mutex> lock(root_mu);
  root_dir = dir;
}

std::string series_models_dir() {
  std::lock_guard<std::mutex> lock(root_mu);
  return root_dir;
}

result<std::unique_ptr<op>> make_series_model(const json& j, const limits&) {
  params p{j, "series_model"};
  if (auto s = p.only({"name", "dim", "input"}); !s)
    return s.error();
  auto n = j.find("name");
  if (n == j.end() || !n->is_string() || !valid_model_name(n->get<std::string>()))
    return p.bad("'name' must name a registered series model (letters, digits, '_', '-', '.')");
  const auto name = n->get<std::string>();
  const auto root = series_models_dir();
  if (root.empty())
    return std::unique_ptr<op>(new series_model_op(name, nullptr, "this node serves no series models"));
  // Loaded once per compile (a few hundred KB); a missing model leaves the
  // pipeline listed but unavailable, saying why.
  auto m = load(fs::path(root) / name);
  return std::unique_ptr<op>(new series_model_op(name, m ? *m : nullptr,
                                                 m ? "" : m.error().message));
}

} // namespace rookery::pipe

#include "trainers/timeseries_trainer.hpp"

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "datasets/series.hpp"
#include "models/minirocket.hpp"
#include "models/repository.hpp"
#include "models/series_nets.hpp"
#include "trainers/blocks.hpp"
#include "trainers/spec.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace rookery::train {

namespace {

struct model_choice {
  std::string arch = "inception_time"; // inception_time | lstm | gru | minirocket
  json options = json::object();
  int64_t rocket_features = 9996;
  std::string pretrained_dir; // fine_tune: a registered series model's directory
};

/// (N, C, L) float of encoded items.
result<torch::Tensor> encode_all(const series_block& b, const std::vector<data::series_item>& items) {
  auto out = torch::empty({static_cast<int64_t>(items.size()), b.channels, b.length});
  float* p = out.data_ptr<float>();
  const int64_t per = b.channels * b.length;
  for (size_t i = 0; i < items.size(); ++i) {
    auto e = b.encode(items[i]);
    if (!e)
      return e.error();
    std::copy(e->begin(), e->end(), p + static_cast<int64_t>(i) * per);
  }
  return out;
}

class TimeseriesTrainer : public Trainer {
public:
  TimeseriesTrainer(hyper_params h, const json& spec, data::dataset_info ds, series_task task,
                    model_choice mc)
    : Trainer(std::move(h), spec), ds_(std::move(ds)), task_(std::move(task)), mc_(std::move(mc)) {}

  std::string kind() const override { return "timeseries"; }
  bool forecasting() const { return task_.target.block == "continuous"; }
  bool rocket() const { return mc_.arch == "minirocket"; }

  status setup() override {
    auto set = data::load_series(ds_, hyper_.limit_train, hyper_.limit_test);
    if (!set)
      return set.error();
    if (forecasting()) {
      if (auto st = make_windows(*set); !st)
        return st;
    } else {
      if (set->train_x.size() < 2 || set->test_x.empty())
        return fail(errc::bad_request, "data set '" + ds_.name + "' needs at least 2 training and "
                                         "1 test series");
      task_.input.fit_to(set->train_x);
      auto xt = encode_all(task_.input, set->train_x);
      if (!xt)
        return xt.error();
      auto xv = encode_all(task_.input, set->test_x);
      if (!xv)
        return xv.error();
      train_x_ = *xt;
      test_x_ = *xv;
      train_y_ = torch::tensor(set->train_y, torch::kLong);
      test_y_ = torch::tensor(set->test_y, torch::kLong);
      outputs_ = static_cast<int64_t>(task_.target.classes.size());
    }
    if (rocket()) {
      if (auto st = setup_rocket(); !st)
        return st;
    } else {
      auto o = series::net_options::from_json(mc_.options, mc_.arch);
      if (!o)
        return o.error();
      o->in_channels = task_.input.channels;
      o->outputs = outputs_;
      if (!mc_.pretrained_dir.empty()) {
        if (auto st = start_from_pretrained(*o); !st)
          return st;
      } else {
        net_ = series::SeriesNet(*o);
      }
      net_->to(device());
      opt_ = make_optimizer(net_->parameters(), hyper_);
    }
    train_x_ = train_x_.to(device());
    test_x_ = test_x_.to(device());
    train_y_ = train_y_.to(device());
    test_y_ = test_y_.to(device());
    return {};
  }

  int64_t steps_per_epoch() const override {
    auto n = train_x_.size(0), bs = hyper_.batch_size;
    return n / bs + (n % bs >= 2 ? 1 : 0); // a last batch of one would upset batch norm
  }

  void train_mode() override {
    if (net_)
      net_->train();
    if (head_)
      head_->train();
  }

  void set_frozen(bool frozen) override {
    if (net_)
      net_->freeze_body(frozen);
  }

  metrics train_step(int64_t epoch, int64_t index) override {
    if (epoch != perm_epoch_) {
      perm_ = epoch_permutation(train_x_.size(0), epoch).to(device());
      perm_epoch_ = epoch;
    }
    const auto bs = hyper_.batch_size;
    auto idx = perm_.slice(0, index * bs, std::min((index + 1) * bs, train_x_.size(0)));
    auto x = train_x_.index_select(0, idx);
    auto y = train_y_.index_select(0, idx);
    opt_->zero_grad();
    auto out = outputs_of(x);
    metrics m;
    torch::Tensor loss;
    if (forecasting()) {
      loss = torch::mse_loss(out, y);
    } else {
      loss = torch::nn::functional::cross_entropy(out, y);
      m["acc"] = out.argmax(1).eq(y).to(torch::kFloat64).mean().item<double>();
    }
    loss.backward();
    double gn = clip_and_step(*opt_, params());
    m["loss"] = loss.item<double>();
    if (hyper_.clip_grad_norm > 0)
      m["grad_norm"] = gn;
    return m;
  }

  metrics validate() override {
    if (net_)
      net_->eval();
    if (head_)
      head_->eval();
    const int64_t n = test_x_.size(0);
    if (n == 0)
      return {};
    std::vector<torch::Tensor> outs;
    for (int64_t i = 0; i < n; i += 256) {
      if (cancel_requested())
        return {};
      outs.push_back(outputs_of(test_x_.slice(0, i, std::min(i + 256, n))));
    }
    auto out = torch::cat(outs);
    if (!forecasting()) {
      auto loss = torch::nn::functional::cross_entropy(out, test_y_).item<double>();
      auto acc = out.argmax(1).eq(test_y_).to(torch::kFloat64).mean().item<double>();
      return {{"val_loss", loss}, {"val_acc", acc}};
    }
    // Back to the series' units for MAE and MASE.
    auto loss = torch::mse_loss(out, test_y_).item<double>();
    auto pred = out.to(torch::kCPU, torch::kFloat64) * task_.target.std + task_.target.mean;
    auto truth = test_y_.to(torch::kCPU, torch::kFloat64) * task_.target.std + task_.target.mean;
    double mae = (pred - truth).abs().mean().item<double>();
    double naive_mae = (naive_ - truth).abs().mean().item<double>();
    last_mase_ = mae / mase_scale_;
    last_naive_mase_ = naive_mae / mase_scale_;
    return {{"val_loss", loss}, {"val_mae", mae}, {"val_mase", last_mase_},
            {"val_mase_naive", last_naive_mase_}};
  }

  std::map<std::string, std::shared_ptr<torch::nn::Module>> modules() override {
    if (rocket())
      return {{"head", head_.ptr()}};
    return {{"model", net_.ptr()}};
  }
  std::map<std::string, torch::optim::Optimizer*> optimizers() override {
    return {{"opt", opt_.get()}};
  }

  std::string result_extra() const override {
    json out = json::object();
    if (!pretrained_from_.empty())
      out["fine_tuned_from"] = pretrained_from_;
    if (forecasting() && last_mase_ >= 0)
      out["forecast"] = {{"horizon", task_.target.horizon},
                         {"season", season_},
                         {"mase", last_mase_},
                         {"mase_seasonal_naive", last_naive_mase_}};
    return out.empty() ? std::string() : out.dump();
  }

  result<exported_model> export_model(const std::string& dir) override {
    exported_model e;
    e.what = serves::series_embedding;
    e.arch = mc_.arch;
    e.weights_path = (fs::path(dir) / "model.pt").string();
    json cfg{{"arch", mc_.arch},
             {"input", json::parse(task_.input.to_json())},
             {"target", {{"block", task_.target.block}}},
             {"weights", "model.pt"}};
    if (rocket()) {
      head_->eval();
      torch::save(head_, e.weights_path);
      cfg["minirocket"] = json::parse(rocket_params_.to_json());
      cfg["outputs"] = outputs_;
      e.dim = static_cast<uint32_t>(rocket_params_.num_features());
    } else {
      net_->eval();
      torch::save(net_, e.weights_path);
      cfg["options"] = json::parse(net_->options().to_json());
      e.dim = static_cast<uint32_t>(net_->options().feature_dim());
    }
    if (forecasting())
      cfg["target"].update({{"horizon", task_.target.horizon}, {"column", target_column_},
                            {"mean", task_.target.mean}, {"std", task_.target.std}});
    else
      cfg["target"]["classes"] = task_.target.classes;
    cfg["dim"] = e.dim;
    e.options_json = cfg.value("options", json::object()).dump();
    e.preprocess_json = task_.input.to_json();
    std::ofstream(fs::path(dir) / "series_model.json") << cfg.dump(2) << '\n';
    return e;
  }

private:
  std::vector<torch::Tensor> params() {
    return rocket() ? head_->parameters() : net_->parameters();
  }

  torch::Tensor outputs_of(const torch::Tensor& x) {
    return rocket() ? head_->forward(x) : net_->forward(x);
  }

  /// fine_tune: the body of a registered series model (its architecture and
  /// options win over the spec's), a new head for this task's outputs. The
  /// task keeps its own input block (statistics of its own training split).
  status start_from_pretrained(series::net_options o) {
    const fs::path dir = mc_.pretrained_dir;
    auto cfg = json::parse(std::ifstream(dir / "series_model.json"), nullptr, false);
    if (!cfg.is_object() || cfg.value("arch", "") == "minirocket")
      return fail(errc::bad_request, "model.pretrained: '" + dir.filename().string()
                                       + "' is not a registered series network");
    auto po = series::net_options::from_json(cfg.value("options", json::object()), cfg.value("arch", ""));
    if (!po)
      return po.error();
    if (po->arch != mc_.arch)
      return fail(errc::bad_request, "model.pretrained: '" + dir.filename().string() + "' is a "
                                       + po->arch + ", not a " + mc_.arch);
    if (po->in_channels != o.in_channels)
      return fail(errc::bad_request, "model.pretrained: '" + dir.filename().string() + "' takes "
                                       + std::to_string(po->in_channels) + " channel(s); data set '"
                                       + ds_.name + "' has " + std::to_string(o.in_channels));
    series::SeriesNet old(*po);
    torch::load(old, (dir / cfg.value("weights", "model.pt")).string());
    auto fresh = *po;
    fresh.outputs = o.outputs;
    net_ = series::SeriesNet(fresh);
    torch::NoGradGuard no_grad;
    auto src = old->named_parameters(), src_buffers = old->named_buffers();
    for (auto& item : net_->named_parameters())
      if (item.key().find("head") == std::string::npos)
        item.value().copy_(src[item.key()]);
    for (auto& item : net_->named_buffers())
      if (auto* b = src_buffers.find(item.key()))
        item.value().copy_(*b);
    pretrained_from_ = dir.filename().string();
    return {};
  }

  /// Forecasting windows: inputs of task.input.length points (every channel),
  /// targets the next horizon points of the target channel; the last
  /// max(2 x horizon, 20%) points are held out as the validation targets.
  status make_windows(const data::series_set& set) {
    const auto& s = set.series;
    const int64_t T = s.empty() ? 0 : static_cast<int64_t>(s[0].size());
    const int64_t L = task_.input.length, H = task_.target.horizon;
    int64_t tc = 0;
    if (!task_.target.column.empty())
      tc = std::find(set.columns.begin(), set.columns.end(), task_.target.column) - set.columns.begin();
    if (tc >= static_cast<int64_t>(s.size()))
      return fail(errc::bad_request, "task.target.column '" + task_.target.column + "' is not in '"
                                       + ds_.name + "'");
    target_column_ = set.columns.empty() ? "" : set.columns[static_cast<size_t>(tc)];
    season_ = set.season;
    const int64_t held = std::max<int64_t>(2 * H, static_cast<int64_t>(std::llround(0.2 * static_cast<double>(T))));
    const int64_t t_train = T - held;
    if (t_train < L + H + 1)
      return fail(errc::bad_request, "data set '" + ds_.name + "' (" + std::to_string(T)
                                       + " points) is too short for windows of "
                                       + std::to_string(L) + " + " + std::to_string(H));
    // The input block's statistics and the target's, on the training part only.
    data::series_item head;
    for (auto& ch : s)
      head.emplace_back(ch.begin(), ch.begin() + t_train);
    task_.input.fit_to({head});
    const auto& y = s[static_cast<size_t>(tc)];
    double m = 0, q = 0;
    for (int64_t t = 0; t < t_train; ++t)
      m += y[static_cast<size_t>(t)];
    m /= static_cast<double>(t_train);
    for (int64_t t = 0; t < t_train; ++t)
      q += (y[static_cast<size_t>(t)] - m) * (y[static_cast<size_t>(t)] - m);
    task_.target.mean = task_.target.standardize ? m : 0;
    task_.target.std = task_.target.standardize ? std::max(1e-12, std::sqrt(q / static_cast<double>(t_train))) : 1;
    // MASE's scale: the in-sample seasonal-naive MAE (m = 1 when the season
    // does not fit twice into the training part).
    int64_t period = season_ > 0 && 2 * season_ < t_train ? season_ : 1;
    double scale = 0;
    for (int64_t t = period; t < t_train; ++t)
      scale += std::fabs(y[static_cast<size_t>(t)] - y[static_cast<size_t>(t - period)]);
    mase_scale_ = std::max(1e-12, scale / static_cast<double>(t_train - period));

    auto window = [&](int64_t origin, std::vector<data::series_item>& xs, std::vector<float>& ys,
                      std::vector<double>* naive) {
      data::series_item in;
      for (auto& ch : s)
        in.emplace_back(ch.begin() + (origin - L), ch.begin() + origin);
      xs.push_back(std::move(in));
      for (int64_t h = 0; h < H; ++h) {
        ys.push_back(static_cast<float>((y[static_cast<size_t>(origin + h)] - task_.target.mean) / task_.target.std));
        if (naive) {
          // Seasonal naive: the value one (or more) whole periods back, known at the origin.
          int64_t back = period * ((h / period) + 1);
          naive->push_back(y[static_cast<size_t>(origin + h - back)]);
        }
      }
    };
    std::vector<data::series_item> xt, xv;
    std::vector<float> yt, yv;
    std::vector<double> naive;
    for (int64_t o = L; o + H <= t_train; ++o)
      window(o, xt, yt, nullptr);
    for (int64_t o = std::max(L, t_train); o + H <= T; ++o)
      window(o, xv, yv, &naive);
    auto a = encode_all(task_.input, xt);
    if (!a)
      return a.error();
    auto b = encode_all(task_.input, xv);
    if (!b)
      return b.error();
    train_x_ = *a;
    test_x_ = *b;
    train_y_ = torch::tensor(yt).view({-1, H});
    test_y_ = torch::tensor(yv).view({-1, H});
    naive_ = torch::tensor(naive, torch::kFloat64).view({-1, H});
    outputs_ = H;
    return {};
  }

  /// MiniRocket: fit on the training series (each standardised as the block
  /// says), transform both splits, standardise the features, a linear head.
  status setup_rocket() {
    if (task_.input.channels != 1)
      return fail(errc::bad_request, "model 'minirocket' is univariate; data set '" + ds_.name
                                       + "' has " + std::to_string(task_.input.channels) + " channels");
    auto rows = [](const torch::Tensor& x) {
      std::vector<std::vector<double>> out;
      auto c = x.to(torch::kCPU, torch::kFloat64).contiguous();
      const int64_t n = c.size(0), l = c.size(2);
      const double* p = c.data_ptr<double>();
      for (int64_t i = 0; i < n; ++i)
        out.emplace_back(p + i * l, p + (i + 1) * l);
      return out;
    };
    auto train = rows(train_x_), test = rows(test_x_);
    auto p = minirocket::fit(train, mc_.rocket_features, hyper_.seed);
    if (!p)
      return p.error();
    rocket_params_ = std::move(*p);
    auto transform = [&](const std::vector<std::vector<double>>& xs) -> result<torch::Tensor> {
      const auto f = static_cast<int64_t>(rocket_params_.num_features());
      auto out = torch::empty({static_cast<int64_t>(xs.size()), f});
      for (size_t i = 0; i < xs.size(); ++i) {
        if (cancel_requested())
          return fail(errc::unavailable, "cancelled");
        auto v = minirocket::transform(rocket_params_, xs[i]);
        if (!v)
          return v.error();
        std::copy(v->begin(), v->end(), out.data_ptr<float>() + static_cast<int64_t>(i) * f);
      }
      return out;
    };
    auto ft = transform(train);
    if (!ft)
      return ft.error();
    auto fv = transform(test);
    if (!fv)
      return fv.error();
    head_ = series::RocketHead(ft->size(1), outputs_);
    head_->mean.copy_(ft->mean(0));
    head_->std.copy_(ft->std(0).clamp_min(1e-6));
    head_->to(device());
    train_x_ = head_->standardize(ft->to(device())).detach();
    test_x_ = head_->standardize(fv->to(device())).detach();
    opt_ = make_optimizer(head_->parameters(), hyper_);
    return {};
  }

  data::dataset_info ds_;
  series_task task_;
  model_choice mc_;
  torch::Tensor train_x_, test_x_, train_y_, test_y_, naive_;
  int64_t outputs_ = 0, season_ = 1;
  double mase_scale_ = 1, last_mase_ = -1, last_naive_mase_ = -1;
  std::string target_column_, pretrained_from_;
  series::SeriesNet net_{nullptr};
  series::RocketHead head_{nullptr};
  minirocket::params rocket_params_;
  std::unique_ptr<torch::optim::Optimizer> opt_;
  torch::Tensor perm_;
  int64_t perm_epoch_ = -1;
};

} // namespace

result<std::unique_ptr<Trainer>> make_timeseries_trainer(const json& spec,
                                                         const data::dataset_info& ds,
                                                         const data::dataset_paths& paths) {
  auto task = parse_series_task(spec, ds);
  if (!task)
    return task.error();
  auto hyper = spec_object(spec, "hyper");
  if (!hyper)
    return hyper.error();
  auto h = parse_hyper(**hyper);
  if (!h)
    return h.error();
  model_choice mc;
  std::string pretrained;
  if (auto st = read_model_choice(spec, mc.arch, mc.options, pretrained); !st)
    return st.error();
  if (!pretrained.empty()) {
    // A series model a time-series job registered (POST /v1/jobs/{id}/register).
    std::error_code ec;
    fs::path dir = fs::path(paths.data_dir) / "series-models" / pretrained;
    if (!valid_model_name(pretrained) || !fs::exists(dir / "series_model.json", ec))
      return fail(errc::not_found, "model.pretrained: no registered series model '" + pretrained + "'");
    if (mc.arch == "minirocket")
      return fail(errc::bad_request, "model.pretrained: minirocket has no trained body to fine-tune");
    mc.pretrained_dir = dir.string();
  }
  if (mc.arch == "minirocket") {
    spec_reader r(mc.options, "model.options");
    r.integer("features", mc.rocket_features, 84, 50000);
    if (auto st = r.done(); !st)
      return st.error();
    if (ds.item_shape.size() == 2 && ds.item_shape[0] > 1)
      return fail(errc::bad_request, "model 'minirocket' is univariate; data set '" + ds.name
                                       + "' has " + std::to_string(ds.item_shape[0]) + " channels");
  } else if (auto o = series::net_options::from_json(mc.options, mc.arch); !o) {
    return fail(errc::bad_request, o.error().message
                                     + (mc.arch == "inception_time" || mc.arch == "lstm" || mc.arch == "gru"
                                          ? "" : " or minirocket"));
  }
  return std::unique_ptr<Trainer>(
    std::make_unique<TimeseriesTrainer>(std::move(*h), spec, ds, std::move(*task), std::move(mc)));
}

} // namespace rookery::train

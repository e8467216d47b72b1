// The training loop (fit) and what every trainer shares: hyper-parameter
// parsing, LR schedules, gradient clipping, checkpoints, the metric history.
#include "trainers/trainer.hpp"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "trainers/spec.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace rookery::train {

// -- hyper-parameters ------------------------------------------------------------

result<hyper_params> parse_hyper(const json& j) {
  hyper_params h;
  if (j.is_null())
    return h;
  if (!j.is_object())
    return fail(errc::bad_request, "'hyper' must be an object");
  constexpr int64_t big = std::numeric_limits<int64_t>::max();
  spec_reader r(j, "hyper");
  r.integer("epochs", h.epochs, 1, 10000)
    .integer("batch_size", h.batch_size, 1, 65536)
    .number("lr", h.lr, 0, 10, /*lo_open=*/true)
    .choice("optimizer", h.optimizer, {"adam", "adamw", "sgd"})
    .number("weight_decay", h.weight_decay, 0, 1e6)
    .number("momentum", h.momentum, 0, 1)
    .choice("schedule", h.schedule, {"none", "step", "cosine", "onecycle"})
    .integer("step_epochs", h.step_epochs, 1, 10000)
    .number("gamma", h.gamma, 0, 1, /*lo_open=*/true)
    .number("min_lr_factor", h.min_lr_factor, 0, 1)
    .number("warmup_frac", h.warmup_frac, 0, 1, false, /*hi_open=*/true)
    .number("pct_start", h.pct_start, 0, 1, true, true)
    .number("div_factor", h.div_factor, 1, 1e12)
    .number("final_div_factor", h.final_div_factor, 1, 1e12)
    .number("clip_grad_norm", h.clip_grad_norm, 0, 1e12)
    .integer("checkpoint_every", h.checkpoint_every, 0, big)
    .integer("keep_checkpoints", h.keep_checkpoints, 1, 1000)
    .integer("early_stopping_patience", h.early_stopping_patience, 0, 10000)
    .string("monitor", h.monitor)
    .choice("monitor_mode", h.monitor_mode, {"min", "max"})
    .number("min_delta", h.min_delta, 0, 1e12)
    .boolean("stop_on_nan", h.stop_on_nan)
    .integer("seed", h.seed, uint64_t{0}, std::numeric_limits<uint64_t>::max())
    .integer("limit_train", h.limit_train, 0, big)
    .integer("limit_test", h.limit_test, 0, big)
    .integer("log_every", h.log_every, 1, big)
    .integer("max_steps", h.max_steps, 0, big)
    .integer("artifact_every", h.artifact_every, 0, big)
    .boolean("lr_find", h.lr_find)
    .number("lr_find_start", h.lr_find_start, 0, 10, true)
    .number("lr_find_end", h.lr_find_end, 0, 100, true)
    .integer("lr_find_steps", h.lr_find_steps, 5, 100000)
    .integer("freeze_epochs", h.freeze_epochs, 0, 10000);
  r.check(h.lr_find_start < h.lr_find_end, "lr_find_end", "must be above lr_find_start");
  if (auto st = r.done(); !st)
    return st.error();
  return h;
}

double scheduled_lr(const hyper_params& h, int64_t step, int64_t total, int64_t steps_per_epoch) {
  constexpr double pi = 3.14159265358979323846;
  total = std::max<int64_t>(1, total);
  step = std::clamp<int64_t>(step, 0, total - 1);
  if (h.schedule == "step") {
    auto epoch = step / std::max<int64_t>(1, steps_per_epoch);
    return h.lr * std::pow(h.gamma, static_cast<double>(epoch / h.step_epochs));
  }
  if (h.schedule == "cosine") {
    auto warm = static_cast<int64_t>(std::llround(h.warmup_frac * static_cast<double>(total)));
    if (step < warm)
      return h.lr * static_cast<double>(step + 1) / static_cast<double>(warm);
    double p = static_cast<double>(step - warm) / static_cast<double>(std::max<int64_t>(1, total - warm));
    double lo = h.lr * h.min_lr_factor;
    return lo + (h.lr - lo) * 0.5 * (1 + std::cos(pi * p));
  }
  if (h.schedule == "onecycle") {
    double start = h.lr / h.div_factor;
    double end = start / h.final_div_factor;
    double up = std::max(1.0, h.pct_start * static_cast<double>(total));
    double s = static_cast<double>(step);
    auto anneal = [&](double from, double to, double p) {
      return to + (from - to) * 0.5 * (1 + std::cos(pi * std::clamp(p, 0.0, 1.0)));
    };
    if (s < up)
      return anneal(start, h.lr, s / up);
    return anneal(h.lr, end, (s - up) / std::max(1.0, static_cast<double>(total) - up));
  }
  return h.lr;
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(std::vector<torch::Tensor> params,
                                                        const hyper_params& h, double lr) {
  if (lr <= 0)
    lr = h.lr;
  if (h.optimizer == "sgd")
    return std::make_unique<torch::optim::SGD>(
      std::move(params),
      torch::optim::SGDOptions(lr).momentum(h.momentum).weight_decay(h.weight_decay).nesterov(h.momentum > 0));
  if (h.optimizer == "adamw")
    return std::make_unique<torch::optim::AdamW>(
      std::move(params), torch::optim::AdamWOptions(lr).weight_decay(h.weight_decay));
  return std::make_unique<torch::optim::Adam>(
    std::move(params), torch::optim::AdamOptions(lr).weight_decay(h.weight_decay));
}

// -- Trainer -----------------------------------------------------------------------

Trainer::Trainer(hyper_params h, const json& spec)
  : hyper_(std::move(h)), spec_(std::make_shared<json>(spec)) {}

const json& Trainer::spec() const {
  return *spec_;
}

const json& Trainer::hyper_json() const {
  static const json empty = json::object();
  auto i = spec_->find("hyper");
  return i != spec_->end() && i->is_object() ? *i : empty;
}

double Trainer::clip_and_step(torch::optim::Optimizer& opt, const std::vector<torch::Tensor>& params) {
  double norm = 0;
  if (hyper_.clip_grad_norm > 0)
    norm = torch::nn::utils::clip_grad_norm_(params, hyper_.clip_grad_norm);
  opt.step();
  return norm;
}

torch::Tensor Trainer::epoch_permutation(int64_t n, int64_t epoch) const {
  auto gen = at::detail::createCPUGenerator(hyper_.seed * 1000003ULL + static_cast<uint64_t>(epoch) + 1);
  return torch::randperm(n, gen, torch::kLong);
}

// -- checkpoints ----------------------------------------------------------------------

namespace {

torch::Tensor scalar_d(double v) {
  return torch::tensor({v}, torch::kFloat64);
}

double read_d(torch::serialize::InputArchive& a, const char* key) {
  torch::Tensor t;
  a.read(key, t);
  return t.item<double>();
}

void save_checkpoint(Trainer& t, const loop_state& ls, const std::string& path) {
  torch::serialize::OutputArchive root;
  for (auto& [name, m] : t.modules()) {
    torch::serialize::OutputArchive sub;
    m->save(sub);
    root.write("module." + name, sub);
  }
  for (auto& [name, o] : t.optimizers()) {
    torch::serialize::OutputArchive sub;
    o->save(sub);
    root.write("optim." + name, sub);
  }
  root.write("loop.epoch", scalar_d(static_cast<double>(ls.epoch)));
  root.write("loop.index", scalar_d(static_cast<double>(ls.index)));
  root.write("loop.step", scalar_d(static_cast<double>(ls.step)));
  root.write("loop.elapsed_s", scalar_d(ls.elapsed_s));
  root.write("loop.best", scalar_d(ls.best));
  root.write("loop.has_best", scalar_d(ls.has_best ? 1 : 0));
  root.write("loop.bad_epochs", scalar_d(static_cast<double>(ls.bad_epochs)));
  {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    root.write("loop.rng", gen.get_state());
  }
  fs::create_directories(fs::path(path).parent_path());
  auto tmp = path + ".tmp";
  root.save_to(tmp);
  fs::rename(tmp, path); // atomic: a crash never leaves half a checkpoint
}

void load_checkpoint(Trainer& t, loop_state& ls, const std::string& path) {
  torch::serialize::InputArchive root;
  root.load_from(path, t.device());
  for (auto& [name, m] : t.modules()) {
    torch::serialize::InputArchive sub;
    root.read("module." + name, sub);
    m->load(sub);
  }
  for (auto& [name, o] : t.optimizers()) {
    torch::serialize::InputArchive sub;
    root.read("optim." + name, sub);
    o->load(sub);
  }
  ls.epoch = static_cast<int64_t>(read_d(root, "loop.epoch"));
  ls.index = static_cast<int64_t>(read_d(root, "loop.index"));
  ls.step = static_cast<int64_t>(read_d(root, "loop.step"));
  ls.elapsed_s = read_d(root, "loop.elapsed_s");
  ls.best = read_d(root, "loop.best");
  ls.has_best = read_d(root, "loop.has_best") != 0;
  ls.bad_epochs = static_cast<int64_t>(read_d(root, "loop.bad_epochs"));
  torch::Tensor rng;
  root.read("loop.rng", rng);
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(rng);
}

json point_json(const metric_point& p) {
  return json{{"step", p.step}, {"epoch", p.epoch}, {"time_s", p.time_s},
              {"phase", p.phase}, {"values", p.values}};
}

metric_point point_from_json(const json& j) {
  metric_point p;
  p.step = j.value("step", int64_t{0});
  p.epoch = j.value("epoch", int64_t{0});
  p.time_s = j.value("time_s", 0.0);
  p.phase = j.value("phase", "");
  if (auto v = j.find("values"); v != j.end() && v->is_object())
    for (auto& [k, x] : v->items())
      if (x.is_number())
        p.values[k] = x.get<double>();
  return p;
}

/// The history up to a checkpoint: later points are redone after a resume.
std::vector<metric_point> read_history(const std::string& path, const loop_state& ls) {
  std::vector<metric_point> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    auto j = json::parse(line, nullptr, false);
    if (!j.is_object())
      continue; // a line cut by a crash
    auto p = point_from_json(j);
    bool keep = p.phase == "val" ? p.epoch <= ls.epoch : p.step <= ls.step;
    if (keep)
      out.push_back(std::move(p));
  }
  return out;
}

void write_history(const std::string& path, const std::vector<metric_point>& h) {
  std::ofstream out(path + ".tmp", std::ios::trunc);
  for (auto& p : h)
    out << point_json(p).dump() << '\n';
  out.close();
  fs::rename(path + ".tmp", path);
}

void draw_curves(const std::vector<metric_point>& history, const std::string& dir,
                 std::vector<std::string>& written) {
  std::map<std::string, std::vector<std::pair<double, double>>> losses, others;
  for (auto& p : history)
    for (auto& [k, v] : p.values) {
      if (!std::isfinite(v) || k == "lr" || k == "grad_norm")
        continue;
      auto name = p.phase == "val" || k.rfind("val_", 0) == 0 ? k : "train_" + k;
      if (p.phase == "val" && k.rfind("val_", 0) != 0)
        name = "val_" + k;
      bool is_loss = k.find("loss") != std::string::npos || k.find("recon") != std::string::npos
                     || k == "kl";
      (is_loss ? losses : others)[name].emplace_back(static_cast<double>(p.step), v);
    }
  if (!losses.empty() && save_curves(losses, dir + "/curves_loss.png", "loss"))
    written.push_back("artifacts/curves_loss.png");
  if (!others.empty() && save_curves(others, dir + "/curves_metrics.png", "metrics"))
    written.push_back("artifacts/curves_metrics.png");
}

bool finite_metrics(const metrics& m, std::string& bad) {
  for (auto& [k, v] : m)
    if (!std::isfinite(v)) {
      bad = k;
      return false;
    }
  return true;
}

} // namespace


// -- callbacks ----------------------------------------------------------------------

namespace {

class artifacts_cb final : public fit_callback {
public:
  void on_step_end(fit_state& s) override {
    if (s.h.artifact_every > 0 && s.loop.step % s.h.artifact_every == 0)
      for (auto& a : s.trainer.step_artifacts(s.loop.step, s.art_dir))
        s.add_artifact("artifacts/" + a);
  }
  void on_epoch_end(fit_state& s) override {
    for (auto& a : s.trainer.epoch_artifacts(s.epoch + 1, s.art_dir))
      s.add_artifact("artifacts/" + a);
    std::vector<std::string> curves;
    draw_curves(s.history, s.art_dir, curves);
    for (auto& c : curves)
      s.add_artifact(c);
  }
};

/// Tracks the best value of the monitored metric (best.pt needs it even
/// without patience) and asks for a stop after `patience` epochs without
/// improvement.
class early_stopping_cb final : public fit_callback {
public:
  void on_epoch_end(fit_state& s) override {
    auto& ls = s.loop;
    const auto& h = s.h;
    s.improved = false;
    if (auto mv = s.val.find(h.monitor); mv != s.val.end() && std::isfinite(mv->second)) {
      double v = mv->second;
      s.improved = !ls.has_best || (h.monitor_mode == "min" ? v < ls.best - h.min_delta
                                                            : v > ls.best + h.min_delta);
      if (s.improved) {
        ls.best = v;
        ls.has_best = true;
        ls.bad_epochs = 0;
      } else {
        ++ls.bad_epochs;
      }
    }
    if (h.early_stopping_patience > 0 && ls.bad_epochs >= h.early_stopping_patience
        && s.epoch + 1 < s.epochs)
      s.stop = "early_stopped";
  }
};

class checkpoint_cb final : public fit_callback {
public:
  void on_fit_start(fit_state& s) override {
    last_ = (fs::path(s.ckpt_dir) / "last.pt").string();
    if (fs::exists(last_)) {
      load_checkpoint(s.trainer, s.loop, last_);
      s.summary.resumed = true;
      s.summary.resumed_from_step = s.loop.step;
    }
  }
  void on_step_end(fit_state& s) override {
    const auto& ls = s.loop;
    if (s.h.checkpoint_every > 0 && ls.step % s.h.checkpoint_every == 0
        && ls.index < s.steps_per_epoch)
      save(s, ls);
  }
  void on_epoch_end(fit_state& s) override {
    const auto& h = s.h;
    const fs::path ckpt_dir = s.ckpt_dir;
    loop_state at_end = s.loop;
    at_end.epoch = s.epoch + 1;
    at_end.index = 0;
    if (s.summary.outcome == "max_steps") { // a run cut short mid-epoch resumes nothing
      at_end.epoch = s.epoch;
      at_end.index = s.loop.index;
    }
    save(s, at_end);
    auto epoch_ckpt = ckpt_dir / ("epoch_" + std::to_string(s.epoch + 1) + ".pt");
    fs::copy_file(last_, epoch_ckpt, fs::copy_options::overwrite_existing);
    s.add_artifact("checkpoints/" + epoch_ckpt.filename().string());
    if (s.improved) {
      fs::copy_file(last_, ckpt_dir / "best.pt", fs::copy_options::overwrite_existing);
      s.add_artifact("checkpoints/best.pt");
    }
    auto old = s.epoch + 1 - h.keep_checkpoints;
    if (old >= 1) {
      std::error_code ec;
      auto name = "checkpoints/epoch_" + std::to_string(old) + ".pt";
      fs::remove(fs::path(s.ctx.dir) / name, ec);
      auto& a = s.summary.artifacts;
      a.erase(std::remove(a.begin(), a.end(), name), a.end());
    }
  }
  void on_fit_end(fit_state& s) override { s.add_artifact("checkpoints/last.pt"); }

private:
  void save(fit_state& s, loop_state at) {
    at.elapsed_s = s.elapsed();
    save_checkpoint(s.trainer, at, last_);
  }
  std::string last_;
};

class freeze_cb final : public fit_callback {
public:
  void on_epoch_start(fit_state& s) override { s.trainer.set_frozen(s.epoch < s.h.freeze_epochs); }
  void on_fit_end(fit_state& s) override { s.trainer.set_frozen(false); }
};

class lr_finder_cb final : public fit_callback {
public:
  void on_fit_start(fit_state& s) override {
    s.validate = false;
    s.export_model = false;
    s.allow_non_finite = true;
    s.total_steps = s.h.lr_find_steps;
    s.epochs = (s.h.lr_find_steps + s.steps_per_epoch - 1) / s.steps_per_epoch;
  }
  void before_step(fit_state& s) override {
    const auto& h = s.h;
    const double n = static_cast<double>(std::max<int64_t>(1, h.lr_find_steps - 1));
    s.lr = h.lr_find_start
           * std::pow(h.lr_find_end / h.lr_find_start, static_cast<double>(s.loop.step) / n);
  }
  void on_step_end(fit_state& s) override {
    auto l = s.step_metrics.find("loss");
    double loss = l == s.step_metrics.end() ? NAN : l->second;
    if (!std::isfinite(loss)) {
      s.stop = "lr_find";
      return;
    }
    // fastai's smoothing: an exponential average with bias correction.
    avg_ = beta * avg_ + (1 - beta) * loss;
    double smooth = avg_ / (1 - std::pow(beta, static_cast<double>(++n_)));
    lrs_.push_back(s.lr);
    losses_.push_back(smooth);
    best_ = n_ == 1 ? smooth : std::min(best_, smooth);
    if (smooth > 4 * best_ || s.loop.step >= s.h.lr_find_steps)
      s.stop = "lr_find";
  }
  void on_fit_end(fit_state& s) override {
    // Suggest the LR where the smoothed loss falls fastest against log(lr),
    // leaving out the first and last tenth (warm-up noise, divergence).
    const size_t n = losses_.size();
    if (n >= 3) {
      size_t lo = n / 10, hi = n - n / 10;
      double steepest = 0;
      size_t at = lo;
      for (size_t i = std::max<size_t>(lo, 1); i < hi; ++i) {
        double slope = (losses_[i] - losses_[i - 1]) / (std::log(lrs_[i]) - std::log(lrs_[i - 1]));
        if (slope < steepest) {
          steepest = slope;
          at = i;
        }
      }
      s.summary.suggested_lr = lrs_[at];
    } else if (n > 0) {
      s.summary.suggested_lr = lrs_[0];
    }
    std::map<std::string, std::vector<std::pair<double, double>>> curve;
    for (size_t i = 0; i < n; ++i)
      curve["smoothed loss by log10(lr)"].emplace_back(std::log10(lrs_[i]), losses_[i]);
    if (n > 0 && save_curves(curve, s.art_dir + "/lr_find.png", "LR range test"))
      s.add_artifact("artifacts/lr_find.png");
    json rows = json::array();
    for (size_t i = 0; i < n; ++i)
      rows.push_back({{"lr", lrs_[i]}, {"loss", losses_[i]}});
    std::ofstream(s.art_dir + "/lr_find.json")
      << json{{"suggested_lr", s.summary.suggested_lr ? json(*s.summary.suggested_lr) : json()},
              {"points", rows}}
           .dump();
    s.add_artifact("artifacts/lr_find.json");
    s.summary.outcome = "lr_find";
  }

private:
  static constexpr double beta = 0.98;
  double avg_ = 0, best_ = 0;
  int64_t n_ = 0;
  std::vector<double> lrs_, losses_;
};

} // namespace

std::unique_ptr<fit_callback> artifacts_callback() { return std::make_unique<artifacts_cb>(); }
std::unique_ptr<fit_callback> early_stopping_callback() { return std::make_unique<early_stopping_cb>(); }
std::unique_ptr<fit_callback> checkpoint_callback() { return std::make_unique<checkpoint_cb>(); }
std::unique_ptr<fit_callback> freeze_callback() { return std::make_unique<freeze_cb>(); }
std::unique_ptr<fit_callback> lr_finder_callback() { return std::make_unique<lr_finder_cb>(); }

callback_list default_callbacks(const hyper_params& h) {
  callback_list out;
  if (h.lr_find) {
    out.push_back(lr_finder_callback());
    return out;
  }
  if (h.freeze_epochs > 0)
    out.push_back(freeze_callback());
  // Order matters at epoch ends: artifacts, then the monitor (best value),
  // then the checkpoint that saves it and copies best.pt.
  out.push_back(artifacts_callback());
  out.push_back(early_stopping_callback());
  out.push_back(checkpoint_callback());
  return out;
}

const char* serves_name(serves s) {
  switch (s) {
  case serves::none: return "none";
  case serves::image_embedding: return "image_embedding";
  case serves::series_embedding: return "series_embedding";
  case serves::text_embedding: return "text_embedding";
  case serves::classifier: return "classifier";
  case serves::regressor: return "regressor";
  }
  return "none";
}

// -- fit ----------------------------------------------------------------------------

result<fit_summary> fit(Trainer& t, const run_context& ctx) {
  return fit(t, ctx, default_callbacks(t.hyper()));
}

result<fit_summary> fit(Trainer& t, const run_context& ctx, callback_list callbacks) {
  using clock = std::chrono::steady_clock;
  const auto& h = t.hyper();
  fit_summary sum;
  try {
    torch::manual_seed(h.seed);
    t.set_cancel_check(ctx.cancelled);
    t.set_device(ctx.device);
    if (auto st = t.setup(); !st)
      return st.error();
    const int64_t spe = t.steps_per_epoch();
    if (spe <= 0)
      return fail(errc::bad_request, "the dataset gives no training batches (too few items for "
                                     "batch_size " + std::to_string(h.batch_size) + "?)");
    const fs::path dir = ctx.dir;
    const auto art_dir = dir / "artifacts";
    const auto history_path = (dir / "metrics.jsonl").string();
    fs::create_directories(art_dir);
    fs::create_directories(dir / "checkpoints");

    fit_state s{t, ctx, h, sum};
    s.steps_per_epoch = spe;
    s.total_steps = spe * h.epochs;
    if (h.max_steps > 0)
      s.total_steps = std::min(s.total_steps, h.max_steps);
    s.epochs = h.epochs;
    s.art_dir = art_dir.string();
    s.ckpt_dir = (dir / "checkpoints").string();

    // Each optimizer's own base LR, so a schedule scales G and D (say) alike.
    std::map<std::string, std::vector<double>> base_lrs;
    for (auto& [name, o] : t.optimizers())
      for (auto& g : o->param_groups())
        base_lrs[name].push_back(g.options().get_lr());

    auto add_artifact = [&](const std::string& rel) {
      if (std::find(sum.artifacts.begin(), sum.artifacts.end(), rel) == sum.artifacts.end())
        sum.artifacts.push_back(rel);
      if (ctx.on_artifact)
        ctx.on_artifact(rel);
    };
    s.add_artifact = add_artifact;
    const auto session_start = clock::now();
    double elapsed_before = 0;
    s.elapsed = [&] {
      return elapsed_before + std::chrono::duration<double>(clock::now() - session_start).count();
    };

    for (auto& cb : callbacks)
      cb->on_fit_start(s);
    auto& ls = s.loop;
    elapsed_before = ls.elapsed_s;
    const int64_t step_before = ls.step;
    const int64_t total = s.total_steps;

    s.history = read_history(history_path, ls);
    write_history(history_path, s.history);
    std::ofstream hist_out(history_path, std::ios::app);
    auto emit_point = [&](metric_point p) {
      hist_out << point_json(p).dump() << '\n';
      hist_out.flush();
      if (ctx.on_metrics)
        ctx.on_metrics(p);
      s.history.push_back(std::move(p));
    };
    // A cancel ends the run where it stands; the last checkpoint resumes it.
    auto cancelled = [&](int64_t epoch) {
      if (!(ctx.cancelled && ctx.cancelled()))
        return false;
      sum.outcome = "cancelled";
      sum.steps = ls.step;
      sum.epochs_run = epoch;
      return true;
    };

    progress prog;
    prog.epochs = s.epochs;
    prog.total_steps = total;
    prog.step = ls.step;
    metrics sums;
    int64_t n_summed = 0;
    sum.outcome = "completed";
    bool done = ls.step >= total;

    for (int64_t epoch = ls.epoch; epoch < s.epochs && !done; ++epoch) {
      s.epoch = epoch;
      for (auto& cb : callbacks)
        cb->on_epoch_start(s);
      t.train_mode();
      prog.epoch = epoch + 1;
      for (int64_t i = ls.index; i < spe; ++i) {
        if (cancelled(epoch))
          return sum;
        s.lr = scheduled_lr(h, ls.step, total, spe);
        for (auto& cb : callbacks)
          cb->before_step(s);
        const double factor = s.lr / h.lr;
        for (auto& [name, o] : t.optimizers()) {
          auto& groups = o->param_groups();
          for (size_t g = 0; g < groups.size(); ++g)
            groups[g].options().set_lr(base_lrs[name][g] * factor);
        }
        s.step_metrics = t.train_step(epoch, i);
        const auto& m = s.step_metrics;
        ++ls.step;
        ls.index = i + 1;
        std::string bad;
        if (h.stop_on_nan && !s.allow_non_finite && !finite_metrics(m, bad))
          return fail(errc::unprocessable, "training diverged: '" + bad + "' is not finite at step "
                                             + std::to_string(ls.step)
                                             + " (try a lower lr or clip_grad_norm)");
        for (auto& [k, v] : m) {
          sums[k] += v;
          prog.latest[k] = v;
        }
        ++n_summed;
        prog.lr = s.lr;
        prog.step = ls.step;
        prog.elapsed_s = s.elapsed();
        if (auto done_now = ls.step - step_before; done_now > 0) {
          double per_step = std::chrono::duration<double>(clock::now() - session_start).count()
                            / static_cast<double>(done_now);
          prog.eta_s = per_step * static_cast<double>(total - ls.step);
        }
        if (ctx.on_progress)
          ctx.on_progress(prog);
        if (ls.step % h.log_every == 0 || i + 1 == spe || ls.step >= total) {
          metric_point p;
          p.step = ls.step;
          p.epoch = epoch + 1;
          p.time_s = prog.elapsed_s;
          p.phase = "train";
          for (auto& [k, v] : sums)
            p.values[k] = v / static_cast<double>(n_summed);
          p.values["lr"] = s.lr;
          sums.clear();
          n_summed = 0;
          emit_point(std::move(p));
        }
        for (auto& cb : callbacks)
          cb->on_step_end(s);
        if (ls.step >= total) {
          done = true;
          if (h.max_steps > 0 && ls.step >= h.max_steps && ls.step < spe * h.epochs && !h.lr_find)
            sum.outcome = "max_steps";
          break;
        }
        if (!s.stop.empty()) {
          done = true;
          break;
        }
      }
      // End of the epoch (or of the run): validate, then the callbacks.
      if (cancelled(epoch))
        return sum;
      s.val.clear();
      if (s.validate) {
        {
          torch::NoGradGuard no_grad;
          s.val = t.validate();
        }
        t.train_mode();
        if (cancelled(epoch)) // validation may have been cut short
          return sum;
        metric_point vp;
        vp.step = ls.step;
        vp.epoch = epoch + 1;
        vp.time_s = s.elapsed();
        vp.phase = "val";
        vp.values = s.val;
        for (auto& [k, v] : s.val)
          prog.latest[k] = v;
        prog.elapsed_s = vp.time_s;
        if (ctx.on_progress) // the latest values now include validation's
          ctx.on_progress(prog);
        emit_point(vp);
      }
      sum.epochs_run = epoch + 1;
      for (auto& cb : callbacks)
        cb->on_epoch_end(s);
      ls.epoch = epoch + 1;
      ls.index = 0;
      if (!s.stop.empty()) {
        if (s.stop != "lr_find")
          sum.outcome = s.stop;
        break;
      }
    }
    for (auto& cb : callbacks)
      cb->on_fit_end(s);
    add_artifact("metrics.jsonl");
    sum.steps = ls.step;
    sum.final_metrics = prog.latest;
    sum.best_monitor = ls.best;
    if (!s.export_model)
      return sum;
    auto model_dir = dir / "model";
    fs::create_directories(model_dir);
    auto exported = t.export_model(model_dir.string());
    if (exported) {
      sum.model = *exported;
      add_artifact("model/" + fs::path(exported->weights_path).filename().string());
    }
    // Anything else the trainer left in model/ (e.g. a generator's weights).
    for (auto& e : fs::directory_iterator(model_dir))
      if (e.is_regular_file())
        add_artifact("model/" + e.path().filename().string());
    return sum;
  } catch (const c10::Error& e) {
    std::string msg = e.what_without_backtrace();
    return fail(errc::internal, "training failed: " + msg.substr(0, msg.find('\n')));
  } catch (const std::exception& e) {
    return fail(errc::internal, std::string("training failed: ") + e.what());
  }
}

} // namespace rookery::train

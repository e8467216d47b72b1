// The training loop (fit) and what every trainer shares: hyper-parameter
// parsing, LR schedules, gradient clipping, checkpoints, the metric history.
#include "trainers/trainer.hpp"

#include <limits>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace rookery::train {

// -- hyper-parameters ------------------------------------------------------------

namespace {

/// Reads j[key] into out when present; false (and a message) on a wrong type.
template <class T>
bool read_key(const json& j, const char* key, T& out, std::string& err) {
  auto i = j.find(key);
  if (i == j.end() || i->is_null())
    return true;
  if constexpr (std::is_same_v<T, bool>) {
    if (!i->is_boolean()) {
      err = std::string("hyper.") + key + " must be true or false";
      return false;
    }
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!i->is_string()) {
      err = std::string("hyper.") + key + " must be a string";
      return false;
    }
  } else if constexpr (std::is_integral_v<T>) {
    if (!i->is_number_integer() && !(i->is_number_float() && std::floor(i->get<double>()) == i->get<double>())) {
      err = std::string("hyper.") + key + " must be an integer";
      return false;
    }
  } else {
    if (!i->is_number()) {
      err = std::string("hyper.") + key + " must be a number";
      return false;
    }
  }
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    // Exact integers are taken as they are when T holds them; an integral
    // float (1e3) only when it is small enough to be exact.
    constexpr auto lo = std::numeric_limits<T>::min();
    constexpr auto hi = std::numeric_limits<T>::max();
    auto out_of_range = [&] {
      err = std::string("hyper.") + key + " is out of range (" + std::to_string(lo) + " to "
            + std::to_string(hi) + ")";
      return false;
    };
    if (i->is_number_unsigned()) {
      auto v = i->get<uint64_t>();
      if (v > static_cast<uint64_t>(hi))
        return out_of_range();
      out = static_cast<T>(v);
    } else if (i->is_number_integer()) {
      auto v = i->get<int64_t>();
      if (v < static_cast<int64_t>(lo) || (v > 0 && static_cast<uint64_t>(v) > static_cast<uint64_t>(hi)))
        return out_of_range();
      out = static_cast<T>(v);
    } else {
      double v = i->get<double>();
      if (!(std::fabs(v) <= 9007199254740992.0) || v < static_cast<double>(lo)
          || v > static_cast<double>(hi))
        return out_of_range();
      out = static_cast<T>(v);
    }
  } else {
    out = i->get<T>();
  }
  return true;
}

} // namespace

result<hyper_params> parse_hyper(const json& j) {
  hyper_params h;
  if (j.is_null())
    return h;
  if (!j.is_object())
    return fail(errc::bad_request, "'hyper' must be an object");
  std::string err;
  bool ok = read_key(j, "epochs", h.epochs, err) && read_key(j, "batch_size", h.batch_size, err)
            && read_key(j, "lr", h.lr, err) && read_key(j, "optimizer", h.optimizer, err)
            && read_key(j, "weight_decay", h.weight_decay, err)
            && read_key(j, "momentum", h.momentum, err) && read_key(j, "schedule", h.schedule, err)
            && read_key(j, "step_epochs", h.step_epochs, err) && read_key(j, "gamma", h.gamma, err)
            && read_key(j, "min_lr_factor", h.min_lr_factor, err)
            && read_key(j, "warmup_frac", h.warmup_frac, err)
            && read_key(j, "pct_start", h.pct_start, err)
            && read_key(j, "div_factor", h.div_factor, err)
            && read_key(j, "final_div_factor", h.final_div_factor, err)
            && read_key(j, "clip_grad_norm", h.clip_grad_norm, err)
            && read_key(j, "checkpoint_every", h.checkpoint_every, err)
            && read_key(j, "keep_checkpoints", h.keep_checkpoints, err)
            && read_key(j, "early_stopping_patience", h.early_stopping_patience, err)
            && read_key(j, "monitor", h.monitor, err)
            && read_key(j, "monitor_mode", h.monitor_mode, err)
            && read_key(j, "min_delta", h.min_delta, err)
            && read_key(j, "stop_on_nan", h.stop_on_nan, err) && read_key(j, "seed", h.seed, err)
            && read_key(j, "limit_train", h.limit_train, err)
            && read_key(j, "limit_test", h.limit_test, err)
            && read_key(j, "log_every", h.log_every, err)
            && read_key(j, "max_steps", h.max_steps, err);
  if (!ok)
    return fail(errc::bad_request, err);
  auto bad = [](const std::string& what) { return fail(errc::bad_request, "hyper." + what); };
  if (h.epochs < 1 || h.epochs > 10000)
    return bad("epochs must be 1..10000");
  if (h.batch_size < 1 || h.batch_size > 65536)
    return bad("batch_size must be 1..65536");
  if (!(h.lr > 0) || h.lr > 10)
    return bad("lr must be in (0, 10]");
  if (h.optimizer != "adam" && h.optimizer != "adamw" && h.optimizer != "sgd")
    return bad("optimizer must be adam, adamw or sgd");
  if (h.weight_decay < 0)
    return bad("weight_decay must be >= 0");
  if (h.schedule != "none" && h.schedule != "step" && h.schedule != "cosine"
      && h.schedule != "onecycle")
    return bad("schedule must be none, step, cosine or onecycle");
  if (h.step_epochs < 1)
    return bad("step_epochs must be >= 1");
  if (!(h.gamma > 0) || h.gamma > 1)
    return bad("gamma must be in (0, 1]");
  if (h.min_lr_factor < 0 || h.min_lr_factor > 1)
    return bad("min_lr_factor must be in [0, 1]");
  if (h.warmup_frac < 0 || h.warmup_frac >= 1)
    return bad("warmup_frac must be in [0, 1)");
  if (!(h.pct_start > 0) || h.pct_start >= 1)
    return bad("pct_start must be in (0, 1)");
  if (!(h.div_factor >= 1) || !(h.final_div_factor >= 1))
    return bad("div_factor and final_div_factor must be >= 1");
  if (h.clip_grad_norm < 0)
    return bad("clip_grad_norm must be >= 0");
  if (h.checkpoint_every < 0)
    return bad("checkpoint_every must be >= 0");
  if (h.keep_checkpoints < 1)
    return bad("keep_checkpoints must be >= 1");
  if (h.early_stopping_patience < 0)
    return bad("early_stopping_patience must be >= 0");
  if (h.monitor_mode != "min" && h.monitor_mode != "max")
    return bad("monitor_mode must be min or max");
  if (h.limit_train < 0 || h.limit_test < 0 || h.max_steps < 0)
    return bad("limit_train, limit_test and max_steps must be >= 0");
  if (h.log_every < 1)
    return bad("log_every must be >= 1");
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

/// Where the loop stands; saved in every checkpoint.
struct loop_state {
  int64_t epoch = 0;      // 0-based epoch to run next / in progress
  int64_t index = 0;      // next batch of that epoch
  int64_t step = 0;       // global steps done
  double elapsed_s = 0;   // training time so far, over all resumes
  double best = 0;        // early stopping
  bool has_best = false;
  int64_t bad_epochs = 0;
};

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
  root.load_from(path);
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

// -- fit ----------------------------------------------------------------------------

result<fit_summary> fit(Trainer& t, const run_context& ctx) {
  using clock = std::chrono::steady_clock;
  const auto& h = t.hyper();
  fit_summary sum;
  try {
    torch::manual_seed(h.seed);
    t.set_cancel_check(ctx.cancelled);
    if (auto s = t.setup(); !s)
      return s.error();
    const int64_t spe = t.steps_per_epoch();
    if (spe <= 0)
      return fail(errc::bad_request, "the dataset gives no training batches (too few items for "
                                     "batch_size " + std::to_string(h.batch_size) + "?)");
    int64_t total = spe * h.epochs;
    if (h.max_steps > 0)
      total = std::min(total, h.max_steps);

    const fs::path dir = ctx.dir;
    const auto ckpt_dir = dir / "checkpoints";
    const auto art_dir = dir / "artifacts";
    const auto last = (ckpt_dir / "last.pt").string();
    const auto history_path = (dir / "metrics.jsonl").string();
    fs::create_directories(art_dir);

    // Each optimizer's own base LR, so a schedule scales G and D (say) alike.
    std::map<std::string, std::vector<double>> base_lrs;
    for (auto& [name, o] : t.optimizers())
      for (auto& g : o->param_groups())
        base_lrs[name].push_back(g.options().get_lr());

    loop_state ls;
    if (fs::exists(last)) {
      load_checkpoint(t, ls, last);
      sum.resumed = true;
      sum.resumed_from_step = ls.step;
    }
    auto history = read_history(history_path, ls);
    write_history(history_path, history);
    std::ofstream hist_out(history_path, std::ios::app);

    auto emit_point = [&](metric_point p) {
      hist_out << point_json(p).dump() << '\n';
      hist_out.flush();
      if (ctx.on_metrics)
        ctx.on_metrics(p);
      history.push_back(std::move(p));
    };
    auto add_artifact = [&](const std::string& rel) {
      if (std::find(sum.artifacts.begin(), sum.artifacts.end(), rel) == sum.artifacts.end())
        sum.artifacts.push_back(rel);
      if (ctx.on_artifact)
        ctx.on_artifact(rel);
    };

    const auto session_start = clock::now();
    const double elapsed_before = ls.elapsed_s;
    const int64_t step_before = ls.step;
    auto elapsed = [&] {
      return elapsed_before
             + std::chrono::duration<double>(clock::now() - session_start).count();
    };
    auto checkpoint = [&](const loop_state& at) {
      auto s = at;
      s.elapsed_s = elapsed();
      save_checkpoint(t, s, last);
    };

    progress prog;
    prog.epochs = h.epochs;
    prog.total_steps = total;
    prog.step = ls.step;
    metrics sums;
    int64_t n_summed = 0;
    sum.outcome = "completed";
    bool stop = ls.step >= total;

    for (int64_t epoch = ls.epoch; epoch < h.epochs && !stop; ++epoch) {
      t.train_mode();
      prog.epoch = epoch + 1;
      for (int64_t i = ls.index; i < spe; ++i) {
        if (ctx.cancelled && ctx.cancelled()) {
          sum.outcome = "cancelled";
          sum.steps = ls.step;
          sum.epochs_run = epoch;
          return sum;
        }
        double lr = scheduled_lr(h, ls.step, total, spe);
        double factor = lr / h.lr;
        for (auto& [name, o] : t.optimizers()) {
          auto& groups = o->param_groups();
          for (size_t g = 0; g < groups.size(); ++g)
            groups[g].options().set_lr(base_lrs[name][g] * factor);
        }
        auto m = t.train_step(epoch, i);
        ++ls.step;
        ls.index = i + 1;
        std::string bad;
        if (h.stop_on_nan && !finite_metrics(m, bad))
          return fail(errc::unprocessable, "training diverged: '" + bad + "' is not finite at step "
                                             + std::to_string(ls.step)
                                             + " (try a lower lr or clip_grad_norm)");
        for (auto& [k, v] : m) {
          sums[k] += v;
          prog.latest[k] = v;
        }
        ++n_summed;
        prog.lr = lr;
        prog.step = ls.step;
        prog.elapsed_s = elapsed();
        auto done_now = ls.step - step_before;
        if (done_now > 0) {
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
          p.values["lr"] = lr;
          sums.clear();
          n_summed = 0;
          emit_point(std::move(p));
        }
        if (h.checkpoint_every > 0 && ls.step % h.checkpoint_every == 0 && i + 1 < spe)
          checkpoint(ls);
        if (ls.step >= total) {
          stop = true;
          if (h.max_steps > 0 && ls.step >= h.max_steps && ls.step < spe * h.epochs)
            sum.outcome = "max_steps";
          break;
        }
      }
      // End of the epoch (or of the run): validate, artifacts, checkpoint.
      if (ctx.cancelled && ctx.cancelled()) {
        sum.outcome = "cancelled";
        sum.steps = ls.step;
        sum.epochs_run = epoch;
        return sum;
      }
      metrics val;
      {
        torch::NoGradGuard no_grad;
        val = t.validate();
      }
      t.train_mode();
      if (ctx.cancelled && ctx.cancelled()) { // validation may have been cut short
        sum.outcome = "cancelled";
        sum.steps = ls.step;
        sum.epochs_run = epoch;
        return sum;
      }
      metric_point vp;
      vp.step = ls.step;
      vp.epoch = epoch + 1;
      vp.time_s = elapsed();
      vp.phase = "val";
      vp.values = val;
      for (auto& [k, v] : val)
        prog.latest[k] = v;
      prog.elapsed_s = vp.time_s;
      if (ctx.on_progress) // the latest values now include validation's
        ctx.on_progress(prog);
      emit_point(vp);
      for (auto& a : t.epoch_artifacts(epoch + 1, art_dir.string()))
        add_artifact("artifacts/" + a);
      std::vector<std::string> curves;
      draw_curves(history, art_dir.string(), curves);
      for (auto& c : curves)
        add_artifact(c);
      sum.epochs_run = epoch + 1;

      // Early stopping on the monitored metric.
      bool improved = false;
      if (auto mv = val.find(h.monitor); mv != val.end() && std::isfinite(mv->second)) {
        double v = mv->second;
        improved = !ls.has_best || (h.monitor_mode == "min" ? v < ls.best - h.min_delta
                                                            : v > ls.best + h.min_delta);
        if (improved) {
          ls.best = v;
          ls.has_best = true;
          ls.bad_epochs = 0;
        } else {
          ++ls.bad_epochs;
        }
      }
      loop_state at_end = ls;
      at_end.epoch = epoch + 1;
      at_end.index = 0;
      if (stop && sum.outcome == "max_steps") {
        at_end.epoch = epoch; // a run cut short mid-epoch resumes nothing
        at_end.index = ls.index;
      }
      checkpoint(at_end);
      auto epoch_ckpt = ckpt_dir / ("epoch_" + std::to_string(epoch + 1) + ".pt");
      fs::copy_file(last, epoch_ckpt, fs::copy_options::overwrite_existing);
      add_artifact("checkpoints/" + epoch_ckpt.filename().string());
      if (improved) {
        fs::copy_file(last, ckpt_dir / "best.pt", fs::copy_options::overwrite_existing);
        add_artifact("checkpoints/best.pt");
      }
      auto old = epoch + 1 - h.keep_checkpoints;
      if (old >= 1) {
        std::error_code ec;
        fs::remove(ckpt_dir / ("epoch_" + std::to_string(old) + ".pt"), ec);
        sum.artifacts.erase(std::remove(sum.artifacts.begin(), sum.artifacts.end(),
                                        "checkpoints/epoch_" + std::to_string(old) + ".pt"),
                            sum.artifacts.end());
      }
      ls = at_end;
      ls.epoch = epoch + 1;
      ls.index = 0;
      if (h.early_stopping_patience > 0 && ls.bad_epochs >= h.early_stopping_patience
          && epoch + 1 < h.epochs) {
        sum.outcome = "early_stopped";
        break;
      }
    }
    add_artifact("checkpoints/last.pt");
    add_artifact("metrics.jsonl");
    sum.steps = ls.step;
    sum.final_metrics = prog.latest;
    sum.best_monitor = ls.best;
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

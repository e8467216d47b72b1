// A training job: the spec checked up front, then fit() in the job directory
// with events for the job manager.
#include "trainers/train_job.hpp"

#include <chrono>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "models/repository.hpp"
#include "trainers/trainer.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace rookery {

namespace {

json hyper_to_json(const train::hyper_params& h) {
  return json{{"epochs", h.epochs},
              {"batch_size", h.batch_size},
              {"lr", h.lr},
              {"optimizer", h.optimizer},
              {"weight_decay", h.weight_decay},
              {"momentum", h.momentum},
              {"schedule", h.schedule},
              {"step_epochs", h.step_epochs},
              {"gamma", h.gamma},
              {"min_lr_factor", h.min_lr_factor},
              {"warmup_frac", h.warmup_frac},
              {"pct_start", h.pct_start},
              {"div_factor", h.div_factor},
              {"final_div_factor", h.final_div_factor},
              {"clip_grad_norm", h.clip_grad_norm},
              {"checkpoint_every", h.checkpoint_every},
              {"keep_checkpoints", h.keep_checkpoints},
              {"early_stopping_patience", h.early_stopping_patience},
              {"monitor", h.monitor},
              {"monitor_mode", h.monitor_mode},
              {"min_delta", h.min_delta},
              {"stop_on_nan", h.stop_on_nan},
              {"seed", h.seed},
              {"limit_train", h.limit_train},
              {"limit_test", h.limit_test},
              {"log_every", h.log_every},
              {"max_steps", h.max_steps},
              {"artifact_every", h.artifact_every},
              {"lr_find", h.lr_find},
              {"lr_find_start", h.lr_find_start},
              {"lr_find_end", h.lr_find_end},
              {"lr_find_steps", h.lr_find_steps},
              {"freeze_epochs", h.freeze_epochs}};
}

json metrics_json(const train::metrics& m) {
  json j = json::object();
  for (auto& [k, v] : m)
    j[k] = std::isfinite(v) ? json(v) : json(nullptr);
  return j;
}

} // namespace

result<std::string> validate_train_spec(const std::string& spec_json, const train_env& env) {
  auto spec = json::parse(spec_json, nullptr, false);
  if (spec.is_discarded() || !spec.is_object())
    return fail(errc::bad_request, "the job spec must be a JSON object");
  auto t = train::make_trainer(spec, env.paths, env.user_id, env.is_admin);
  if (!t)
    return t.error();
  if (auto r = spec.find("register"); r != spec.end() && !r->is_null()) {
    if (!r->is_string() || !valid_model_name(r->get<std::string>()))
      return fail(errc::bad_request, "'register' must be a model name: 1-64 letters, digits, "
                                     "'_', '-', '.'");
  }
  // Defaults filled in, the trainer's own keys kept.
  auto hyper = spec.value("hyper", json::object());
  const auto defaults = hyper_to_json((*t)->hyper()); // named: items() must not dangle
  for (auto& [k, v] : defaults.items())
    hyper[k] = v;
  spec["hyper"] = hyper;
  return spec.dump();
}

result<std::string> run_train_job(const std::string& spec_json, const train_env& env,
                                  const std::string& job_dir, const std::atomic<bool>& cancel,
                                  train_event_fn on_event) {
  auto spec = json::parse(spec_json, nullptr, false);
  if (spec.is_discarded() || !spec.is_object())
    return fail(errc::bad_request, "the job spec must be a JSON object");
  auto t = train::make_trainer(spec, env.paths, env.user_id, env.is_admin);
  if (!t)
    return t.error();
  if (env.threads > 0)
    at::set_num_threads(env.threads);

  using clock = std::chrono::steady_clock;
  auto last_progress = clock::time_point{};
  train::run_context ctx;
  ctx.dir = job_dir;
  ctx.cancelled = [&cancel] { return cancel.load(std::memory_order_relaxed); };
  ctx.on_progress = [&](const train::progress& p) {
    // At most a few events a second: a GAN step takes milliseconds.
    auto now = clock::now();
    if (now - last_progress < std::chrono::milliseconds(250) && p.step < p.total_steps)
      return;
    last_progress = now;
    if (on_event)
      on_event("progress", json{{"epoch", p.epoch},
                                {"epochs", p.epochs},
                                {"step", p.step},
                                {"total_steps", p.total_steps},
                                {"elapsed_s", p.elapsed_s},
                                {"eta_s", p.eta_s < 0 ? json(nullptr) : json(p.eta_s)},
                                {"lr", p.lr},
                                {"metrics", metrics_json(p.latest)}}
                             .dump());
  };
  ctx.on_metrics = [&](const train::metric_point& p) {
    if (on_event)
      on_event("metrics", json{{"step", p.step},
                               {"epoch", p.epoch},
                               {"time_s", p.time_s},
                               {"phase", p.phase},
                               {"values", metrics_json(p.values)}}
                            .dump());
  };
  ctx.on_artifact = [&](const std::string& rel) {
    if (on_event)
      on_event("artifact", json{{"path", rel}}.dump());
  };
  auto r = train::fit(**t, ctx);
  if (!r)
    return r.error();
  json out{{"trainer", (*t)->kind()},
           {"outcome", r->outcome},
           {"epochs", r->epochs_run},
           {"steps", r->steps},
           {"resumed", r->resumed},
           {"resumed_from_step", r->resumed_from_step},
           {"metrics", metrics_json(r->final_metrics)},
           {"artifacts", r->artifacts}};
  if (r->suggested_lr)
    out["suggested_lr"] = *r->suggested_lr;
  if (auto extra = json::parse((*t)->result_extra(), nullptr, false); extra.is_object())
    for (auto& [k, v] : extra.items())
      out[k] = v;
  if (r->model) {
    auto& m = *r->model;
    out["model"] = json{{"serves", train::serves_name(m.what)},
                        {"arch", m.arch},
                        {"weights", fs::relative(m.weights_path, job_dir).string()},
                        {"options", json::parse(m.options_json, nullptr, false)},
                        {"preprocess", json::parse(m.preprocess_json, nullptr, false)},
                        {"dim", m.dim}};
  } else {
    out["model"] = nullptr;
  }
  return out.dump();
}

} // namespace rookery

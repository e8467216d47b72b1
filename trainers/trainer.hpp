// The training core: a Trainer base class (one subclass per kind of training:
// classifier, GAN, autoencoder, RNN) and fit(), the loop that drives it with
// callbacks in the style of fastai / Lightning: metrics, checkpoints (model and
// optimizer together, every N steps and at each epoch end), early stopping,
// LR schedules (step, cosine, one-cycle), gradient clipping, stop on NaN,
// progress with ETA, cancellation, and seeded, resumable runs.
//
// Determinism: every batch is a pure function of (seed, epoch, index in the
// epoch), the LR is a pure function of the global step, and checkpoints hold
// the RNG state, so a run resumed from a checkpoint continues exactly where
// the checkpoint was taken.
//
// Pulls in torch: only trainers/ sources and tests include it. Actor code uses
// trainers/train_job.hpp.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize/archive.h>
#include <torch/types.h>

#include "common/result.hpp"
#include "datasets/registry.hpp"

namespace rookery::train {

using metrics = std::map<std::string, double>;

/// Hyper-parameters every trainer understands (job spec "hyper"). Trainers
/// read their own extra keys from the same object (Trainer::hyper_json()).
struct hyper_params {
  int64_t epochs = 1;
  int64_t batch_size = 64;
  double lr = 1e-3;
  std::string optimizer = "adam"; // adam | adamw | sgd
  double weight_decay = 0;
  double momentum = 0.9;          // sgd
  // LR schedule, a function of the global step: none | step | cosine | onecycle
  std::string schedule = "none";
  int64_t step_epochs = 1;      // step: multiply by gamma every step_epochs epochs
  double gamma = 0.1;
  double min_lr_factor = 0;     // cosine: final lr = lr * min_lr_factor
  double warmup_frac = 0;       // cosine: linear warm-up over this share of the steps
  double pct_start = 0.3;       // onecycle: share of steps rising to lr
  double div_factor = 25;       // onecycle: initial lr = lr / div_factor
  double final_div_factor = 1e4; // onecycle: final lr = initial / final_div_factor
  double clip_grad_norm = 0;    // > 0: clip the global gradient norm
  int64_t checkpoint_every = 0; // > 0: checkpoint every N global steps (and always at epoch end)
  int64_t keep_checkpoints = 3; // epoch checkpoints kept (last.pt is always kept)
  int64_t early_stopping_patience = 0; // > 0: stop after this many epochs without improvement
  std::string monitor = "val_loss";    // metric watched by early stopping
  std::string monitor_mode = "min";    // min | max
  double min_delta = 0;
  bool stop_on_nan = true;
  uint64_t seed = 42;
  int64_t limit_train = 0; // subsets (tests, quick runs): 0 = all
  int64_t limit_test = 0;
  int64_t log_every = 10;  // steps between metric points in the history
  int64_t max_steps = 0;   // > 0: stop after this many global steps (total)
  int64_t artifact_every = 0; // > 0: the trainer's step artifacts every N global steps
  // Smith's LR range test instead of training: the LR rises exponentially
  // from lr_find_start to lr_find_end over lr_find_steps steps (or until the
  // loss diverges); the run's result is {"suggested_lr"} and lr_find.png.
  bool lr_find = false;
  double lr_find_start = 1e-7;
  double lr_find_end = 10;
  int64_t lr_find_steps = 100;
  // fine_tune: the first freeze_epochs epochs train only what the trainer
  // calls its head (Trainer::set_frozen), then everything.
  int64_t freeze_epochs = 0;
};

/// Parses and checks hyper_params from JSON (absent keys keep defaults);
/// bad_request naming the key on a wrong type or value.
result<hyper_params> parse_hyper(const nlohmann::json& j);

/// The learning rate at global step `step` (0-based) of `total` steps with
/// `steps_per_epoch` steps an epoch.
double scheduled_lr(const hyper_params& h, int64_t step, int64_t total, int64_t steps_per_epoch);

/// An optimizer for `params` as the hyper-parameters say (adam, adamw, sgd
/// with momentum), at learning rate `lr` (<= 0: h.lr).
std::unique_ptr<torch::optim::Optimizer> make_optimizer(std::vector<torch::Tensor> params,
                                                        const hyper_params& h, double lr = 0);

/// What an exported model serves, so registration knows what to build.
enum class serves {
  none,             // nothing to serve (a GAN's generator: kept as an artifact)
  image_embedding,  // a zoo model behind the image pipeline (model repository)
  series_embedding, // a time-series encoder behind a series pipeline
  text_embedding,   // a text encoder behind a text pipeline
  classifier,       // class probabilities (beside the embedding)
  regressor,        // continuous targets
};
/// "none", "image_embedding", "series_embedding", ...
const char* serves_name(serves s);

/// What a finished run leaves for serving: a model that can be registered in
/// the model repository and back an embedding pipeline.
struct exported_model {
  serves what = serves::image_embedding;
  std::string arch;            // zoo architecture name (models/zoo), e.g. "small_cnn"
  std::string weights_path;    // a state_dict with torchvision-style names
  std::string options_json;    // zoo::model_options as JSON
  std::string preprocess_json; // image models: {"resize","crop","channels","mean","std"};
                               // series/text: the input block's encoding (blocks.hpp)
  uint32_t dim = 0;            // embedding dimension
};

class Trainer {
public:
  virtual ~Trainer() = default;

  /// "classifier", "gan", "autoencoder", "rnn".
  virtual std::string kind() const = 0;
  /// Loads data and builds models and optimizers (after torch::manual_seed).
  /// Errors: not_found (dataset, base model), bad_request (options).
  virtual status setup() = 0;
  /// Optimizer steps in one epoch.
  virtual int64_t steps_per_epoch() const = 0;
  /// Sets train mode on the trained modules (called before each epoch's steps).
  virtual void train_mode() = 0;
  /// One training step on batch `index` of epoch `epoch` (0-based); the batch
  /// must be a function of (seed, epoch, index). Returns at least "loss".
  /// Use clip_and_step() for the optimizer step.
  virtual metrics train_step(int64_t epoch, int64_t index) = 0;
  /// Evaluation on held-out data (eval mode, no grad): "val_loss" and more.
  virtual metrics validate() = 0;
  /// Writes the epoch's artifacts (sample grids, reconstructions, text
  /// samples) into `dir`; returns their file names.
  virtual std::vector<std::string> epoch_artifacts(int64_t epoch, const std::string& dir) {
    return {};
  }
  /// Modules and optimizers, by stable names, for checkpoints.
  virtual std::map<std::string, std::shared_ptr<torch::nn::Module>> modules() = 0;
  virtual std::map<std::string, torch::optim::Optimizer*> optimizers() = 0;
  /// Writes the model to serve into `dir`; nullopt-like failure when the
  /// trainer has nothing servable (the run still succeeds).
  virtual result<exported_model> export_model(const std::string& dir) = 0;

  /// fine_tune (hyper.freeze_epochs): true trains only the head. Trainers
  /// without a pretrained body ignore it (the default).
  virtual void set_frozen(bool frozen) {}
  /// Artifacts every hyper.artifact_every steps (files in `dir`, names returned).
  virtual std::vector<std::string> step_artifacts(int64_t step, const std::string& dir) {
    return {};
  }
  /// Keys the run's result JSON carries beyond the loop's own (a JSON
  /// object as text; "" for none), e.g. a baseline's scores.
  virtual std::string result_extra() const { return {}; }

  const hyper_params& hyper() const { return hyper_; }
  /// Where tensors live: fit() sets it from the run context before setup();
  /// trainers put their modules and every batch there.
  const torch::Device& device() const { return device_; }
  void set_device(torch::Device d) { device_ = d; }
  /// fit() installs the run's cancellation check; long loops (validation)
  /// poll cancel_requested() so a cancel ends the run within a second.
  void set_cancel_check(std::function<bool()> f) { cancel_check_ = std::move(f); }
  bool cancel_requested() const { return cancel_check_ && cancel_check_(); }
  /// The whole "hyper" object, for trainer-specific keys.
  const nlohmann::json& hyper_json() const;

protected:
  Trainer(hyper_params h, const nlohmann::json& spec);
  /// Clips the gradients of `params` (hyper.clip_grad_norm > 0), steps `opt`;
  /// returns the gradient norm before clipping (0 when not clipping).
  double clip_and_step(torch::optim::Optimizer& opt, const std::vector<torch::Tensor>& params);
  /// Indices 0..n-1 shuffled by (seed, epoch): the epoch's batch order.
  torch::Tensor epoch_permutation(int64_t n, int64_t epoch) const;
  /// The full job spec ({"trainer","dataset","model","hyper",...}).
  const nlohmann::json& spec() const;

  hyper_params hyper_;
  torch::Device device_{torch::kCPU};

private:
  std::shared_ptr<nlohmann::json> spec_;
  std::function<bool()> cancel_check_;
};

/// One point of the metric history.
struct metric_point {
  int64_t step = 0;  // global step
  int64_t epoch = 0; // 1-based
  double time_s = 0; // since the run started (summed over resumes)
  std::string phase; // "train" | "val"
  metrics values;
};

struct progress {
  int64_t epoch = 0, epochs = 0;     // 1-based epoch in progress
  int64_t step = 0, total_steps = 0; // global steps done / planned
  double elapsed_s = 0, eta_s = -1;  // eta < 0: unknown yet
  double lr = 0;
  metrics latest;                    // latest train and val values
};

/// The outside world of a run.
struct run_context {
  std::string dir;                          // job directory: checkpoints/, artifacts/
  torch::Device device{torch::kCPU};        // where the trainer computes
  std::function<bool()> cancelled;          // polled before every step
  std::function<void(const progress&)> on_progress;     // after every step
  std::function<void(const metric_point&)> on_metrics; // each history point
  std::function<void(const std::string&)> on_artifact;  // path relative to dir
};

struct fit_summary {
  std::string outcome;     // "completed" | "early_stopped" | "cancelled" | "max_steps" | "lr_find"
  int64_t epochs_run = 0;  // completed epochs
  int64_t steps = 0;       // global steps done
  bool resumed = false;    // started from a checkpoint
  int64_t resumed_from_step = 0;
  metrics final_metrics;   // last train + val values
  double best_monitor = 0;
  std::vector<std::string> artifacts; // relative to dir
  std::optional<exported_model> model;
  std::optional<double> suggested_lr; // the LR range test's answer (hyper.lr_find)
};

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

/// What fit() shares with its callbacks while it runs.
struct fit_state {
  Trainer& trainer;
  const run_context& ctx;
  const hyper_params& h;
  fit_summary& summary;
  int64_t steps_per_epoch = 0, total_steps = 0;
  loop_state loop;              // where the run stands (checkpoints save it)
  int64_t epoch = 0;            // 0-based epoch in progress
  double lr = 0;                // this step's LR (before_step may change it)
  metrics step_metrics;         // the last train_step's values
  metrics val;                  // the last validation's values (epoch end)
  bool validate = true;         // validate at epoch ends
  bool export_model = true;     // export the model at the end
  bool allow_non_finite = false; // a callback judges divergence itself (LR finder)
  bool improved = false;        // this epoch improved the monitored metric
  std::string stop;             // set: end the run after this step or epoch, with this outcome
  int64_t epochs = 0;           // epochs to run (h.epochs; the LR finder runs as many as it needs)
  std::vector<metric_point> history; // the metric history so far (over resumes)
  std::string art_dir, ckpt_dir;
  std::function<void(const std::string&)> add_artifact; // path relative to ctx.dir
  std::function<double()> elapsed;                       // training seconds, over resumes
};

/// A piece of fit()'s behaviour that a run can have or not: hooks in the
/// order fit() calls them. Callbacks run in list order at every hook.
class fit_callback {
public:
  virtual ~fit_callback() = default;
  /// After setup, before the first step (checkpoint: resume).
  virtual void on_fit_start(fit_state&) {}
  virtual void on_epoch_start(fit_state&) {}
  /// Before the LR is applied (the LR finder sets s.lr).
  virtual void before_step(fit_state&) {}
  /// After a step was taken and recorded (s.loop.step counts it).
  virtual void on_step_end(fit_state&) {}
  /// After validation (s.val) and the validation point.
  virtual void on_epoch_end(fit_state&) {}
  /// After the loop, before the model is exported (not when cancelled).
  virtual void on_fit_end(fit_state&) {}
};
using callback_list = std::vector<std::unique_ptr<fit_callback>>;

/// Epoch artifacts and loss curves at epoch ends, step artifacts every
/// hyper.artifact_every steps.
std::unique_ptr<fit_callback> artifacts_callback();
/// hyper.early_stopping_patience on hyper.monitor (min | max, min_delta).
std::unique_ptr<fit_callback> early_stopping_callback();
/// Resume from checkpoints/last.pt; checkpoints every hyper.checkpoint_every
/// steps and at each epoch end (epoch_N.pt, best.pt, keep_checkpoints).
std::unique_ptr<fit_callback> checkpoint_callback();
/// fine_tune: head only for hyper.freeze_epochs epochs, then everything.
std::unique_ptr<fit_callback> freeze_callback();
/// Smith's LR range test (hyper.lr_find_*): exponential LR sweep, smoothed
/// loss, stop on divergence; artifacts/lr_find.png and summary.suggested_lr
/// (the LR of the steepest descent of the smoothed loss). No validation,
/// checkpoints or export.
std::unique_ptr<fit_callback> lr_finder_callback();
/// What a job's hyper-parameters ask for: the LR finder alone with
/// hyper.lr_find, else freeze (when freeze_epochs > 0), artifacts, early
/// stopping and checkpoints.
callback_list default_callbacks(const hyper_params& h);

/// Runs `t` to the end (or resumes it from <dir>/checkpoints/last.pt):
/// setup, then per epoch: train steps (LR schedule, NaN stop, progress,
/// history every log_every steps), validate, then the callbacks
/// (default_callbacks: artifacts, loss curves, early stopping, checkpoints).
/// At the end the model is exported to <dir>/model/.
/// History goes to <dir>/metrics.jsonl (trimmed to the checkpoint on resume).
/// Errors: setup's errors; unprocessable "loss is NaN at step N" (stop_on_nan);
/// internal (torch errors, I/O). Cancellation is not an error (outcome).
result<fit_summary> fit(Trainer& t, const run_context& ctx);
result<fit_summary> fit(Trainer& t, const run_context& ctx, callback_list callbacks);

/// Writes a grid of images (N x C x H x W float in [0,1], C 1 or 3) as PNG
/// with `cols` columns and a 2-pixel gap. false on I/O failure.
bool save_image_grid(const torch::Tensor& images, const std::string& path, int64_t cols = 8);

/// Draws metric curves (one line per series, step on x) with axes and a
/// legend into a PNG. false on I/O failure.
bool save_curves(const std::map<std::string, std::vector<std::pair<double, double>>>& series,
                 const std::string& path, const std::string& title);

/// One kind of trainer, as the table in trainers/factory.cpp lists it.
/// `make` reads the spec (spec_reader: the common hyper-parameters and the
/// kind's own keys), checks the data set against what the kind needs and
/// builds the trainer; it loads nothing (setup() does), so validating a job
/// spec and starting it share one path.
struct trainer_kind {
  std::string name;
  std::string needs; // the data set kinds it trains on, for messages
  std::function<result<std::unique_ptr<Trainer>>(const nlohmann::json& spec,
                                                 const data::dataset_info& ds,
                                                 const data::dataset_paths& paths)>
    make;
};

/// Every trainer kind, in the order GET /v1/trainers lists them.
const std::vector<trainer_kind>& trainer_kinds();

/// Names of the trainers make_trainer() knows, comma-separated.
std::string known_trainers();

/// The trainer named spec["trainer"], configured from the spec.
/// Errors: bad_request (unknown trainer, bad hyper values), not_found
/// (dataset). Does not load data (setup() does).
result<std::unique_ptr<Trainer>> make_trainer(const nlohmann::json& spec,
                                              const data::dataset_paths& paths, uint64_t user_id,
                                              bool is_admin);

} // namespace rookery::train

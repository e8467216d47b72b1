// Training as a job, for the actors: validate a job spec, run or resume it in
// its job directory, report events. Torch-free header.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "common/result.hpp"
#include "datasets/registry.hpp"

namespace rookery {

/// Who submitted the job (dataset visibility) and where things live.
struct train_env {
  data::dataset_paths paths;
  uint64_t user_id = 0;
  bool is_admin = false;
  int threads = 0; // intra-op threads for this run; 0 = leave as is
};

/// Checks a job spec without running it: the trainer exists, the dataset is
/// visible and of the right kind, hyper-parameters are well-typed and in range.
/// Returns the normalised spec (defaults filled in) as JSON text.
/// Errors: bad_request / not_found with a message naming the field.
result<std::string> validate_train_spec(const std::string& spec_json, const train_env& env);

/// Events of a run, as JSON text: {"type":"progress", epoch, epochs, step,
/// total_steps, elapsed_s, eta_s, lr, metrics}, {"type":"metrics", step,
/// epoch, phase, values}, {"type":"artifact", path}.
using train_event_fn = std::function<void(const std::string& type, const std::string& json)>;

/// Runs (or resumes from its last checkpoint) the job in `job_dir`.
/// `cancel` is polled before every step. Returns the result JSON: outcome,
/// epochs, steps, final metrics, artifacts, and the exported model (if any).
result<std::string> run_train_job(const std::string& spec_json, const train_env& env,
                                  const std::string& job_dir, const std::atomic<bool>& cancel,
                                  train_event_fn on_event);

} // namespace rookery

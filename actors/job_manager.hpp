// The job manager: asynchronous work polled by id -- embeddings (`?async=true`)
// and training runs. Job records live in the store; an embedding's input and a
// training run's checkpoints, metric history and artifacts live under
// <data>/jobs/<id>/, so a job survives a crash: unfinished jobs are queued
// again on the next start and training resumes from its last checkpoint.
// At most `max_running` jobs run at once; the rest queue in submission order.
//
// Each running training job is a detached trainer actor (trainers/train_job.hpp)
// that reports train_event messages here; the manager keeps the latest
// progress (persisted every few seconds) and forwards events to subscribers
// (GET /v1/jobs/{id}/events). Runs detached: it touches the disk.
#pragma once
#include <atomic>
#include <deque>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <vector>

#include "datasets/registry.hpp"
#include "messages/protocol.hpp"

namespace rookery {

/// Shared between the manager and one running trainer.
struct run_control {
  std::atomic<bool> stop{false};     // end the run at the next step
  std::atomic<bool> shutdown{false}; // ... because the node stops: keep the job for a restart
};

struct job_manager_settings {
  std::string data_dir;
  uint32_t max_running = 2;
  data::dataset_paths paths; // where training data sets are found
  int train_threads = 0;     // intra-op threads of a training run; 0: leave as is
};

struct job_manager_state {
  static inline const char* name = "job_manager";
  store_actor store;
  embed_service_actor embed;
  model_registry_actor models; // null on a gateway: no registration there
  job_manager_settings settings;
  std::string jobs_dir;
  // Jobs holding a run slot: running, plus cancelled ones whose work has not
  // ended yet (a trainer stops at its next step; an embedding finishes its
  // request). A slot is freed only when the work reports done, so cancelling
  // never lets more than max_running jobs compute at once.
  uint32_t running = 0;
  std::set<std::string> stopping;
  std::deque<std::string> queue;                             // queued job ids
  std::map<std::string, job_record> active;                  // queued or running
  // Running training jobs; shared with the exit hook, which runs after the
  // state is gone.
  std::shared_ptr<std::map<std::string, std::shared_ptr<run_control>>> runs =
    std::make_shared<std::map<std::string, std::shared_ptr<run_control>>>();
  std::map<std::string, std::vector<caf::actor>> subscribers;
  std::map<std::string, int64_t> persisted_ms;               // last progress write per job
};

job_manager_actor::behavior_type
job_manager_impl(job_manager_actor::stateful_pointer<job_manager_state> self, store_actor store,
                 embed_service_actor embed, model_registry_actor models,
                 job_manager_settings settings);

} // namespace rookery

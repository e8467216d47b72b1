// Training runs as actors. A trainer is one detached actor per running job:
// fit() runs in its first message handler (its own thread) and reports
// train_event messages and, at the end, exactly one done to its receiver.
//
// The trainer host (trainer_host_actor) runs trainers on a worker for the
// gateways: it takes runs while it has free slots, forwards each run's events
// to the run's receiver (a gateway's job manager, over the network), stops a
// run on cancel, and stops every run of a receiver that goes away, so the job
// is resumed from its last checkpoint by whichever gateway claims it next.
#pragma once
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "datasets/registry.hpp"
#include "messages/protocol.hpp"

namespace rookery {

struct train_env;

/// Shared between whoever started a run and its trainer.
struct run_control {
  std::atomic<bool> stop{false};     // end the run at the next step
  std::atomic<bool> shutdown{false}; // ... because its node or gateway stops: the job stays unfinished
};

/// Spawns a detached trainer for job `id` (directory `dir`). It reports to
/// `receiver`: train_event messages, then (done_atom, id, ok, payload) --
/// always, unless `ctl->shutdown` was set, when the job is left for a restart.
void spawn_trainer(caf::actor_system& sys, std::string id, std::string spec, const train_env& env,
                   std::string dir, std::shared_ptr<run_control> ctl,
                   train_receiver_actor receiver);

struct trainer_host_settings {
  uint32_t max_running = 2;
  int train_threads = 0; // intra-op threads of each run; 0: leave as is
  // Where the gateways' data directory is mounted on this worker ("": at the
  // gateways' own path): a run's paths under the gateway's <data> move here.
  std::string shared_data;
};

/// `path` under `gateway_data` moved to the same place under `shared_data`
/// ("" leaves it as is); empty when it is not under `gateway_data`.
std::string map_shared_path(const std::string& path, const std::string& gateway_data,
                            const std::string& shared_data);

struct trainer_host_state {
  static inline const char* name = "trainer_host";
  trainer_host_settings settings;
  struct run {
    std::shared_ptr<run_control> ctl;
    train_receiver_actor receiver; // null once its receiver went away
  };
  std::map<std::string, run> runs; // a slot each, until the trainer reports done
  // Shared with the exit hook, which runs after the state is gone.
  std::shared_ptr<std::map<std::string, std::shared_ptr<run_control>>> controls =
    std::make_shared<std::map<std::string, std::shared_ptr<run_control>>>();
};

trainer_host_actor::behavior_type
trainer_host_impl(trainer_host_actor::stateful_pointer<trainer_host_state> self,
                  trainer_host_settings settings);

} // namespace rookery

// The job manager: asynchronous work polled by id. Job records live in the
// store; inputs are written under <data>/jobs/<id>/ before a job is accepted,
// so a job survives a crash and is re-run on the next start. At most
// `max_running` jobs run at once; the rest queue in submission order.
// Runs detached: it writes job inputs to disk.
#pragma once
#include <deque>
#include <map>
#include <string>

#include "messages/protocol.hpp"

namespace rookery {

struct job_manager_state {
  static inline const char* name = "job_manager";
  store_actor store;
  embed_service_actor embed;
  std::string jobs_dir;
  uint32_t max_running = 2;
  uint32_t running = 0;
  std::deque<std::string> queue;             // queued job ids
  std::map<std::string, job_record> active;  // queued or running
};

job_manager_actor::behavior_type
job_manager_impl(job_manager_actor::stateful_pointer<job_manager_state> self, store_actor store,
                 embed_service_actor embed, std::string data_dir, uint32_t max_running);

} // namespace rookery

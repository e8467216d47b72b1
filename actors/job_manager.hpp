// The job manager: asynchronous work polled by id -- embeddings (`?async=true`)
// and training runs. Job records live in the store; an embedding's input and a
// training run's checkpoints, metric history and artifacts live under
// <data>/jobs/<id>/, so a job survives a crash and training resumes from its
// last checkpoint.
//
// Jobs are claimed from the store, never assumed: a node runs a job only while
// it holds the job's lease (renewed every poll_ms). A job submitted while this
// node has no free slot stays unclaimed for whichever node frees one first;
// a node that dies stops renewing, and after lease_s another node claims its
// jobs and resumes them. With a single node's own store (SQLite) the node takes
// every unfinished job back at start, as before. At most `max_running` jobs run
// at once on a node; waiting jobs are claimed oldest first.
//
// A job cancelled on another gateway is marked so in the store; its node sees
// that at the next renewal and stops the run. Subscribers to a job another
// node runs get its progress from the store.
//
// Each running training job is a detached trainer actor (actors/trainer_host.hpp)
// that reports train_event messages here -- on this node, or, on a gateway, on
// a worker's trainer host, which forwards them over the network; the manager keeps the latest
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

#include "actors/cluster.hpp"
#include "actors/trainer_host.hpp"
#include "datasets/registry.hpp"
#include "messages/protocol.hpp"

namespace rookery {

struct job_manager_settings {
  std::string data_dir;
  uint32_t max_running = 2;
  std::string node_id = "local"; // the owner name of this node's claims
  bool shared = false;    // other nodes use the same store: claim with leases only
  int64_t lease_s = 15;   // a claim lapses this long after the last renewal
  uint32_t poll_ms = 1000; // renewals, claims of waiting jobs, watching jobs run elsewhere
  data::dataset_paths paths; // where training data sets are found
  int train_threads = 0;     // intra-op threads of a training run; 0: leave as is
  // A gateway's cluster actor (answers (list_atom, job_atom) with the
  // workers' trainer hosts): training runs on the workers, not here. Null:
  // trainers run on this node.
  worker_directory_actor trainer_hosts;
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
  // Jobs another node runs that have subscribers here: the last record seen,
  // polled from the store every poll_ms and turned into events.
  std::map<std::string, job_record> watched;
  bool claiming = false; // a claim request is in flight
  uint32_t reserved = 0;  // submissions taking a slot here whose store write is in flight
  // Training jobs running on a worker's trainer host (gateways), and the
  // worker's name; a host that goes down sends its jobs back to the queue.
  struct remote_run {
    trainer_host_actor host;
    std::string worker;
  };
  std::map<std::string, remote_run> remote;
  uint64_t next_host = 0; // round-robin start over the trainer hosts
};

job_manager_actor::behavior_type
job_manager_impl(job_manager_actor::stateful_pointer<job_manager_state> self, store_actor store,
                 embed_service_actor embed, model_registry_actor models,
                 job_manager_settings settings);

} // namespace rookery

// The gateway's view of the cluster: an embedding service that forwards to the
// services that workers publish on their cluster ports. It connects to each
// seed through the middleman actor (asynchronously), monitors each remote
// service, fails the requests in flight to a worker the moment it goes down
// (CAF 0.17 would otherwise let them wait for their timeout) by sending them
// once to another worker (an embedding is safe to repeat), and reconnects.
//
// Pipelines added or removed through a gateway go to every connected worker,
// and the gateway keeps the last change per pipeline name to replay to a
// worker when it (re)connects, so workers agree on the run-time pipelines
// even when one was down while they changed. Each worker's model registry is
// fetched on connect; the model router (actors/model_router.hpp) serves
// /v1/models and /v2 from them.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <optional>

#include <caf/typed_response_promise.hpp>

#include "messages/protocol.hpp"

namespace rookery {

/// What the connected workers lend a gateway: the model router and the job
/// manager ask for it.
using worker_directory_actor = caf::typed_actor<
  // The model registries of the connected workers (model_registry_actor
  // handles) and their names ("host:port"), in the same order.
  caf::replies_to<list_atom, model_atom>::with<std::vector<caf::actor>, std::vector<std::string>>,
  // The trainer hosts of the connected workers (trainer_host_actor handles)
  // and their names, in the same order.
  caf::replies_to<list_atom, job_atom>::with<std::vector<caf::actor>, std::vector<std::string>>>;

using backfill_atom = caf::atom_constant<caf::atom("backfill")>;

/// A gateway's model router (actors/model_router.hpp): the model registry
/// protocol over the workers' registries, plus the back-fill of a worker that
/// connects: (registry, worker name) -> ok once it holds every model uploaded
/// or registered through the gateways.
using model_router_actor = model_registry_actor::extend<
  caf::replies_to<backfill_atom, caf::actor, std::string>::with<caf::ok_atom>>;

/// The router answers the embedding-service protocol, the worker directory,
/// and internal messages.
using cluster_actor = embed_service_actor::extend_with<worker_directory_actor>::extend<
  // Internal: (re)connect to seed number i.
  caf::reacts_to<retry_atom, uint64_t>,
  // Number of connected workers.
  caf::replies_to<workers_atom>::with<uint32_t>>;

struct cluster_state {
  static inline const char* name = "cluster";
  struct worker {
    std::string host;
    uint16_t port = 0;
    embed_service_actor service; // null while disconnected
    model_registry_actor models;  // its registry; null until fetched
    trainer_host_actor trainer;   // its trainer host; null until fetched
    bool connecting = false;
    struct in_flight {
      caf::typed_response_promise<embed_result> promise;
      embed_request request; // kept to re-send it when this worker dies
      uint32_t attempts = 1;
    };
    std::map<uint64_t, in_flight> pending;
  };
  std::vector<worker> workers;
  /// The last change of a run-time pipeline made through this gateway:
  /// added from a registered model, added from an operator chain, or removed.
  struct pipeline_change {
    std::string name;
    std::optional<std::string> model;         // put (name, model)
    std::optional<pipeline_spec_msg> spec;    // put (spec)
    bool removed = false;                     // delete (name)
  };
  std::vector<pipeline_change> changes; // oldest first, one per name
  std::string changes_dir; // <data>/gateway-pipelines: the same, kept for every gateway
  size_t next = 0;
  uint64_t next_request = 0;
  model_router_actor router; // the model router over the workers' registries
  std::chrono::milliseconds reconnect{1000};
  std::chrono::milliseconds timeout{30000};
  std::chrono::milliseconds import_timeout{300000}; // pipeline and model changes
};

/// What a change that only some workers took says in its status:
/// "; <verb> on <ok> of <n> workers (failed: <who: why>; ...)"; "" when none failed.
std::string partial_note(const std::string& verb, size_t ok, const std::vector<std::string>& failed);

/// Sends `req` to the next connected worker; false when none is connected.
bool dispatch(cluster_actor::stateful_pointer<cluster_state> self, embed_request req,
              caf::typed_response_promise<embed_result> rp, uint32_t attempts);

cluster_actor::behavior_type cluster_impl(cluster_actor::stateful_pointer<cluster_state> self,
                                          std::vector<std::string> seeds,
                                          std::chrono::milliseconds reconnect,
                                          std::chrono::milliseconds timeout,
                                          std::chrono::milliseconds import_timeout,
                                          std::string data_dir);

} // namespace rookery

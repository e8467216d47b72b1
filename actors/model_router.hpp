// A gateway's model registry: the model_registry_actor protocol served from the
// registries of the connected workers (the cluster actor lends their handles),
// so /v1/models and /v2 work through any gateway.
//
// - infer: round-robin over the workers, sent once more to another worker when
//   the first one is unreachable or goes down (an inference is safe to repeat);
// - info / get: the first worker that has the model;
// - list: every worker's models merged by name; a model that only some
//   workers have, or whose versions differ, says so in its status;
// - put / delete: every connected worker, with the weights' bytes inline (the
//   workers' model repositories are their own disks). A put answers the first
//   success and names the workers that refused;
// - back-fill: what was put through a gateway is also kept in the gateways'
//   shared data directory (<data>/gateway-models/<name>/: the weights and the
//   import request, the newest version only; a delete removes it), and a
//   worker that connects gets every such model it lacks before its pipelines
//   are replayed -- a new worker on an empty volume included.
#pragma once
#include <cstdint>

#include "actors/cluster.hpp"
#include "messages/protocol.hpp"

namespace rookery {

struct model_router_state {
  static inline const char* name = "model_router";
  worker_directory_actor cluster;
  std::chrono::milliseconds timeout{30000};        // inference and metadata
  std::chrono::milliseconds import_timeout{300000}; // installs and removals
  std::string models_dir; // <data>/gateway-models; "" keeps nothing
  uint64_t next = 0;
};

model_router_actor::behavior_type
model_router_impl(model_router_actor::stateful_pointer<model_router_state> self,
                  worker_directory_actor cluster, std::chrono::milliseconds timeout,
                  std::chrono::milliseconds import_timeout, std::string models_dir);

} // namespace rookery

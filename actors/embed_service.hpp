// The embedding pipelines of one node. A pipeline is a chain of operators
// (pipelines/pipeline.hpp): built-ins compiled into the binary, the
// configuration's model pipelines, and those admins add at run time (stored
// under <data>/pipelines). The service actor picks a pipeline (explicit name,
// or the MIME type) and hands the bytes to one of the pipeline's detached
// stage actors, which run the operators before the model, send the tensors
// to the model's replica pool (owned by the model registry, shared by every
// pipeline and by /v2), and run the operators after it.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "common/result.hpp"
#include "messages/protocol.hpp"
#include "models/repository.hpp"

namespace caf {
class actor_system;
}

namespace rookery {

/// Compiles the pipelines, takes their models' pools from `registry` (waiting
/// for them to load: the node does not listen yet), spawns the stages and
/// returns the service actor. Never fails for
/// missing weights: the pipeline is then flagged in its info. `trainer` (a
/// worker's trainer host, else null) is lent to gateways on request.
result<embed_service_actor> spawn_embed_service(caf::actor_system& sys, const config& cfg,
                                                std::vector<caf::actor>& spawned,
                                                model_registry_actor registry,
                                                trainer_host_actor trainer = {});

} // namespace rookery

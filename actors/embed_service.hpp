// The embedding pipelines of one node. The service actor picks a pipeline
// (explicit name, or the MIME table), hands the bytes to a pool of detached
// decoder actors (decode -> resize/crop -> normalise) which send the tensor to
// a model replica and answer with the L2-normalised embedding.
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

/// Loads models, spawns replicas and decoders, and returns the service actor.
/// Never fails for missing weights: the pipeline is then flagged in its info.
/// Every actor it spawns is appended to `spawned` (to be stopped on shutdown).
result<embed_service_actor> spawn_embed_service(caf::actor_system& sys, const config& cfg,
                                                std::vector<caf::actor>& spawned);

} // namespace rookery

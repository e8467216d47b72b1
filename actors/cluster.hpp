// The gateway's view of the cluster: an embedding service that forwards to the
// services that workers publish on their cluster ports. It connects to each
// seed through the middleman actor (asynchronously), monitors each remote
// service, fails the requests in flight to a worker the moment it goes down
// (CAF 0.17 would otherwise let them wait for their timeout) by sending them
// once to another worker (an embedding is safe to repeat), and reconnects.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <caf/typed_response_promise.hpp>

#include "messages/protocol.hpp"

namespace rookery {

/// The router answers the embedding-service protocol plus internal messages.
using cluster_actor = embed_service_actor::extend<
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
    bool connecting = false;
    struct in_flight {
      caf::typed_response_promise<embed_result> promise;
      embed_request request; // kept to re-send it when this worker dies
      uint32_t attempts = 1;
    };
    std::map<uint64_t, in_flight> pending;
  };
  std::vector<worker> workers;
  size_t next = 0;
  uint64_t next_request = 0;
  std::chrono::milliseconds reconnect{1000};
  std::chrono::milliseconds timeout{30000};
};

/// Sends `req` to the next connected worker; false when none is connected.
bool dispatch(cluster_actor::stateful_pointer<cluster_state> self, embed_request req,
              caf::typed_response_promise<embed_result> rp, uint32_t attempts);

cluster_actor::behavior_type cluster_impl(cluster_actor::stateful_pointer<cluster_state> self,
                                          std::vector<std::string> seeds,
                                          std::chrono::milliseconds reconnect,
                                          std::chrono::milliseconds timeout);

} // namespace rookery

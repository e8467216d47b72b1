// A model replica: owns one loaded model and runs on its own thread (spawned
// detached: a forward pass takes milliseconds). It batches dynamically: each
// request is queued and a `batch` message is sent to itself; because that
// message lands behind everything already in the mailbox, the first `batch`
// finds every request that arrived while the previous forward was running and
// runs them together (up to max_batch). Under no load a request runs alone at
// once; under load batches grow by themselves, with no timer to tune.
#pragma once
#include <chrono>
#include <deque>
#include <memory>
#include <string>

#include <caf/typed_response_promise.hpp>

#include "messages/protocol.hpp"

namespace rookery {

class embedding_model;

struct replica_state {
  static inline const char* name = "model_replica";
  struct item {
    tensor_msg input;
    caf::typed_response_promise<embedding_msg> promise;
    std::chrono::steady_clock::time_point enqueued;
  };
  std::shared_ptr<embedding_model> model;
  model_meta meta;
  uint32_t max_batch = 8;
  bool optimize = true; // prepare the /v2 path on its first request (spec.optimize)
  std::deque<item> queue;
};

/// A replica over a loaded model. `meta` describes it (name, version, shapes).
replica_actor::behavior_type replica_impl(replica_actor::stateful_pointer<replica_state> self,
                                          std::shared_ptr<embedding_model> model, model_meta meta,
                                          uint32_t max_batch);

struct model_spec;

/// A replica that loads `spec` itself first (spawn it detached: loading
/// blocks its own thread only; requests wait in the mailbox meanwhile). If the
/// model does not load, every request is answered with the load error.
replica_actor::behavior_type replica_loading(replica_actor::stateful_pointer<replica_state> self,
                                             model_spec spec, model_meta meta, uint32_t max_batch);

} // namespace rookery

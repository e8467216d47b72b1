// The dataset registry as an actor (datasets/registry.hpp): lists built-in and
// uploaded data sets and imports uploads (decoding every image of an archive
// takes a while). Detached: disk I/O and decoding.
#pragma once
#include <cstdint>

#include "datasets/registry.hpp"
#include "messages/protocol.hpp"

namespace rookery {

struct dataset_service_state {
  static inline const char* name = "datasets";
  data::dataset_paths paths;
  uint64_t max_bytes = 0;
};

/// The registry's paths from the configuration.
struct config;
data::dataset_paths dataset_paths_of(const config& cfg);

dataset_actor::behavior_type
dataset_service_impl(dataset_actor::stateful_pointer<dataset_service_state> self,
                     data::dataset_paths paths, uint64_t max_bytes);

} // namespace rookery

// The model registry: owns the one replica pool of every model in use, which
// embedding pipelines and the Open Inference Protocol share. A pool is
// spawned on first use; its detached replicas load the weights on their own
// threads (requests wait in their mailboxes meanwhile), so no caller ever
// waits for a load on its own thread. An import replaces the pool so the
// next request gets the new version. Runs detached itself: it reads the repository from disk. Imports
// (which load the weights to check them) run on one-shot detached actors.
#pragma once
#include <map>
#include <set>
#include <string>
#include <vector>

#include "messages/protocol.hpp"

namespace rookery {

struct model_registry_settings {
  std::string data_dir;
  uint32_t max_batch = 8;
  int torch_threads = 0;
  uint32_t replicas = 1;        // replicas in each model's pool
  bool allow_untrained = false; // serve seeded random ResNets when none is installed
  bool optimize = true;         // the `inference` setting: "optimized" (true) or "eager"
  std::set<std::string> stand_in;  // models an untrained ResNet-18 may stand in for (the built-ins')
};

struct model_registry_state {
  static inline const char* name = "model_registry";
  model_registry_settings settings;
  struct pool {
    std::vector<replica_actor> replicas;
    model_meta meta;
    size_t next = 0;
  };
  std::map<std::string, pool> pools; // one per model in use, shared by pipelines and /v2
};

model_registry_actor::behavior_type
model_registry_impl(model_registry_actor::stateful_pointer<model_registry_state> self,
                    model_registry_settings settings);

} // namespace rookery

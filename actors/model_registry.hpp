// The model registry: serves every model of the repository for the Open
// Inference Protocol. A model is loaded on first use into its own detached
// replica; an import replaces the replica so the next request gets the new
// version. Runs detached itself: it reads the repository from disk. Imports
// (which load the weights to check them) run on one-shot detached actors.
#pragma once
#include <map>
#include <string>

#include "messages/protocol.hpp"

namespace rookery {

struct model_registry_state {
  static inline const char* name = "model_registry";
  std::string data_dir;
  uint32_t max_batch = 8;
  int torch_threads = 0;
  std::map<std::string, replica_actor> replicas; // loaded models by name
};

model_registry_actor::behavior_type
model_registry_impl(model_registry_actor::stateful_pointer<model_registry_state> self,
                    std::string data_dir, uint32_t max_batch, int torch_threads);

} // namespace rookery

// The store actor: sole user of the node's store connection (SQLite or
// PostgreSQL). Spawned detached because every handler does disk or network I/O.
#pragma once
#include <memory>

#include "messages/protocol.hpp"

namespace rookery {

class Store;

struct store_state {
  static inline const char* name = "store";
  std::shared_ptr<Store> db;
};

/// Behaviour over an opened database; the actor is its only user from here on.
store_actor::behavior_type store_impl(store_actor::stateful_pointer<store_state> self,
                                      std::shared_ptr<Store> db);

} // namespace rookery

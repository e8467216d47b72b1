// One Rookery node: the actor system, the actors its role needs, and the HTTP
// front. Roles: "all" (everything local), "worker" (all, plus its embedding
// service published on the cluster port), "gateway" (accounts, jobs and HTTP;
// embeddings are routed to workers over CAF's middleman).
#pragma once
#include <cstdint>
#include <memory>

#include "common/config.hpp"
#include "common/result.hpp"

namespace rookery {

class node {
public:
  static result<std::unique_ptr<node>> start(const config& cfg);
  ~node();
  uint16_t http_port() const;
  uint16_t cluster_port() const;
  /// Stops HTTP, then every actor, and waits for them.
  void stop();

  struct impl;

private:
  explicit node(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

/// Opens the store and creates `username` (used by `rookery admin create-user`
/// and by the first start with admin_user set). Returns false with a message
/// when it exists already.
status create_user_offline(const config& cfg, const std::string& username,
                           const std::string& password, bool is_admin);

/// Where the node's store is: `store` when set, else <data>/rookery.db.
std::string store_location(const config& cfg);

/// Applies password_hash_cost, then initialises libsodium.
void init_crypto(const config& cfg);

} // namespace rookery

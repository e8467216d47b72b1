// The HTTP front (RESTinio): turns requests into actor requests and writes the
// answers from the actor that finishes them.
#pragma once
#include <cstdint>
#include <memory>

#include "common/config.hpp"
#include "common/result.hpp"
#include "messages/protocol.hpp"

namespace caf {
class actor_system;
}

namespace rookery {

/// The actors a node's HTTP front talks to.
struct node_handles {
  caf::actor_system* sys = nullptr;
  store_actor store;
  auth_actor auth;
  embed_service_actor embed;
  job_manager_actor jobs;
  model_registry_actor models; // null on a gateway
  dataset_actor datasets;
  std::string role;
};

class http_server {
public:
  /// Binds and starts serving on cfg.host:cfg.port (port 0: any free port).
  static result<std::unique_ptr<http_server>> start(const config& cfg, node_handles nodes);
  ~http_server();
  uint16_t port() const;
  /// Stops accepting, finishes, and joins the HTTP threads.
  void stop();

  struct impl;

private:
  explicit http_server(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

} // namespace rookery

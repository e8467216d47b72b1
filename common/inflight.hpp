// Process-wide counters of work in flight, for a graceful shutdown: on SIGTERM
// a node stops being ready, waits (bounded) until these reach zero, then stops.
#pragma once
#include <atomic>
#include <cstdint>

namespace rookery::inflight {

/// HTTP requests received and not yet answered.
std::atomic<int64_t>& http();
/// Embedding requests inside this node's pipelines (local or from a gateway).
std::atomic<int64_t>& embeds();
/// Set once shutdown begins: /readyz answers 503 from then on.
std::atomic<bool>& draining();

/// RAII increment of a counter.
class guard {
public:
  explicit guard(std::atomic<int64_t>& c) : c_(&c) { ++*c_; }
  guard(const guard&) = delete;
  guard& operator=(const guard&) = delete;
  ~guard() { --*c_; }

private:
  std::atomic<int64_t>* c_;
};

} // namespace rookery::inflight

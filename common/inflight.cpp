#include "common/inflight.hpp"

namespace rookery::inflight {

std::atomic<int64_t>& http() {
  static std::atomic<int64_t> n{0};
  return n;
}

std::atomic<int64_t>& embeds() {
  static std::atomic<int64_t> n{0};
  return n;
}

std::atomic<bool>& draining() {
  static std::atomic<bool> d{false};
  return d;
}

} // namespace rookery::inflight

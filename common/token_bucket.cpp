#include "common/token_bucket.hpp"

#include <algorithm>

namespace rookery {

bool token_bucket::take(double now, double rate, double burst) {
  if (last == 0) {
    tokens = burst;
    last = now;
  }
  tokens = std::min(burst, tokens + std::max(0.0, now - last) * rate);
  last = now;
  if (tokens < 1)
    return false;
  tokens -= 1;
  return true;
}

} // namespace rookery

// A token bucket: `rate` requests per second on average, bursts up to `burst`.
#pragma once

namespace rookery {

struct token_bucket {
  double tokens = 0;
  double last = 0; // seconds on a steady clock; 0: never used (starts full)
  /// Takes one token at time `now`; false when none is left.
  bool take(double now, double rate, double burst);
};

} // namespace rookery

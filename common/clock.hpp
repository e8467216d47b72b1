// Wall-clock time in Unix seconds, the unit every record uses. It lives here,
// not in the store: the store stores the times it is given (so a test can pass
// any instant), and every caller takes "now" from this one function.
#pragma once
#include <chrono>
#include <cstdint>

namespace rookery {

inline int64_t unix_now() {
  using namespace std::chrono;
  return duration_cast<seconds>(system_clock::now().time_since_epoch()).count();
}

} // namespace rookery

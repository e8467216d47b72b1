#include "common/log.hpp"

namespace rookery::log {

void set_level(const std::string& level) {
  spdlog::set_level(spdlog::level::from_str(level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
}

} // namespace rookery::log

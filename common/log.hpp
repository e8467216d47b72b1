// Logging through spdlog, kept out of other headers' include graphs except here.
#pragma once
#include <spdlog/spdlog.h>

namespace rookery::log {

using spdlog::debug;
using spdlog::error;
using spdlog::info;
using spdlog::warn;

/// Sets the level from text (trace, debug, info, warn, error, off).
void set_level(const std::string& level);

} // namespace rookery::log

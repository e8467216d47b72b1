// Precompiled header for rookery_core, the CLI and tests: third-party headers only.
#pragma once
#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <restinio/all.hpp>
#include <nlohmann/json.hpp>
#include <sqlite3.h>
#include <sodium.h>
#include <spdlog/spdlog.h>
#include <chrono>
#include <string>
#include <vector>
#include <map>
#include <unordered_map>
#include <memory>
#include <optional>

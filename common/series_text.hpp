// Time series as users upload them: numeric CSV/TSV (an optional header row;
// columns that are not numeric, such as dates, are dropped; missing cells
// filled by linear interpolation), one row of numbers (a UCR-style line), or
// JSON ([1, 2, ...], [[channel], [channel]], {"series": ...} or
// {"values": ...}). Also the content rules that tell a numeric table from
// prose and a series JSON payload from other JSON, for MIME sniffing. Plain
// C++ (nlohmann only).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace rookery {

struct series_table {
  std::vector<std::string> names;           // per channel: header name or "column N"
  std::vector<std::vector<double>> channels; // channels x length
};

struct series_limits {
  int64_t max_points = 1'000'000; // all channels together
  int64_t max_channels = 64;
};

/// Parses a series upload (text table or JSON). bad_request naming the line
/// and column, or payload_too_large past the limits.
result<series_table> parse_series(const std::string& bytes, const series_limits& lim = {});

/// Content rules for sniffing: a text whose non-empty lines (past an optional
/// header) are all delimited numbers, with at least 3 values in all.
bool looks_like_numeric_table(const std::string& text);

/// What a JSON upload holds: "series", "text" ({"text"}/{"texts"}), or "" (neither).
std::string json_payload_kind(const std::string& text);

} // namespace rookery

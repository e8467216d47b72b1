// Bounded JSON: every JSON text that comes from outside (request bodies,
// multipart fields, stored specs) is parsed here, with its nesting depth and
// size checked *before* nlohmann builds a document, and every JSON answer is
// written with invalid UTF-8 replaced instead of throwing type_error.316.
#pragma once
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

namespace rookery::jsonx {

/// Deepest nesting of arrays and objects a request may send. Rookery's own
/// documents nest at most 6 levels; 64 leaves room and keeps every recursive
/// walk over a document (destruction, dump, from_json) shallow.
inline constexpr std::size_t kMaxDepth = 64;

/// Largest JSON text parse_bounded accepts (bodies are limited before that).
inline constexpr std::size_t kMaxBytes = 8u << 20;

/// Nesting depth of `text` as a JSON text (arrays and objects outside
/// strings), scanning at most until `limit` is exceeded. Linear, no recursion.
std::size_t nesting_depth(std::string_view text, std::size_t limit);

/// Parses `text` as JSON. Returns nullopt and sets `*error` (when given) to a
/// sentence naming what is wrong: too deep, too large, not JSON, or not
/// valid UTF-8 inside a string.
std::optional<nlohmann::json> parse_bounded(std::string_view text, std::string* error = nullptr,
                                            std::size_t max_depth = kMaxDepth,
                                            std::size_t max_bytes = kMaxBytes);

/// `j.dump()` that never throws on invalid UTF-8 (bytes become U+FFFD).
std::string dump(const nlohmann::json& j, int indent = -1);

/// True when `s` is well-formed UTF-8 (no overlongs, no surrogates).
bool valid_utf8(std::string_view s);

/// `s` with every ill-formed UTF-8 sequence replaced by U+FFFD.
std::string sanitize_utf8(std::string_view s);

} // namespace rookery::jsonx

#include "common/json_limits.hpp"

#include <nlohmann/json.hpp>

namespace rookery::jsonx {

std::size_t nesting_depth(std::string_view text, std::size_t limit) {
  std::size_t depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
      continue;
    }
    switch (c) {
      case '"': in_string = true; break;
      case '[':
      case '{':
        if (++depth > deepest) {
          deepest = depth;
          if (deepest > limit)
            return deepest;
        }
        break;
      case ']':
      case '}':
        if (depth > 0)
          --depth;
        break;
      default: break;
    }
  }
  return deepest;
}

std::optional<nlohmann::json> parse_bounded(std::string_view text, std::string* error,
                                            std::size_t max_depth, std::size_t max_bytes) {
  auto fail = [&](std::string msg) -> std::optional<nlohmann::json> {
    if (error)
      *error = std::move(msg);
    return std::nullopt;
  };
  if (text.size() > max_bytes)
    return fail("the JSON text is larger than " + std::to_string(max_bytes) + " bytes");
  if (nesting_depth(text, max_depth) > max_depth)
    return fail("the JSON text nests deeper than " + std::to_string(max_depth) + " levels");
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::parse_error& e) {
    // e.byte is 1-based; nlohmann reports invalid UTF-8 inside strings as a
    // parse error too.
    return fail("the body is not valid JSON (at byte " + std::to_string(e.byte) + ")");
  } catch (const std::exception& e) {
    return fail("the body is not valid JSON");
  }
}

std::string dump(const nlohmann::json& j, int indent) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

namespace {

// Length of the well-formed UTF-8 sequence starting at s[i], 0 if ill-formed
// (Unicode 15, table 3-7).
std::size_t sequence_length(std::string_view s, std::size_t i) {
  auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  auto in = [](unsigned char c, unsigned char lo, unsigned char hi) { return c >= lo && c <= hi; };
  const std::size_t left = s.size() - i;
  unsigned char c = b(0);
  if (c < 0x80)
    return 1;
  if (in(c, 0xC2, 0xDF))
    return left >= 2 && in(b(1), 0x80, 0xBF) ? 2 : 0;
  if (in(c, 0xE0, 0xEF)) {
    if (left < 3)
      return 0;
    unsigned char lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    return in(b(1), lo, hi) && in(b(2), 0x80, 0xBF) ? 3 : 0;
  }
  if (in(c, 0xF0, 0xF4)) {
    if (left < 4)
      return 0;
    unsigned char lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    return in(b(1), lo, hi) && in(b(2), 0x80, 0xBF) && in(b(3), 0x80, 0xBF) ? 4 : 0;
  }
  return 0;
}

} // namespace

bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    auto n = sequence_length(s, i);
    if (n == 0)
      return false;
    i += n;
  }
  return true;
}

std::string sanitize_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    auto n = sequence_length(s, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {
      out.append(s.data() + i, n);
      i += n;
    }
  }
  return out;
}

} // namespace rookery::jsonx

// libFuzzer target: the multipart/form-data parser (http/multipart_parse.cpp).
// The input's first line is the Content-Type value, the rest the body.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "http/multipart.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const auto nl = in.find('\n');
  const auto content_type = in.substr(0, nl);
  const auto body = nl == std::string_view::npos ? std::string_view{} : in.substr(nl + 1);
  std::string error;
  auto parts = rookery::http::parse_form_body(content_type, body, &error);
  if (parts && parts->size() > rookery::http::multipart_limits::kMaxParts)
    __builtin_trap();
  return 0;
}

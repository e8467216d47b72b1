#include "common/mime.hpp"

#include <magic.h>

#include "common/series_text.hpp"

namespace rookery {

namespace {

struct cookie {
  magic_t handle = nullptr;
  cookie() {
    handle = magic_open(MAGIC_MIME_TYPE | MAGIC_ERROR);
    if (handle != nullptr && magic_load(handle, nullptr) != 0) {
      magic_close(handle);
      handle = nullptr;
    }
  }
  ~cookie() {
    if (handle != nullptr)
      magic_close(handle);
  }
};

} // namespace

std::string sniff_mime(const std::string& bytes) {
  thread_local cookie c;
  if (c.handle == nullptr || bytes.empty())
    return "application/octet-stream";
  const char* m = magic_buffer(c.handle, bytes.data(), bytes.size());
  std::string mime = m != nullptr ? std::string{m} : std::string{"application/octet-stream"};
  return refine_mime(bytes, mime);
}

std::string refine_mime(const std::string& bytes, const std::string& mime) {
  // libmagic decides first; these rules only split what it calls text or JSON.
  const bool text = mime == "text/plain" || mime == "text/csv" || mime == "text/tab-separated-values"
                    || mime == "application/csv";
  const size_t start = bytes.find_first_not_of(" \t\r\n");
  const bool json_like = mime == "application/json"
                         || (text && start != std::string::npos && (bytes[start] == '[' || bytes[start] == '{'));
  if (json_like) {
    const auto kind = json_payload_kind(bytes);
    if (kind == "series")
      return "application/vnd.rookery.series+json";
    if (kind == "text")
      return "application/vnd.rookery.text+json";
    return mime;
  }
  if (text) {
    // A numeric table (judged on its first 64 KiB, whole lines) is a series.
    std::string head = bytes.size() > 65536 ? bytes.substr(0, bytes.rfind('\n', 65536)) : bytes;
    if (looks_like_numeric_table(head))
      return "text/csv";
    return "text/plain";
  }
  return mime;
}

} // namespace rookery

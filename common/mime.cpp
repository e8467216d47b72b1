#include "common/mime.hpp"

#include <magic.h>

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
  return m != nullptr ? std::string{m} : std::string{"application/octet-stream"};
}

} // namespace rookery

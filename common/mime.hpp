// MIME sniffing from bytes with libmagic (one cookie per thread: libmagic
// handles are not thread-safe).
#pragma once
#include <string>

namespace rookery {

/// The MIME type of `bytes` ("image/jpeg", "text/plain", ...), or
/// "application/octet-stream" when libmagic cannot tell.
std::string sniff_mime(const std::string& bytes);

} // namespace rookery

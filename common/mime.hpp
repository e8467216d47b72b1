// MIME sniffing from bytes with libmagic (one cookie per thread: libmagic
// handles are not thread-safe).
#pragma once
#include <string>

namespace rookery {

/// The MIME type of `bytes` ("image/jpeg", "text/plain", ...), or
/// "application/octet-stream" when libmagic cannot tell; text and JSON are
/// refined by content (refine_mime).
std::string sniff_mime(const std::string& bytes);

/// The content rules after libmagic: text that is a numeric table ->
/// "text/csv", other text -> "text/plain"; JSON holding a series ->
/// "application/vnd.rookery.series+json", {"text"}/{"texts"} ->
/// "application/vnd.rookery.text+json". Anything else keeps `mime`.
std::string refine_mime(const std::string& bytes, const std::string& mime);

} // namespace rookery

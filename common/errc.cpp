#include "common/errc.hpp"

namespace rookery {

int http_status(errc code) noexcept {
  switch (code) {
    case errc::none: return 200;
    case errc::bad_request: return 400;
    case errc::unauthorized: return 401;
    case errc::forbidden: return 403;
    case errc::not_found: return 404;
    case errc::conflict: return 409;
    case errc::payload_too_large: return 413;
    case errc::unsupported_media: return 415;
    case errc::unprocessable: return 422;
    case errc::too_many_requests: return 429;
    case errc::internal: return 500;
    case errc::unavailable: return 503;
    case errc::timeout: return 504;
  }
  return 500;
}

const char* to_string(errc code) noexcept {
  switch (code) {
    case errc::none: return "none";
    case errc::bad_request: return "bad_request";
    case errc::unauthorized: return "unauthorized";
    case errc::forbidden: return "forbidden";
    case errc::not_found: return "not_found";
    case errc::conflict: return "conflict";
    case errc::payload_too_large: return "payload_too_large";
    case errc::unsupported_media: return "unsupported_media_type";
    case errc::unprocessable: return "unprocessable";
    case errc::too_many_requests: return "too_many_requests";
    case errc::internal: return "internal";
    case errc::unavailable: return "unavailable";
    case errc::timeout: return "timeout";
  }
  return "internal";
}

} // namespace rookery

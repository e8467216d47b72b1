// Error codes of the whole system. Each code names a *kind* of failure that
// the HTTP layer maps to one status (http/problem.cpp); the detail travels as
// the message. They cross actors and the network inside caf::error
// (category atom "rookery").
#pragma once
#include <cstdint>

namespace rookery {

enum class errc : uint8_t {
  none = 0,
  bad_request,        // 400: malformed JSON, missing field, corrupt input
  unauthorized,       // 401: no or bad credentials
  forbidden,          // 403: authenticated but lacks a scope
  not_found,          // 404: unknown object, or an object of another user
  conflict,           // 409: username taken, job already finished
  payload_too_large,  // 413: body or image over the configured limit
  unsupported_media,  // 415: no pipeline for the detected type
  unprocessable,      // 422: well-formed but semantically wrong (bad weights file)
  too_many_requests,  // 429: rate limit or login lock-out
  internal,           // 500
  unavailable,        // 503: model not loaded, no worker reachable
  timeout,            // 504: request budget exhausted
};

/// HTTP status that `code` maps to.
int http_status(errc code) noexcept;

/// Short machine-readable name ("bad_request", ...).
const char* to_string(errc code) noexcept;

} // namespace rookery

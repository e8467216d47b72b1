// RFC 7807 problem documents and HTTP reason phrases, shared by everything
// that answers: the request context (handlers), the batch items of
// POST /v1/embed, and the socket layer's canned answers to malformed HTTP
// (http/wire.cpp). nlohmann only.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

namespace rookery {

/// "Bad Request", "Request Timeout", ...; "Error" for a status without one here.
const char* http_reason(int status);

/// {"type": "urn:rookery:problem:<type>", "title", "status", "detail"}.
nlohmann::json problem_document(int status, const std::string& type, const std::string& detail);

} // namespace rookery

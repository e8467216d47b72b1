#include "http/problem.hpp"

namespace rookery {

const char* http_reason(int status) {
  switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Error";
  }
}

nlohmann::json problem_document(int status, const std::string& type, const std::string& detail) {
  return {{"type", "urn:rookery:problem:" + type},
          {"title", http_reason(status)},
          {"status", status},
          {"detail", detail}};
}

} // namespace rookery

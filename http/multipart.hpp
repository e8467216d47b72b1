// multipart/form-data parsing. RESTinio 0.6.16's multipart_body.hpp defines
// non-inline functions, so it may be included by one translation unit only:
// this one (http/multipart.cpp).
#pragma once
#include <optional>
#include <string>
#include <vector>

#include <restinio/all.hpp>

namespace rookery::http {

struct form_part {
  std::string name;     // Content-Disposition name=""
  std::string filename; // Content-Disposition filename="", if any
  std::string body;
};

/// True when the request's Content-Type is multipart/form-data.
bool is_multipart(const restinio::request_handle_t& req);

/// All parts, or nullopt when the body is not well-formed multipart/form-data.
std::optional<std::vector<form_part>> parse_form(const restinio::request_handle_t& req);

} // namespace rookery::http

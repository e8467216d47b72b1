// multipart/form-data parsing. RESTinio 0.6.16's multipart_body.hpp defines
// non-inline functions, so it may be included by one translation unit only:
// this one (http/multipart.cpp).
#pragma once
#include <map>
#include <memory>
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

struct api;
struct request_ctx;

/// An upload form (POST /v1/models, POST /v1/datasets): checks the body
/// against max_upload_bytes (413), that it is multipart (415, with `usage`),
/// well-formed (400) and has every `required` part non-empty (400); answers
/// those itself and returns nullopt. Otherwise the parts by name.
std::optional<std::map<std::string, std::string>>
read_upload_form(const std::shared_ptr<api>& a, const std::shared_ptr<request_ctx>& ctx,
                 const std::string& usage, const std::vector<std::string>& required);

/// Writes an uploaded file under <data>/uploads/ (for an actor to read and
/// remove); answers 500 and returns nullopt when it cannot.
std::optional<std::string> save_upload(const std::shared_ptr<api>& a,
                                       const std::shared_ptr<request_ctx>& ctx,
                                       const std::string& bytes, const std::string& prefix);

} // namespace rookery::http

// multipart/form-data parsing. RESTinio 0.6.16's multipart_body.hpp defines
// non-inline functions, so it may be included by one translation unit only:
// http/multipart_parse.cpp (the parser); http/multipart.cpp has the upload
// helpers.
#pragma once
#include <map>
#include <memory>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <restinio/all.hpp>

namespace rookery::http {

struct form_part {
  std::string name;     // Content-Disposition name=""
  std::string filename; // Content-Disposition filename="", if any
  std::string body;
};

/// Bounds of the multipart parser (each answered 400 with the bound named).
namespace multipart_limits {
/// Parts of one form: Rookery's forms have at most 7 fields.
inline constexpr std::size_t kMaxParts = 64;
/// Header block of one part (Content-Disposition, Content-Type...).
inline constexpr std::size_t kMaxPartHeaderBytes = 8 * 1024;
/// Length of the boundary parameter: RFC 2046 allows 1-70 characters.
inline constexpr std::size_t kMaxBoundaryBytes = 70;
} // namespace multipart_limits

/// Parses a multipart/form-data `body` sent with `content_type` (the
/// Content-Type header's value). nullopt when it is not well-formed or over a
/// bound, with the reason in `*error` when given.
std::optional<std::vector<form_part>> parse_form_body(std::string_view content_type,
                                                      std::string_view body,
                                                      std::string* error = nullptr);

/// True when the request's Content-Type is multipart/form-data.
bool is_multipart(const restinio::request_handle_t& req);

/// All parts, or nullopt when the body is not well-formed multipart/form-data
/// (parse_form_body on the request's Content-Type and body).
std::optional<std::vector<form_part>> parse_form(const restinio::request_handle_t& req,
                                                 std::string* error = nullptr);

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

#include "http/multipart.hpp"

#include <filesystem>
#include <fstream>

#include "common/crypto.hpp"
#include "http/context.hpp"

namespace rookery::http {

bool is_multipart(const restinio::request_handle_t& req) {
  auto ct = req->header().opt_value_of(restinio::http_field::content_type);
  return ct && std::string{*ct}.rfind("multipart/form-data", 0) == 0;
}

std::optional<std::vector<form_part>> parse_form(const restinio::request_handle_t& req,
                                                 std::string* error) {
  auto ct = req->header().opt_value_of(restinio::http_field::content_type);
  if (!ct) {
    if (error)
      *error = "no Content-Type";
    return std::nullopt;
  }
  return parse_form_body(std::string_view{ct->data(), ct->size()}, req->body(), error);
}

std::optional<std::map<std::string, std::string>>
read_upload_form(const std::shared_ptr<api>& a, const ctx_ptr& ctx, const std::string& usage,
                 const std::vector<std::string>& required) {
  if (ctx->req->body().size() > a->cfg.max_upload_bytes) {
    respond_problem(ctx, errc::payload_too_large, "the upload is larger than max_upload_bytes ("
                                                    + std::to_string(a->cfg.max_upload_bytes) + ")");
    return std::nullopt;
  }
  if (!is_multipart(ctx->req)) {
    respond_problem(ctx, errc::unsupported_media, usage);
    return std::nullopt;
  }
  std::string why;
  auto parts = parse_form(ctx->req, &why);
  if (!parts) {
    respond_problem(ctx, errc::bad_request, "malformed multipart body: " + why);
    return std::nullopt;
  }
  std::map<std::string, std::string> fields;
  for (auto& p : *parts)
    fields[p.name] = std::move(p.body);
  for (auto& f : required)
    if (fields[f].empty()) {
      respond_problem(ctx, errc::bad_request, "the form needs a non-empty '" + f + "' part");
      return std::nullopt;
    }
  return fields;
}

std::optional<std::string> save_upload(const std::shared_ptr<api>& a, const ctx_ptr& ctx,
                                       const std::string& bytes, const std::string& prefix) {
  namespace fs = std::filesystem;
  auto dir = fs::path(a->cfg.data) / "uploads";
  std::error_code ec;
  fs::create_directories(dir, ec);
  auto path = (dir / (crypto::random_id(prefix) + ".bin")).string();
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) {
    fs::remove(path, ec);
    respond_problem(ctx, errc::internal, "cannot store the upload");
    return std::nullopt;
  }
  return path;
}

} // namespace rookery::http

#include "http/multipart.hpp"

#include <filesystem>
#include <fstream>

#include <restinio/helpers/multipart_body.hpp>

#include "common/crypto.hpp"
#include "http/context.hpp"

namespace rookery::http {

namespace {

std::string disposition_param(const std::string& cd, const std::string& key) {
  auto p = cd.find(key + "=\"");
  if (p == std::string::npos)
    return {};
  p += key.size() + 2;
  auto e = cd.find('"', p);
  return e == std::string::npos ? std::string{} : cd.substr(p, e - p);
}

} // namespace

bool is_multipart(const restinio::request_handle_t& req) {
  auto ct = req->header().opt_value_of(restinio::http_field::content_type);
  return ct && std::string{*ct}.rfind("multipart/form-data", 0) == 0;
}

std::optional<std::vector<form_part>> parse_form(const restinio::request_handle_t& req) {
  std::vector<form_part> parts;
  auto r = restinio::multipart_body::enumerate_parts(
    *req,
    [&](restinio::multipart_body::parsed_part_t part) {
      form_part p;
      if (auto cd = part.fields.opt_value_of(restinio::http_field::content_disposition)) {
        std::string v{*cd};
        // filename= must not be taken for name=: look for ' name=' or ';name='.
        auto n = v.find("; name=\"");
        p.name = n != std::string::npos ? disposition_param(v.substr(n + 2), "name")
                                        : disposition_param(v, "name");
        p.filename = disposition_param(v, "filename");
      }
      p.body = std::string{part.body};
      parts.push_back(std::move(p));
      return restinio::multipart_body::handling_result_t::continue_enumeration;
    },
    "multipart", "form-data");
  if (!r || parts.empty())
    return std::nullopt;
  return parts;
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
  auto parts = parse_form(ctx->req);
  if (!parts) {
    respond_problem(ctx, errc::bad_request, "malformed multipart body");
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

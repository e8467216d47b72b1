#include "http/multipart.hpp"

#include <restinio/helpers/multipart_body.hpp>

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

} // namespace rookery::http

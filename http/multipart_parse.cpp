// The multipart/form-data parser itself, apart from the request plumbing in
// multipart.cpp so the fuzzer (fuzz/fuzz_multipart.cpp) links it alone.
// RESTinio 0.6.16's multipart_body.hpp defines non-inline functions, so this
// is the one translation unit that includes it.
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

std::optional<std::vector<form_part>> parse_form_body(std::string_view content_type,
                                                      std::string_view body, std::string* error) {
  namespace mb = restinio::multipart_body;
  namespace hfp = restinio::http_field_parsers;
  namespace lim = multipart_limits;
  auto refuse = [&](std::string why) -> std::optional<std::vector<form_part>> {
    if (error)
      *error = std::move(why);
    return std::nullopt;
  };
  auto sv = [](std::string_view s) { return restinio::string_view_t{s.data(), s.size()}; };

  const auto ct = hfp::content_type_value_t::try_parse(sv(content_type));
  if (!ct)
    return refuse("unreadable Content-Type");
  if (!restinio::impl::is_equal_caseless(ct->media_type.type, "multipart") ||
      !restinio::impl::is_equal_caseless(ct->media_type.subtype, "form-data"))
    return refuse("the Content-Type is not multipart/form-data");
  const auto boundary = hfp::find_first(ct->media_type.parameters, "boundary");
  if (!boundary)
    return refuse("the Content-Type has no boundary");
  if (boundary->size() > lim::kMaxBoundaryBytes || mb::check_boundary_value(*boundary))
    return refuse("the boundary is not 1-" + std::to_string(lim::kMaxBoundaryBytes) +
                  " of the characters RFC 2046 allows");
  const std::string delimiter = "--" + std::string(boundary->data(), boundary->size());

  // The parts between delimiters (RESTinio's split_multipart_body, with the
  // part count bounded while splitting).
  std::vector<std::string_view> raw;
  const std::string_view eol = "\r\n", last = "--\r\n";
  auto pos = body.find(delimiter);
  if (pos == std::string_view::npos)
    return refuse("no boundary in the body");
  if (pos != 0 && (pos < eol.size() || body.substr(pos - eol.size(), eol.size()) != eol))
    return refuse("the first boundary does not start a line");
  auto rest = body.substr(pos + delimiter.size());
  bool closed = false;
  while (!closed && rest.substr(0, eol.size()) == eol) {
    rest.remove_prefix(eol.size());
    pos = rest.find(delimiter);
    if (pos == std::string_view::npos || pos < eol.size() ||
        rest.substr(pos - eol.size(), eol.size()) != eol)
      return refuse("a part is not closed by a boundary");
    if (raw.size() == lim::kMaxParts)
      return refuse("more than " + std::to_string(lim::kMaxParts) + " parts");
    raw.push_back(rest.substr(0, pos - eol.size()));
    rest = rest.substr(pos + delimiter.size());
    closed = rest.substr(0, last.size()) == last;
  }
  if (!closed || raw.empty())
    return refuse("no closing boundary");

  std::vector<form_part> parts;
  for (auto part : raw) {
    // Header lines end at the first empty line; bounded before parsing.
    const auto end = part.substr(0, 2) == eol ? 0 : part.find("\r\n\r\n");
    if (end == std::string_view::npos || end > lim::kMaxPartHeaderBytes)
      return refuse(end == std::string_view::npos && part.size() <= lim::kMaxPartHeaderBytes
                      ? "a part has no end of headers"
                      : "a part's headers are longer than " + std::to_string(lim::kMaxPartHeaderBytes) +
                          " bytes");
    auto parsed = mb::try_parse_part(sv(part));
    if (!parsed)
      return refuse("a part's headers are malformed");
    form_part p;
    if (auto cd = parsed->fields.opt_value_of(restinio::http_field::content_disposition)) {
      std::string v{*cd};
      // filename= must not be taken for name=: look for ' name=' or ';name='.
      auto n = v.find("; name=\"");
      p.name = n != std::string::npos ? disposition_param(v.substr(n + 2), "name")
                                      : disposition_param(v, "name");
      p.filename = disposition_param(v, "filename");
    }
    p.body = std::string{parsed->body};
    parts.push_back(std::move(p));
  }
  return parts;
}

} // namespace rookery::http

#include "http/context.hpp"

#include "http/problem.hpp"

#include <algorithm>
#include <atomic>
#include <filesystem>

#include "actors/auth.hpp"
#include "common/crypto.hpp"
#include "common/json_limits.hpp"
#include "common/inflight.hpp"
#include "common/log.hpp"
#include "common/metrics.hpp"
#include "messages/registration.hpp"

namespace rookery::http {

namespace {

std::string reason_of(int status) {
  return http_reason(status);
}

// Accepts a client-sent X-Request-Id when it is short and plain.
bool plain_id(const std::string& s) {
  if (s.empty() || s.size() > 64)
    return false;
  for (char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
      return false;
  return true;
}

} // namespace

void write_answer(request_ctx& c, int status, const std::string& body,
                  const std::string& content_type);
std::string problem_text(const request_ctx& ctx, errc code, const std::string& detail);

request_ctx::request_ctx() {
  ++inflight::http();
}

request_ctx::~request_ctx() {
  if (answered)
    return;
  // Nobody answered and nobody can any more (a handler or a continuation
  // threw, or an actor died holding the request): answer here, so the client
  // gets a 500 instead of a connection RESTinio closes after its timeout.
  try {
    if (req) {
      log::error("request {}: dropped without an answer; answering 500", request_id);
      write_answer(*this, 500, problem_text(*this, errc::internal,
                                            "internal error: the request was dropped"),
                   "application/problem+json");
      return;
    }
  } catch (...) {
  }
  answered = true;
  --inflight::http();
}

ctx_ptr make_ctx(const restinio::request_handle_t& req, std::string route) {
  auto ctx = std::make_shared<request_ctx>();
  ctx->req = req;
  ctx->route = std::move(route);
  ctx->start = std::chrono::steady_clock::now();
  auto given = req->header().opt_value_of("X-Request-Id");
  if (given && plain_id(std::string{*given}))
    ctx->request_id = std::string{*given};
  else
    ctx->request_id = crypto::random_id("r_", 8);
  return ctx;
}

void write_answer(request_ctx& c, int status, const std::string& body,
                  const std::string& content_type) {
  auto* ctx = &c;
  if (ctx->answered)
    return;
  ctx->answered = true;
  --inflight::http();
  auto resp = ctx->req->create_response(
    restinio::http_status_line_t{restinio::http_status_code_t{static_cast<std::uint16_t>(status)},
                                 status < 400 ? "OK" : reason_of(status)});
  resp.append_header("X-Request-Id", ctx->request_id);
  resp.append_header(restinio::http_field::server, "rookery");
  if (!content_type.empty())
    resp.append_header(restinio::http_field::content_type, content_type);
  if (status == 401)
    resp.append_header(restinio::http_field::www_authenticate, "Bearer");
  resp.set_body(body);
  // Counted before the answer leaves, so a client that reads /metrics right
  // after sees its own request.
  auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - ctx->start).count();
  auto method = std::string{ctx->req->header().method().c_str()};
  metrics::instance().http_request(method, ctx->route, status, secs);
  resp.done();
  log::info("access {} {} {} {} {:.1f}ms", ctx->request_id, method,
            std::string{ctx->req->header().path()}, status, secs * 1000);
}

std::string problem_text(const request_ctx& ctx, errc code, const std::string& detail) {
  int status = http_status(code);
  json body = problem_document(status, to_string(code), detail);
  body["instance"] = std::string{ctx.req->header().path()};
  body["request_id"] = ctx.request_id;
  return jsonx::dump(body); // paths and details may hold bytes that are not UTF-8
}

void respond(const ctx_ptr& ctx, int status, const std::string& body,
             const std::string& content_type) {
  write_answer(*ctx, status, body, content_type);
}

void respond_file(const ctx_ptr& ctx, const std::string& path, const std::string& content_type) {
  if (ctx->answered)
    return;
  std::optional<restinio::sendfile_t> file;
  try {
    file.emplace(restinio::sendfile(path));
  } catch (const std::exception&) {
    return respond_problem(ctx, errc::not_found, "the file is gone");
  }
  ctx->answered = true;
  --inflight::http();
  auto resp = ctx->req->create_response();
  resp.append_header("X-Request-Id", ctx->request_id);
  resp.append_header(restinio::http_field::server, "rookery");
  resp.append_header(restinio::http_field::content_type, content_type);
  resp.set_body(std::move(*file));
  auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - ctx->start).count();
  auto method = std::string{ctx->req->header().method().c_str()};
  metrics::instance().http_request(method, ctx->route, 200, secs);
  resp.done();
  log::info("access {} {} {} 200 {:.1f}ms (file)", ctx->request_id, method,
            std::string{ctx->req->header().path()}, secs * 1000);
}

restinio::response_builder_t<restinio::chunked_output_t> begin_stream(const ctx_ptr& ctx,
                                                                      const std::string& content_type) {
  ctx->answered = true; // a stream is not work in flight: shutdown does not wait for it
  --inflight::http();
  auto resp = ctx->req->create_response<restinio::chunked_output_t>();
  resp.append_header("X-Request-Id", ctx->request_id);
  resp.append_header(restinio::http_field::server, "rookery");
  resp.append_header(restinio::http_field::content_type, content_type);
  resp.append_header(restinio::http_field::cache_control, "no-cache");
  resp.append_header("X-Accel-Buffering", "no"); // proxies: pass events through at once
  auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - ctx->start).count();
  auto method = std::string{ctx->req->header().method().c_str()};
  metrics::instance().http_request(method, ctx->route, 200, secs);
  log::info("access {} {} {} 200 stream", ctx->request_id, method,
            std::string{ctx->req->header().path()});
  return resp;
}

void respond_json(const ctx_ptr& ctx, int status, const json& body) {
  respond(ctx, status, jsonx::dump(body), "application/json");
}

void respond_empty(const ctx_ptr& ctx, int status) {
  respond(ctx, status, "", "");
}

namespace {
std::vector<std::string>& private_prefixes() {
  static std::vector<std::string> p;
  return p;
}
} // namespace

void hide_server_paths(std::vector<std::string> prefixes) {
  std::vector<std::string> out;
  for (auto& p : prefixes) {
    if (p.empty())
      continue;
    std::error_code ec;
    auto abs = std::filesystem::weakly_canonical(std::filesystem::absolute(p, ec), ec).string();
    for (auto x : {abs, p}) {
      while (x.size() > 1 && x.back() == '/')
        x.pop_back();
      if (x.size() > 1)
        out.push_back(x + "/");
    }
  }
  // Longest first, so "/srv/rookery/" wins over "./".
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.size() > b.size(); });
  private_prefixes() = std::move(out);
}

std::string without_server_paths(std::string text) {
  for (const auto& p : private_prefixes())
    for (auto at = text.find(p); at != std::string::npos; at = text.find(p, at))
      text.erase(at, p.size());
  return text;
}

void respond_problem(const ctx_ptr& ctx, errc code, const std::string& detail) {
  respond(ctx, http_status(code), problem_text(*ctx, code, without_server_paths(detail)),
          "application/problem+json");
}

void respond_error(const ctx_ptr& ctx, const caf::error& err) {
  auto f = to_failure(err);
  if (f.code == errc::internal) {
    // The details (paths, library messages) go to the log, not to clients.
    log::error("request {}: {}", ctx->request_id, caf::to_string(err));
    return respond_problem(ctx, f.code, "internal error; the server log has the details under "
                                        "request id " + ctx->request_id);
  }
  respond_problem(ctx, f.code, f.message.empty() ? reason_of(http_status(f.code)) : f.message);
}

std::optional<json> parse_json_body(const ctx_ptr& ctx) {
  const auto& body = ctx->req->body();
  if (body.size() > 1u << 20) {
    respond_problem(ctx, errc::payload_too_large, "JSON bodies are limited to 1 MiB");
    return std::nullopt;
  }
  if (body.empty()) {
    respond_problem(ctx, errc::bad_request, "the request needs a JSON object body");
    return std::nullopt;
  }
  std::string why;
  auto j = jsonx::parse_bounded(body, &why);
  if (!j) {
    respond_problem(ctx, errc::bad_request, why);
    return std::nullopt;
  }
  if (!j->is_object()) {
    respond_problem(ctx, errc::bad_request, "the body must be a JSON object");
    return std::nullopt;
  }
  return j;
}

void with_actor(const std::shared_ptr<api>& a, std::function<void(caf::event_based_actor*)> f) {
  a->nodes.sys->spawn([f = std::move(f)](caf::event_based_actor* self) { f(self); });
}

void with_principal(const std::shared_ptr<api>& a, const ctx_ptr& ctx, const std::string& scope,
                    authed_fn f) {
  std::string kind, secret;
  const auto& h = ctx->req->header();
  if (auto key = h.opt_value_of("X-API-Key")) {
    kind = "key";
    secret = std::string{*key};
  } else if (auto auth = h.opt_value_of(restinio::http_field::authorization)) {
    std::string v{*auth};
    if (v.size() > 7 && (v.compare(0, 7, "Bearer ") == 0 || v.compare(0, 7, "bearer ") == 0)) {
      secret = v.substr(7);
      // An API key may also travel as a bearer token.
      kind = secret.rfind("rk_", 0) == 0 ? "key" : "bearer";
    }
  }
  if (secret.empty()) {
    respond_problem(ctx, errc::unauthorized,
                    "authenticate with 'Authorization: Bearer <token>' or 'X-API-Key: <key>'");
    return;
  }
  with_actor(a, [=](caf::event_based_actor* self) {
    self->request(a->nodes.auth, a->timeout, authn_atom::value, kind, secret)
      .then(
        [=](principal& who) {
          if (!scope.empty() && !has_scope(who, scope)) {
            respond_problem(ctx, errc::forbidden, "this credential lacks the '" + scope + "' scope");
            return;
          }
          f(self, who);
        },
        [=](caf::error& e) { respond_error(ctx, e); });
  });
}

} // namespace rookery::http

// Internal to http/: the per-request context and the helpers every handler
// uses to answer (JSON, problem+json, errors from actors) and to authenticate.
#pragma once
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>
#include <restinio/all.hpp>

#include "common/config.hpp"
#include "http/server.hpp"

namespace rookery::http {

using json = nlohmann::json;
using router_t = restinio::router::express_router_t<>;

/// One HTTP request in flight (counted in inflight::http() until answered).
struct request_ctx {
  request_ctx();
  ~request_ctx();
  restinio::request_handle_t req;
  std::string request_id;
  std::string route; // route template, for metrics ("/v1/jobs/:id")
  std::chrono::steady_clock::time_point start;
  bool answered = false;
};
using ctx_ptr = std::shared_ptr<request_ctx>;

/// Everything handlers need: actors, settings.
struct api {
  node_handles nodes;
  config cfg;
  std::chrono::milliseconds timeout{30000};
};

/// The timeout of imports (models, data sets) and registrations: long, and
/// still inside the connection's handle_request_timeout (http/server.cpp).
inline std::chrono::milliseconds import_timeout(const std::shared_ptr<api>& a) {
  return std::chrono::milliseconds(a->cfg.import_timeout_ms);
}

ctx_ptr make_ctx(const restinio::request_handle_t& req, std::string route);

void respond(const ctx_ptr& ctx, int status, const std::string& body,
             const std::string& content_type);
void respond_json(const ctx_ptr& ctx, int status, const json& body);
void respond_empty(const ctx_ptr& ctx, int status);
/// 200 with a file's bytes (sendfile); 404 problem when it cannot be opened.
void respond_file(const ctx_ptr& ctx, const std::string& path, const std::string& content_type);
/// Starts a chunked 200 response (server-sent events): counted and logged
/// now; the caller appends chunks, flushes, and calls done() at the end.
restinio::response_builder_t<restinio::chunked_output_t> begin_stream(const ctx_ptr& ctx,
                                                                      const std::string& content_type);
/// Directories whose paths never appear in answers: respond_problem strips
/// them from details (set once at server start: the data directory).
void hide_server_paths(std::vector<std::string> prefixes);
std::string without_server_paths(std::string text);

/// RFC 7807 problem+json.
void respond_problem(const ctx_ptr& ctx, errc code, const std::string& detail);
void respond_error(const ctx_ptr& ctx, const caf::error& err);

/// Parses a JSON object body; answers 400 and returns nullopt when malformed.
std::optional<json> parse_json_body(const ctx_ptr& ctx);

/// Runs `f` on a fresh request actor once the caller is authenticated and holds
/// `scope` (empty: any). Answers 401/403/429 itself.
using authed_fn = std::function<void(caf::event_based_actor*, const principal&)>;
void with_principal(const std::shared_ptr<api>& a, const ctx_ptr& ctx, const std::string& scope,
                    authed_fn f);

/// Runs `f` on a fresh request actor (no authentication).
void with_actor(const std::shared_ptr<api>& a, std::function<void(caf::event_based_actor*)> f);

/// Registers all /v1 routes.
void register_v1_routes(router_t& router, const std::shared_ptr<api>& a);

/// Registers training jobs (POST /v1/jobs, events, artifacts, register,
/// resume) and /v1/datasets.
void register_train_routes(router_t& router, const std::shared_ptr<api>& a);

/// Query parameter `name` of the request ("" when absent or malformed).
std::string query_value(const restinio::request_handle_t& req, const char* name);

/// Registers /v1/models and the Open Inference Protocol routes under /v2.
void register_model_routes(router_t& router, const std::shared_ptr<api>& a);

/// Adds a route whose handler gets (api, request context, route params);
/// exceptions from the handler become a 500 problem.
using route_fn = std::function<void(const std::shared_ptr<api>&, const ctx_ptr&,
                                    const restinio::router::route_params_t&)>;
void add_route(router_t& r, const std::shared_ptr<api>& a, restinio::http_method_id_t method,
               const char* path, route_fn fn);

/// The OpenAPI document.
const json& openapi_document();

} // namespace rookery::http

#include "http/server.hpp"

#include <atomic>
#include <future>

#include "actors/cluster.hpp"
#include "common/inflight.hpp"
#include "common/log.hpp"
#include "common/metrics.hpp"
#include "http/context.hpp"
#include "http/wire.hpp"
#include "messages/json.hpp"
#include "messages/registration.hpp"

namespace rookery {

using namespace rookery::http;

namespace {

// The router, with one more guarantee: RESTinio's express router normalises
// the path and percent-decodes route parameters before any handler runs, and
// throws on a malformed escape ("/v1/jobs/%zz") or bytes that are not UTF-8
// ("/v1/jobs/%ff"); that exception reached RESTinio's connection, which
// closed the socket without an answer. Here it becomes a 400.
struct guarded_router {
  std::unique_ptr<router_t> router;
  restinio::request_handling_status_t operator()(restinio::request_handle_t req) const {
    try {
      return (*router)(req);
    } catch (...) {
      auto ctx = make_ctx(req, "malformed");
      const char* why = "the request path is not valid percent-encoded UTF-8 (RFC 3986, RFC 3629)";
      if (std::string{req->header().path()}.rfind("/v2", 0) == 0) // the Open Inference Protocol's shape
        respond_json(ctx, 400, json{{"error", why}});
      else
        respond_problem(ctx, errc::bad_request, why);
      return restinio::request_accepted();
    }
  }
};

// Our parser callbacks, logger and socket (http/wire.hpp), a cap on open
// connections, and the router.
struct server_traits
  : restinio::traits_t<restinio::asio_timer_manager_t, wire::logger_t, guarded_router,
                       restinio::default_strand_t, wire::socket_t> {
  using http_methods_mapper_t = wire::methods_t;
  static constexpr bool use_connection_count_limiter = true;
};

} // namespace

struct http_server::impl {
  restinio::running_server_handle_t<server_traits> server;
  uint16_t port = 0;
};

namespace {

void register_ops_routes(router_t& r, const std::shared_ptr<api>& a) {
  using restinio::request_accepted;
  using restinio::request_handle_t;
  using restinio::router::route_params_t;
  r.http_get("/healthz", [](request_handle_t req, route_params_t) {
    respond_json(make_ctx(req, "/healthz"), 200, json{{"status", "ok"}});
    return request_accepted();
  });
  r.http_get("/readyz", [a](request_handle_t req, route_params_t) {
    auto ctx = make_ctx(req, "/readyz");
    if (inflight::draining()) {
      respond_json(ctx, 503, json{{"status", "shutting down"}});
      return request_accepted();
    }
    with_actor(a, [=](caf::event_based_actor* self) {
      self->request(a->nodes.embed, std::chrono::seconds(5), list_atom::value)
        .then(
          [=](std::vector<pipeline_info>& ps) {
            json arr = json::array();
            bool any = false;
            for (auto& p : ps) {
              any = any || p.ready;
              arr.push_back({{"name", p.name}, {"ready", p.ready}});
            }
            respond_json(ctx, any ? 200 : 503,
                         json{{"status", any ? "ready" : "not ready"}, {"pipelines", arr}});
          },
          [=](caf::error& e) {
            respond_json(ctx, 503, json{{"status", "not ready"},
                                        {"detail", to_failure(e).message}});
          });
    });
    return request_accepted();
  });
  r.http_get("/metrics", [](request_handle_t req, route_params_t) {
    auto ctx = make_ctx(req, "/metrics");
    respond(ctx, 200, metrics::instance().render(), "text/plain; version=0.0.4");
    return request_accepted();
  });
  r.http_get("/v1/openapi.json", [](request_handle_t req, route_params_t) {
    respond_json(make_ctx(req, "/v1/openapi.json"), 200, openapi_document());
    return request_accepted();
  });
  r.non_matched_request_handler([](request_handle_t req) {
    auto ctx = make_ctx(req, "unmatched");
    respond_problem(ctx, errc::not_found,
                    "no route for " + std::string{req->header().method().c_str()}
                      + " " + std::string{req->header().path()});
    return request_accepted();
  });
}

} // namespace

http_server::http_server(std::unique_ptr<impl> p) : impl_(std::move(p)) {}

http_server::~http_server() {
  stop();
}

uint16_t http_server::port() const {
  return impl_->port;
}

void http_server::stop() {
  if (impl_ && impl_->server) {
    impl_->server->stop();
    impl_->server->wait();
    impl_->server.reset();
  }
}

result<std::unique_ptr<http_server>> http_server::start(const config& cfg, node_handles nodes) {
  auto a = std::make_shared<api>();
  a->nodes = std::move(nodes);
  a->cfg = cfg;
  a->timeout = std::chrono::milliseconds(cfg.request_timeout_ms);
  wire::limits_t limits;
  limits.embed_body = cfg.max_body_bytes;
  limits.upload_body = cfg.max_upload_bytes;
  limits.head_timeout = std::chrono::milliseconds(cfg.head_timeout_ms);
  limits.min_body_rate = cfg.min_upload_bytes_per_s;
  wire::set_limits(limits);
  hide_server_paths({cfg.data});
  auto router = std::make_unique<router_t>();
  register_v1_routes(*router, a);
  register_model_routes(*router, a);
  register_train_routes(*router, a);
  register_ops_routes(*router, a);
  auto p = std::make_unique<impl>();
  auto port = std::make_shared<std::atomic<uint16_t>>(0);
  try {
    p->server = restinio::run_async<server_traits>(
      restinio::own_io_context(),
      restinio::server_settings_t<server_traits>{}
        .address(cfg.host)
        .port(cfg.port)
        .request_handler(std::make_unique<guarded_router>(guarded_router{std::move(router)}))
        // Longer than any chain of actor requests a handler makes (the
        // authentication plus the request itself, an import being the
        // longest), so every request gets an answer (504 at worst) before
        // RESTinio would close the connection without one.
        .handle_request_timeout(std::chrono::milliseconds(cfg.request_timeout_ms)
                                + std::chrono::milliseconds(
                                  std::max(cfg.request_timeout_ms, cfg.import_timeout_ms))
                                + std::chrono::seconds(5))
        // The whole request, body included, must arrive within this. RESTinio
        // has one limit for every route, so it is sized for the largest upload;
        // the head deadline and the minimum body rate (http/wire.cpp) keep slow
        // clients from holding a connection that long for nothing.
        .read_next_http_message_timelimit(std::chrono::seconds(cfg.upload_timeout_s))
        .max_parallel_connections(cfg.max_connections)
        .incoming_http_msg_limits(restinio::incoming_http_msg_limits_t{}
                                    .max_url_size(8u << 10)
                                    .max_field_name_size(256)
                                    .max_field_value_size(16u << 10)
                                    .max_field_count(100)
                                    .max_body_size(std::max(cfg.max_body_bytes, cfg.max_upload_bytes)))
        .acceptor_post_bind_hook([port](restinio::asio_ns::ip::tcp::acceptor& acc) {
          *port = acc.local_endpoint().port();
        }),
      cfg.http_threads);
  } catch (const std::exception& e) {
    return fail(errc::unavailable, "cannot listen on " + cfg.host + ":" + std::to_string(cfg.port)
                                     + ": " + e.what());
  }
  p->port = port->load();
  return std::unique_ptr<http_server>(new http_server(std::move(p)));
}

} // namespace rookery

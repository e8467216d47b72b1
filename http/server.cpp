#include "http/server.hpp"

#include <atomic>
#include <future>

#include "actors/cluster.hpp"
#include "common/inflight.hpp"
#include "common/log.hpp"
#include "common/metrics.hpp"
#include "http/context.hpp"
#include "messages/json.hpp"
#include "messages/registration.hpp"

namespace rookery {

using namespace rookery::http;

struct http_server::impl {
  restinio::running_server_handle_t<traits_t> server;
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
  auto router = std::make_unique<router_t>();
  register_v1_routes(*router, a);
  register_model_routes(*router, a);
  register_train_routes(*router, a);
  register_ops_routes(*router, a);
  auto p = std::make_unique<impl>();
  auto port = std::make_shared<std::atomic<uint16_t>>(0);
  try {
    p->server = restinio::run_async<traits_t>(
      restinio::own_io_context(),
      restinio::server_settings_t<traits_t>{}
        .address(cfg.host)
        .port(cfg.port)
        .request_handler(std::move(router))
        // Longer than any actor request's timeout, so the gateway always
        // answers (504) before RESTinio would drop the connection silently.
        .handle_request_timeout(std::chrono::milliseconds(cfg.request_timeout_ms) * 2
                                + std::chrono::seconds(5))
        .read_next_http_message_timelimit(std::chrono::seconds(60))
        .incoming_http_msg_limits(
          // Bodies up to the larger limit are read; each route then applies its
          // own limit and answers 413 (RESTinio would just close the socket).
          restinio::incoming_http_msg_limits_t{}.max_body_size(
            std::max(cfg.max_body_bytes, cfg.max_upload_bytes) + (1u << 20)))
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

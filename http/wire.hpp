// Defences below the router, for hostile clients (internal to http/):
//  - per-route body limits applied while the body is read, not after;
//  - a deadline for the request head and a minimum rate for bodies;
//  - an HTTP answer (400, 408, 413, 414, 431) instead of a silently closed
//    socket when RESTinio's parser rejects a request, written before the
//    connection closes, followed by a lingering close so the client reads it.
//
// RESTinio 0.6 fixes its parser callbacks and closes the socket on any parse
// error. Its traits let us name our own HTTP-methods mapper, logger and socket
// type, and the callback table is a function template of the mapper, so
// specialising it for our mapper gives us the callbacks. The logger sees the
// parser's error text; the socket, whose shutdown() RESTinio calls right after
// on the same thread, writes the answer.
#pragma once
#include <chrono>
#include <cstddef>
#include <string>

#include <restinio/all.hpp>

namespace rookery::http::wire {

struct limits_t {
  std::size_t json_body = 1u << 20;      // every route not named below
  std::size_t embed_body = 32u << 20;    // POST /v1/embed, /v1/pipelines/*/embed, /v2/models/*/infer
  std::size_t upload_body = 1u << 30;    // POST /v1/models, POST /v1/datasets
  std::chrono::milliseconds head_timeout{30000}; // request line and headers
  std::chrono::milliseconds body_grace{60000};   // then at least min_body_rate bytes/s
  std::size_t min_body_rate = 64u << 10;
};

/// Sets the limits (once, at server start; read by every connection).
void set_limits(const limits_t& l);
const limits_t& limits();

/// The body limit of a request: `method` is http_parser's method number,
/// `target` the request target (path and query).
std::size_t body_limit(int method, const std::string& target);

/// Our HTTP-methods mapper: the standard one, under a type of our own.
struct methods_t : restinio::default_http_methods_t {};

/// RESTinio's logger interface; keeps the parser's error for the socket.
struct logger_t {
  template <typename B> void trace(B&&) const noexcept {}
  template <typename B> void info(B&&) const noexcept {}
  template <typename B> void warn(B&&) const noexcept {}
  template <typename B> void error(B&& builder) const noexcept {
    try {
      note_error(builder());
    } catch (...) {
    }
  }
  static void note_error(const std::string& message) noexcept;
};

/// A TCP socket that writes the pending rejection before it shuts down.
class socket_t : public restinio::asio_ns::ip::tcp::socket {
public:
  using base = restinio::asio_ns::ip::tcp::socket;
  using base::base;
  using base::shutdown;
  void shutdown(base::shutdown_type what, restinio::asio_ns::error_code& ec);
};

/// Sets the answer the connection being parsed on this thread gets when its
/// parser stops with an error.
void reject(int status, std::string detail) noexcept;

/// Rejections and canned answers written so far (for /metrics and tests).
std::size_t rejections_written();

} // namespace rookery::http::wire

template <>
http_parser_settings
restinio::impl::create_parser_settings<rookery::http::wire::methods_t>() noexcept;

#include "http/wire.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/json_limits.hpp"
#include "common/log.hpp"
#include "common/metrics.hpp"
#include "http/problem.hpp"

namespace rookery::http::wire {

namespace {

limits_t g_limits;
std::atomic<std::size_t> g_written{0};

// The rejection of the request being parsed on this thread. Set by our parser
// callbacks or by the logger, taken by socket_t::shutdown, which RESTinio
// calls in the same call chain (consume_data -> trigger_error_and_close ->
// close -> shutdown).
struct pending_t {
  int status = 0;
  std::string detail;
};
thread_local pending_t t_pending;

// When each connection's current request began (keyed by its parser, which
// lives as long as the connection). Entries of connections that closed in
// the middle of a request are pruned once they are older than any deadline.
struct clock_table {
  using clock = std::chrono::steady_clock;
  std::mutex m;
  std::unordered_map<const http_parser*, clock::time_point> begun;
  void start(const http_parser* p) {
    std::lock_guard<std::mutex> lock(m);
    auto now = clock::now();
    if (begun.size() > 4096)
      for (auto i = begun.begin(); i != begun.end();)
        i = now - i->second > std::chrono::hours(2) ? begun.erase(i) : std::next(i);
    begun[p] = now;
  }
  clock::duration elapsed(const http_parser* p) {
    std::lock_guard<std::mutex> lock(m);
    auto i = begun.find(p);
    return i == begun.end() ? clock::duration::zero() : clock::now() - i->second;
  }
  void finish(const http_parser* p) {
    std::lock_guard<std::mutex> lock(m);
    begun.erase(p);
  }
};
clock_table& clocks() {
  static clock_table t;
  return t;
}

std::string canned_answer(const pending_t& p) {
  const std::string type = p.status == 400 ? "bad_request" : p.status == 408 ? "timeout"
                           : p.status == 413 ? "payload_too_large" : "headers_too_large";
  auto text = jsonx::dump(problem_document(p.status, type, p.detail));
  return "HTTP/1.1 " + std::to_string(p.status) + " " + http_reason(p.status) + "\r\n"
         + "Server: rookery\r\nContent-Type: application/problem+json\r\nConnection: close\r\n"
         + "Content-Length: " + std::to_string(text.size()) + "\r\n\r\n" + text;
}

// After a rejection the client may still be sending: closing a socket with
// unread input makes the kernel send RST, which can destroy the answer
// before the client reads it. Like nginx's lingering close, a duplicate of
// the descriptor is kept here, read and discarded until the client closes or
// two seconds pass.
class lingerer {
public:
  static lingerer& instance() {
    static lingerer* l = new lingerer(); // never destroyed: its thread outlives statics
    return *l;
  }
  void add(int fd) {
    {
      std::lock_guard<std::mutex> lock(m_);
      if (fds_.size() >= 256) {
        ::close(fd);
        return;
      }
      fds_.push_back({fd, std::chrono::steady_clock::now() + std::chrono::seconds(2)});
    }
    cv_.notify_one();
  }

private:
  struct entry {
    int fd;
    std::chrono::steady_clock::time_point deadline;
  };
  lingerer() {
    std::thread([this] { run(); }).detach();
  }
  void run() {
    std::vector<char> scratch(64 << 10);
    for (;;) {
      std::vector<entry> now_fds;
      {
        std::unique_lock<std::mutex> lock(m_);
        cv_.wait(lock, [&] { return !fds_.empty(); });
        now_fds = fds_;
      }
      std::vector<pollfd> pfds;
      for (auto& e : now_fds)
        pfds.push_back({e.fd, POLLIN, 0});
      ::poll(pfds.data(), pfds.size(), 100);
      std::vector<int> done;
      auto now = std::chrono::steady_clock::now();
      for (std::size_t i = 0; i < pfds.size(); ++i) {
        bool finished = now > now_fds[i].deadline;
        if (!finished && (pfds[i].revents & (POLLIN | POLLHUP | POLLERR))) {
          auto n = ::recv(pfds[i].fd, scratch.data(), scratch.size(), MSG_DONTWAIT);
          finished = n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR);
        }
        if (finished)
          done.push_back(pfds[i].fd);
      }
      if (done.empty())
        continue;
      std::lock_guard<std::mutex> lock(m_);
      for (int fd : done) {
        ::close(fd);
        for (auto i = fds_.begin(); i != fds_.end(); ++i)
          if (i->fd == fd) {
            fds_.erase(i);
            break;
          }
      }
    }
  }
  std::mutex m_;
  std::condition_variable cv_;
  std::vector<entry> fds_;
};

using restinio::impl::http_parser_ctx_t;

http_parser_ctx_t* ctx_of(http_parser* p) {
  return reinterpret_cast<http_parser_ctx_t*>(p->data);
}

std::string path_of(const std::string& target) {
  return target.substr(0, target.find('?'));
}

bool starts_with(const std::string& s, const char* prefix) {
  return s.rfind(prefix, 0) == 0;
}

bool ends_with(const std::string& s, const char* suffix) {
  std::string x{suffix};
  return s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0;
}

std::string mib(std::size_t n) {
  if (n >= (1u << 20) && n % (1u << 20) == 0)
    return std::to_string(n >> 20) + " MiB";
  return std::to_string(n) + " bytes";
}

int on_message_begin(http_parser* p) {
  t_pending = {};
  clocks().start(p);
  return 0;
}

// The head must arrive within head_timeout (checked as its bytes arrive; a
// client that sends nothing at all meets RESTinio's own read time limit).
int head_deadline(http_parser* p) {
  if (clocks().elapsed(p) > g_limits.head_timeout) {
    reject(408, "the request line and headers took longer than "
                  + std::to_string(g_limits.head_timeout.count() / 1000) + " s to arrive");
    return -1;
  }
  return 0;
}

int on_url(http_parser* p, const char* at, std::size_t n) {
  if (head_deadline(p))
    return -1;
  int rc = restinio::impl::restinio_url_cb(p, at, n);
  if (rc)
    reject(414, "the request target is longer than "
                  + std::to_string(ctx_of(p)->m_limits.max_url_size()) + " bytes");
  return rc;
}

int on_header_field(http_parser* p, const char* at, std::size_t n) {
  if (head_deadline(p))
    return -1;
  int rc = restinio::impl::restinio_header_field_cb(p, at, n);
  if (rc)
    reject(431, "too many header fields, or a header name that is too long");
  return rc;
}

int on_header_value(http_parser* p, const char* at, std::size_t n) {
  if (head_deadline(p))
    return -1;
  int rc = restinio::impl::restinio_header_value_cb(p, at, n);
  if (rc)
    reject(431, "a header value is too long");
  return rc;
}

int on_headers_complete(http_parser* p) {
  if (head_deadline(p))
    return -1;
  auto* ctx = ctx_of(p);
  ctx->m_leading_headers_completed = true;
  auto limit = body_limit(p->method, ctx->m_header.request_target());
  if (ULLONG_MAX != p->content_length && 0 < p->content_length) {
    if (p->content_length > limit) {
      reject(413, "the body announces " + std::to_string(p->content_length)
                    + " bytes; this route takes at most " + mib(limit));
      return -1;
    }
    // Reserve what was announced, but never more than 1 MiB up front: the
    // rest grows as bytes actually arrive.
    try {
      ctx->m_body.reserve(std::min<std::size_t>(p->content_length, 1u << 20));
    } catch (const std::exception&) {
      return -1;
    }
  }
  return 0;
}

int on_body(http_parser* p, const char* at, std::size_t n) {
  auto* ctx = ctx_of(p);
  auto total = static_cast<std::uint64_t>(ctx->m_body.size()) + n;
  auto limit = body_limit(p->method, ctx->m_header.request_target());
  if (total > limit) { // chunked bodies: no length was announced
    reject(413, "the body is larger than this route's limit of " + mib(limit));
    return -1;
  }
  auto elapsed = clocks().elapsed(p);
  auto allowed = g_limits.body_grace
                 + std::chrono::milliseconds(total * 1000 / std::max<std::size_t>(1, g_limits.min_body_rate));
  if (elapsed > allowed) {
    reject(408, "the body arrives slower than " + std::to_string(g_limits.min_body_rate >> 10)
                  + " KiB/s after a grace of " + std::to_string(g_limits.body_grace.count() / 1000)
                  + " s");
    return -1;
  }
  try {
    ctx->m_body.append(at, n);
  } catch (const std::exception&) {
    reject(413, "the body does not fit in memory");
    return -1;
  }
  return 0;
}

int on_message_complete(http_parser* p) {
  clocks().finish(p);
  return restinio::impl::restinio_message_complete_cb<methods_t>(p);
}

} // namespace

void set_limits(const limits_t& l) {
  g_limits = l;
}

const limits_t& limits() {
  return g_limits;
}

std::size_t body_limit(int method, const std::string& target) {
  auto path = path_of(target);
  if (method == HTTP_POST) {
    if (path == "/v1/models" || path == "/v1/datasets")
      return g_limits.upload_body;
    if (path == "/v1/embed" || (starts_with(path, "/v1/pipelines/") && ends_with(path, "/embed"))
        || (starts_with(path, "/v2/models/") && ends_with(path, "/infer")))
      return g_limits.embed_body;
  }
  return g_limits.json_body;
}

void reject(int status, std::string detail) noexcept {
  try {
    if (t_pending.status == 0) // the first reason is the real one
      t_pending = {status, std::move(detail)};
  } catch (...) {
  }
}

std::size_t rejections_written() {
  return g_written.load();
}

void logger_t::note_error(const std::string& message) noexcept {
  // "[connection:N] parser error HPE_X: description"
  auto at = message.find("parser error ");
  if (at == std::string::npos)
    return;
  auto what = message.substr(at + 13);
  if (what.rfind("HPE_HEADER_OVERFLOW", 0) == 0)
    reject(431, "the request head is larger than 80 KiB");
  else if (what.rfind("HPE_CB_", 0) == 0)
    reject(400, "the request was refused while it was read");
  else
    reject(400, "malformed HTTP request: " + what);
}

void socket_t::shutdown(base::shutdown_type what, restinio::asio_ns::error_code& ec) {
  if (t_pending.status != 0 && is_open()) {
    auto answer = canned_answer(t_pending);
    log::info("access - - - {} rejected: {}", t_pending.status, t_pending.detail);
    metrics::instance().http_request("-", "rejected", t_pending.status, 0.0);
    t_pending = {};
    int fd = native_handle();
    ::send(fd, answer.data(), answer.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    ++g_written;
    ::shutdown(fd, SHUT_WR);
    int keep = ::dup(fd);
    if (keep >= 0)
      lingerer::instance().add(keep);
    ec = {};
    return;
  }
  base::shutdown(what, ec);
}

} // namespace rookery::http::wire

template <>
http_parser_settings
restinio::impl::create_parser_settings<rookery::http::wire::methods_t>() noexcept {
  namespace w = rookery::http::wire;
  http_parser_settings s;
  http_parser_settings_init(&s);
  s.on_message_begin = [](http_parser* p) { return w::on_message_begin(p); };
  s.on_url = [](http_parser* p, const char* at, size_t n) { return w::on_url(p, at, n); };
  s.on_header_field = [](http_parser* p, const char* at, size_t n) { return w::on_header_field(p, at, n); };
  s.on_header_value = [](http_parser* p, const char* at, size_t n) { return w::on_header_value(p, at, n); };
  s.on_headers_complete = [](http_parser* p) { return w::on_headers_complete(p); };
  s.on_body = [](http_parser* p, const char* at, size_t n) { return w::on_body(p, at, n); };
  s.on_chunk_header = [](http_parser* p) { return restinio::impl::restinio_chunk_header_cb(p); };
  s.on_chunk_complete = [](http_parser* p) { return restinio::impl::restinio_chunk_complete_cb(p); };
  s.on_message_complete = [](http_parser* p) { return w::on_message_complete(p); };
  return s;
}

// What a hostile client found (issue 8), each against the real server on
// loopback: nested JSON, bytes that are not UTF-8, malformed HTTP, bodies
// over a route's limit, cancelled jobs that kept training, and the smaller
// findings. Every answer must be an HTTP answer, and the server must live on.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "harness.hpp"

using namespace rookery::test;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

header_list bearer(const std::string& t) {
  return {{"Authorization", "Bearer " + t}};
}

/// A raw TCP exchange: sends `parts` one after another (waiting `gap`
/// between them), then reads until the server closes or `wait` passes.
/// Returns everything read.
std::string raw(uint16_t port, const std::vector<std::string>& parts,
                std::chrono::milliseconds wait = std::chrono::milliseconds(5000),
                std::chrono::milliseconds gap = std::chrono::milliseconds(0)) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return "";
  }
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (i > 0 && gap.count() > 0)
      std::this_thread::sleep_for(gap);
    const auto& p = parts[i];
    std::size_t sent = 0;
    while (sent < p.size()) {
      auto n = ::send(fd, p.data() + sent, p.size() - sent, MSG_NOSIGNAL);
      if (n <= 0)
        break; // the server may answer and close before taking everything
      sent += static_cast<std::size_t>(n);
    }
  }
  std::string out;
  char buf[65536];
  auto deadline = std::chrono::steady_clock::now() + wait;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                  deadline - std::chrono::steady_clock::now()).count();
    if (::poll(&p, 1, static_cast<int>(std::max<long long>(1, left))) <= 0)
      break;
    auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0)
      break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

int status_of(const std::string& answer) {
  // "HTTP/1.1 413 Payload Too Large"
  if (answer.rfind("HTTP/1.", 0) != 0 || answer.size() < 12)
    return 0;
  return std::stoi(answer.substr(9, 3));
}

std::string body_of(const std::string& answer) {
  auto at = answer.find("\r\n\r\n");
  return at == std::string::npos ? "" : answer.substr(at + 4);
}

bool alive(const server& s) {
  return http("GET", s.url("/healthz")).status == 200;
}

std::string nested_arrays(std::size_t depth) {
  return std::string(depth, '[') + std::string(depth, ']');
}

std::string csv_form(const std::string& boundary, const std::string& name, const std::string& csv) {
  std::string b;
  b += "--" + boundary + "\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n" + name + "\r\n";
  b += "--" + boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"t.csv\"\r\n"
       "Content-Type: text/csv\r\n\r\n" + csv + "\r\n";
  return b + "--" + boundary + "--\r\n";
}

} // namespace

TEST_CASE("hardening: deeply nested JSON is refused with 400, before authentication",
          "[integration][hardening]") {
  temp_dir dir;
  server s{dir.path, {}, test_env()};
  // About 120 KB of nesting killed the process with SIGSEGV before the fix.
  auto deep = nested_arrays(60000);
  auto login = http("POST", s.url("/v1/auth/login"), deep);
  CHECK(login.status == 400);
  CHECK(login.headers["content-type"] == "application/problem+json");
  CHECK(login.json()["detail"].get<std::string>().find("nests deeper") != std::string::npos);
  CHECK(http("POST", s.url("/v1/jobs"), "{\"a\":" + deep + "}").status == 400);
  CHECK(http("POST", s.url("/v1/users"), deep).status == 400);
  // Nesting within the limit is fine (and still not a valid login).
  CHECK(http("POST", s.url("/v1/auth/login"), "{\"username\": [[[[1]]]]}").status == 400);
  REQUIRE(alive(s));
  auto token = signup_and_login(s, "ada");
  CHECK(http("POST", s.url("/v1/keys"), "{\"name\":" + deep + "}", bearer(token)).status == 400);
  CHECK(alive(s));
}

TEST_CASE("hardening: paths and fields that are not UTF-8 get problem+json answers",
          "[integration][hardening]") {
  temp_dir dir;
  server s{dir.path, {}, test_env()};
  auto token = signup_and_login(s, "ada");
  // RESTinio's router percent-decodes the path and its parameters as UTF-8
  // before any handler runs; what does not decode is the client's error.
  for (auto [method, path] : std::vector<std::pair<const char*, const char*>>{
         {"GET", "/v1/jobs/%ff"}, {"GET", "/v1/pipelines/%ff"}, {"GET", "/v1/datasets/caf%e9"},
         {"DELETE", "/v1/keys/%ff"}, {"DELETE", "/v1/jobs/%c3%28"}, {"GET", "/v1/jobs/%zz"},
         {"GET", "/v1/jobs/%f"}}) {
    auto r = http(method, s.url(path), "", bearer(token));
    INFO(method << " " << path << " -> " << r.status << " " << r.body);
    CHECK(r.status == 400);
    CHECK(r.headers["content-type"] == "application/problem+json");
    CHECK(r.json()["detail"].get<std::string>().find("UTF-8") != std::string::npos);
  }
  // /v2 answers in the Open Inference Protocol's error shape.
  auto v2 = http("GET", s.url("/v2/models/%ff"), "", bearer(token));
  CHECK(v2.status == 400);
  CHECK(v2.json().contains("error"));
  // Unauthenticated too.
  auto nope = http("GET", s.url("/nope%ff"));
  CHECK(nope.status == 400);
  CHECK(!nope.json().is_discarded());
  // Valid UTF-8 that names nothing is a 404 whose answer echoes it.
  auto cafe = http("GET", s.url("/v1/datasets/caf%c3%a9"), "", bearer(token));
  CHECK(cafe.status == 404);
  CHECK(cafe.json()["detail"].get<std::string>().find("caf") != std::string::npos);
  // A Latin-1 string inside a JSON body is not JSON (RFC 8259 says UTF-8).
  auto latin1 = http("POST", s.url("/v1/keys"), "{\"name\": \"caf\xe9\", \"scopes\": [\"embed\"]}",
                     bearer(token));
  CHECK(latin1.status == 400);
  // A multipart field in Latin-1: the data-set name is refused, with an answer.
  const std::string boundary = "b0undary";
  auto h = bearer(token);
  h.emplace_back("Content-Type", "multipart/form-data; boundary=" + boundary);
  auto up = http("POST", s.url("/v1/datasets"), csv_form(boundary, "caf\xe9", "a,b\n1,2\n3,4\n"), h);
  CHECK(up.status == 400);
  CHECK(!up.json().is_discarded());
  CHECK(alive(s));
}

TEST_CASE("hardening: malformed HTTP gets 400, 413 or 431, not a closed socket",
          "[integration][hardening]") {
  temp_dir dir;
  server s{dir.path, {}, test_env()};
  const auto port = s.port();
  const std::string host = "Host: 127.0.0.1\r\n";
  struct probe {
    const char* what;
    std::string request;
    int want;
  };
  std::vector<probe> probes = {
    {"garbage request line", "HELLO THERE\r\n\r\n", 400},
    {"binary request line", std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11), 400},
    {"negative Content-Length",
     "POST /v1/auth/login HTTP/1.1\r\n" + host + "Content-Length: -5\r\n\r\nhello", 400},
    {"non-numeric Content-Length",
     "POST /v1/auth/login HTTP/1.1\r\n" + host + "Content-Length: ten\r\n\r\nhello", 400},
    {"huge Content-Length",
     "POST /v1/auth/login HTTP/1.1\r\n" + host + "Content-Length: 99999999999999999999999\r\n\r\n",
     400},
    {"conflicting Content-Length",
     "POST /v1/auth/login HTTP/1.1\r\n" + host + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
     400},
    {"bad chunk size",
     "POST /v1/auth/login HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
     400},
    {"16 MiB header block",
     "GET /healthz HTTP/1.1\r\n" + host + "X-Big: " + std::string(16u << 20, 'a') + "\r\n\r\n", 431},
    {"a 100 KiB header value", "GET /healthz HTTP/1.1\r\n" + host + "X-Big: " + std::string(100u << 10, 'a') + "\r\n\r\n",
     431},
    {"too many header fields", [&] {
       std::string r = "GET /healthz HTTP/1.1\r\n" + host;
       for (int i = 0; i < 200; ++i)
         r += "X-F" + std::to_string(i) + ": 1\r\n";
       return r + "\r\n";
     }(), 431},
    {"a 20 KiB request target", "GET /" + std::string(20u << 10, 'a') + " HTTP/1.1\r\n" + host + "\r\n", 414},
  };
  for (auto& p : probes) {
    auto answer = raw(port, {p.request});
    INFO(p.what << ": " << answer.substr(0, 200));
    CHECK(status_of(answer) == p.want);
    auto body = json::parse(body_of(answer), nullptr, false);
    CHECK(body.is_object());
    CHECK(body.value("status", 0) == p.want);
  }
  CHECK(alive(s));
}

TEST_CASE("hardening: body limits apply while reading, per route",
          "[integration][hardening]") {
  temp_dir dir;
  server s{dir.path, {}, test_env()};
  // An unauthenticated login announcing 64 MiB is refused at once, from the
  // headers alone: the client never has to send (nor the server buffer) it.
  auto t0 = std::chrono::steady_clock::now();
  auto answer = raw(s.port(), {"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: "
                               "application/json\r\nContent-Length: 67108864\r\n\r\n{\"user"},
                    std::chrono::milliseconds(3000));
  auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(status_of(answer) == 413);
  CHECK(body_of(answer).find("at most 1 MiB") != std::string::npos);
  CHECK(secs < 2.5);
  // The same body without a length (chunked) is cut when it passes 1 MiB.
  std::vector<std::string> chunks{"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"};
  std::string chunk(256u << 10, ' ');
  for (int i = 0; i < 6; ++i)
    chunks.push_back("40000\r\n" + chunk + "\r\n");
  chunks.push_back("0\r\n\r\n");
  CHECK(status_of(raw(s.port(), chunks)) == 413);
  // Embedding routes take more (max_body_bytes): 2 MiB is read and judged.
  auto token = signup_and_login(s, "ada");
  auto big = http("POST", s.url("/v1/embed"), std::string(2u << 20, '\x01'), bearer(token));
  CHECK(big.status == 415); // bytes no pipeline takes: judged by type, not cut off by size
  // And a route's own limit still answers 413 with a problem document.
  auto over = http("POST", s.url("/v1/auth/login"), std::string((1u << 20) + 10, ' '));
  CHECK(over.status == 413);
  CHECK(alive(s));
}

TEST_CASE("hardening: a request head that dribbles in past the deadline gets 408",
          "[integration][hardening]") {
  temp_dir dir;
  auto env = test_env();
  env["ROOKERY_HEAD_TIMEOUT_MS"] = "400";
  server s{dir.path, {}, env};
  auto answer = raw(s.port(), {"GET /healthz HTTP/1.1\r\nHo", "st: x\r\n", "\r\n"},
                    std::chrono::milliseconds(3000), std::chrono::milliseconds(300));
  CHECK(status_of(answer) == 408);
  // A prompt client on the same server is served.
  CHECK(status_of(raw(s.port(), {"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"})) == 200);
}

TEST_CASE("hardening: cancelled jobs free their slot only when their trainer has stopped",
          "[integration][hardening][train]") {
  temp_dir dir;
  auto env = test_env();
  env["ROOKERY_MAX_RUNNING_JOBS"] = "1";
  server s{dir.path, {}, env};
  auto token = signup_and_login(s, "ada");
  json spec{{"trainer", "classifier"}, {"dataset", "fashion-mnist"}, {"model", "small_cnn"},
            {"hyper", {{"epochs", 5}, {"batch_size", 32}, {"limit_train", 20000}}}};
  std::vector<std::string> ids;
  for (int i = 0; i < 8; ++i) {
    auto r = http("POST", s.url("/v1/jobs"), spec.dump(), bearer(token));
    REQUIRE(r.status == 202);
    ids.push_back(r.json()["id"].get<std::string>());
  }
  for (auto& id : ids) {
    auto r = http("DELETE", s.url("/v1/jobs/" + id), "", bearer(token));
    CHECK(r.status == 200);
    CHECK(r.json()["state"] == "cancelled");
  }
  std::this_thread::sleep_for(std::chrono::seconds(2));
  // Before the fix each cancel started the next queued job: all eight ran.
  int started = 0;
  for (auto& id : ids) {
    auto j = http("GET", s.url("/v1/jobs/" + id), "", bearer(token)).json();
    CHECK(j["state"] == "cancelled");
    if (j["started_at"].is_number())
      ++started;
  }
  CHECK(started <= 1);
  // A job resumed at once after its cancel waits for its old run to stop,
  // then runs alone.
  auto first = ids.front();
  auto resumed = http("POST", s.url("/v1/jobs/" + first + "/resume"), "", bearer(token));
  CHECK(resumed.status == 202);
  auto cancel = http("DELETE", s.url("/v1/jobs/" + first), "", bearer(token));
  CHECK(cancel.status == 200);
  CHECK(alive(s));
}

TEST_CASE("hardening: the smaller findings", "[integration][hardening]") {
  temp_dir dir;
  // Leftovers of a crash in the middle of an upload and of imports.
  fs::create_directories(dir.path + "/uploads");
  std::ofstream(dir.path + "/uploads/upload_deadbeef.bin") << "half an upload";
  fs::create_directories(dir.path + "/models/m/.staging-3");
  std::ofstream(dir.path + "/models/m/.staging-3/weights.pth") << "half a copy";
  fs::create_directories(dir.path + "/datasets/.import-x-123");
  fs::create_directories(dir.path + "/datasets/u1/.import-y-456");
  server s{dir.path, {}, admin_env()};
  CHECK(!fs::exists(dir.path + "/uploads/upload_deadbeef.bin"));
  CHECK(!fs::exists(dir.path + "/models/m/.staging-3"));
  CHECK(!fs::exists(dir.path + "/datasets/.import-x-123"));
  CHECK(!fs::exists(dir.path + "/datasets/u1/.import-y-456"));

  auto ada = signup_and_login(s, "ada");
  auto bob = signup_and_login(s, "bob");
  // An expiry that overflowed into a key born expired.
  auto k = http("POST", s.url("/v1/keys"),
                R"({"name": "k", "scopes": ["embed"], "expires_in_s": 9223372036854775807})",
                bearer(ada));
  CHECK(k.status == 400);
  CHECK(k.json()["detail"].get<std::string>().find("at most") != std::string::npos);
  CHECK(http("POST", s.url("/v1/keys"),
             R"({"name": "k", "scopes": ["embed"], "expires_in_s": 18446744073709551615})",
             bearer(ada)).status == 400);
  auto ok = http("POST", s.url("/v1/keys"), R"({"name": "k", "scopes": ["embed"], "expires_in_s": 3600})",
                 bearer(ada));
  REQUIRE(ok.status == 201);
  CHECK(ok.json()["expires_at"].get<int64_t>() > 0);

  // Data-set names are per user: bob's "shared" neither clashes with nor
  // reveals ada's.
  const std::string boundary = "b0undary";
  auto form_headers = [&](const std::string& token) {
    auto h = bearer(token);
    h.emplace_back("Content-Type", "multipart/form-data; boundary=" + boundary);
    return h;
  };
  auto csv = std::string("x,y\n1,2\n3,4\n5,6\n");
  CHECK(http("POST", s.url("/v1/datasets"), csv_form(boundary, "shared", csv), form_headers(ada)).status == 201);
  CHECK(http("GET", s.url("/v1/datasets/shared"), "", bearer(bob)).status == 404);
  auto bobs = http("POST", s.url("/v1/datasets"), csv_form(boundary, "shared", csv), form_headers(bob));
  CHECK(bobs.status == 201);
  CHECK(http("POST", s.url("/v1/datasets"), csv_form(boundary, "shared", csv), form_headers(bob)).status == 409);
  CHECK(http("GET", s.url("/v1/datasets/shared"), "", bearer(bob)).json()["owner_id"]
        != http("GET", s.url("/v1/datasets/shared"), "", bearer(ada)).json()["owner_id"]);

  // Server file paths stay out of answers, for admins too.
  auto admin = http("POST", s.url("/v1/auth/login"), R"({"username":"root","password":"root-password"})")
                 .json()["token"].get<std::string>();
  std::string mp = "--" + boundary + "\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nm2\r\n--"
                   + boundary + "\r\nContent-Disposition: form-data; name=\"arch\"\r\n\r\nresnet18\r\n--"
                   + boundary + "\r\nContent-Disposition: form-data; name=\"weights\"; filename=\"w.pth\"\r\n\r\n"
                   + "not a weights file at all" + "\r\n--" + boundary + "--\r\n";
  auto bad_weights = http("POST", s.url("/v1/models"), mp, form_headers(admin));
  CHECK(bad_weights.status >= 400);
  CHECK(bad_weights.status < 500);
  CHECK(bad_weights.body.find(dir.path) == std::string::npos);
  CHECK(bad_weights.body.find(fs::canonical(dir.path).string()) == std::string::npos);

  // max_steps at the top of int64 is taken as "no limit", not refused as
  // negative; beyond int64 the message says so.
  json spec{{"trainer", "classifier"}, {"dataset", "fashion-mnist"}, {"model", "small_cnn"},
            {"hyper", {{"epochs", 1}, {"max_steps", int64_t{9223372036854775807}}}}};
  auto job = http("POST", s.url("/v1/jobs"), spec.dump(), bearer(ada));
  CHECK(job.status == 202);
  if (job.status == 202)
    http("DELETE", s.url("/v1/jobs/" + job.json()["id"].get<std::string>()), "", bearer(ada));
  auto beyond = http("POST", s.url("/v1/jobs"),
                     R"({"trainer": "classifier", "dataset": "fashion-mnist", "model": "small_cnn",
                         "hyper": {"max_steps": 1e300}})",
                     bearer(ada));
  CHECK(beyond.status == 400);
  CHECK(beyond.json()["detail"].get<std::string>().find("out of range") != std::string::npos);
  CHECK(alive(s));
}

TEST_CASE("hardening: an upload slower than a minute still gets its answer",
          "[integration][hardening][full]") {
  temp_dir dir;
  server s{dir.path, {}, admin_env()};
  auto admin = http("POST", s.url("/v1/auth/login"), R"({"username":"root","password":"root-password"})")
                 .json()["token"].get<std::string>();
  const std::string boundary = "b0undary";
  std::string head = "--" + boundary + "\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nslow\r\n--"
                     + boundary + "\r\nContent-Disposition: form-data; name=\"arch\"\r\n\r\nresnet18\r\n--"
                     + boundary + "\r\nContent-Disposition: form-data; name=\"weights\"; filename=\"w.pth\"\r\n\r\n";
  std::string tail = "\r\n--" + boundary + "--\r\n";
  const std::size_t payload = 16u << 20; // 16 MiB at about 220 KB/s: about 75 s
  std::vector<std::string> parts;
  parts.push_back("POST /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + admin
                  + "\r\nContent-Type: multipart/form-data; boundary=" + boundary
                  + "\r\nContent-Length: " + std::to_string(head.size() + payload + tail.size())
                  + "\r\n\r\n" + head);
  const std::size_t piece = 22u << 10;
  for (std::size_t sent = 0; sent < payload; sent += piece)
    parts.push_back(std::string(std::min(piece, payload - sent), 'w'));
  parts.push_back(tail);
  auto t0 = std::chrono::steady_clock::now();
  auto answer = raw(s.port(), parts, std::chrono::milliseconds(30000), std::chrono::milliseconds(100));
  auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  INFO("after " << secs << " s: " << answer.substr(0, 300));
  CHECK(secs > 60);
  // Not weights, so refused, but with an answer rather than a cut socket.
  CHECK(status_of(answer) == 422);
}

// The embedding API end to end: real server process, real photo, real weights
// exported by python3-torchvision, bad input of every kind, jobs, operations.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <atomic>
#include <thread>
#include <fstream>

#include "harness.hpp"

using namespace rookery::test;
using nlohmann::json;

namespace {

header_list bearer(const std::string& t) {
  return {{"Authorization", "Bearer " + t}};
}

header_list with(header_list h, std::string k, std::string v) {
  h.emplace_back(std::move(k), std::move(v));
  return h;
}

void import_weights(const std::string& data) {
  auto cmd = std::string{ROOKERY_BINARY} + " models import --arch resnet18 --name resnet18 --weights "
             + exported().weights() + " --data " + data + " > " + data + "/import.log 2>&1";
  REQUIRE(sh(cmd) == 0);
}

double cosine(const std::vector<float>& a, const json& b) {
  double dot = 0, na = 0, nb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    double y = b[i].get<double>();
    dot += a[i] * y;
    na += a[i] * a[i];
    nb += y * y;
  }
  return dot / std::sqrt(na * nb);
}

std::string png_with_size(uint32_t w, uint32_t h) {
  // A PNG signature and IHDR claiming w x h; no image data follows.
  std::string s = "\x89PNG\r\n\x1a\n";
  s += std::string("\0\0\0\x0dIHDR", 8);
  for (uint32_t v : {w, h})
    for (int i = 3; i >= 0; --i)
      s += static_cast<char>((v >> (8 * i)) & 0xff);
  s += std::string("\x08\x02\0\0\0", 5);
  s += std::string("\0\0\0\0", 4); // CRC (not checked before the size)
  s += std::string(64, '\0');
  return s;
}

} // namespace

TEST_CASE("embedding a real photo matches torchvision's pipeline", "[integration][embed]") {
  temp_dir dir;
  import_weights(dir.path);
  server s{dir.path};
  auto token = signup_and_login(s, "alice");
  auto photo = read_file(photo_path());
  auto r = http("POST", s.url("/v1/embed"), photo,
                with(bearer(token), "Content-Type", "application/octet-stream"));
  REQUIRE(r.status == 200);
  auto j = r.json();
  CHECK(j["pipeline"] == "image");
  CHECK(j["mime"] == "image/png");
  CHECK(j["model"] == "resnet18");
  CHECK(j["dim"] == 512);
  REQUIRE(j["embedding"].size() == 512);
  double norm = 0;
  for (auto& v : j["embedding"])
    norm += v.get<double>() * v.get<double>();
  CHECK(std::abs(std::sqrt(norm) - 1.0) < 1e-4);
  auto cos = cosine(exported().photo_embedding, j["embedding"]);
  INFO("cosine with torchvision = " << cos);
  CHECK(cos >= 0.99);

  // Same through multipart form data and the explicit pipeline route.
  std::string boundary = "rookeryboundary42";
  std::string form = "--" + boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cat.png\"\r\n"
                     "Content-Type: image/png\r\n\r\n" + photo + "\r\n--" + boundary + "--\r\n";
  auto m = http("POST", s.url("/v1/pipelines/image/embed"), form,
                with(bearer(token), "Content-Type", "multipart/form-data; boundary=" + boundary));
  REQUIRE(m.status == 200);
  CHECK(cosine(exported().photo_embedding, m.json()["embedding"]) >= 0.99);

  // The pipeline listing says the weights are real.
  auto p = http("GET", s.url("/v1/pipelines"), "", bearer(token));
  REQUIRE(p.status == 200);
  CHECK(p.json()["pipelines"][0]["pretrained"] == true);
  CHECK(p.json()["pipelines"][0]["ready"] == true);
}

// Issue 12's regression guard: the default configuration serves the
// inference-optimised graph (traced, frozen, conv-BN folded, oneDNN), says so
// in GET /v1/pipelines, and counts the path every forward pass took, so a
// change that silently falls back to eager fails here. Not timed.
TEST_CASE("the image pipeline runs the inference-optimised graph, and says so", "[integration][embed]") {
  temp_dir dir;
  import_weights(dir.path);
  server s{dir.path};
  auto token = signup_and_login(s, "alice");
  auto photo = read_file(photo_path());
  auto r = http("POST", s.url("/v1/embed"), photo, with(bearer(token), "Content-Type", "image/png"));
  REQUIRE(r.status == 200);
  CHECK(cosine(exported().photo_embedding, r.json()["embedding"]) >= 0.99); // torchvision's answer

  auto p = http("GET", s.url("/v1/pipelines/image"), "", bearer(token));
  REQUIRE(p.status == 200);
  const auto info = p.json();
  INFO(info.dump());
  REQUIRE(info["inference"].is_object());
  CHECK(info["inference"]["mode"] == "optimized");
  const auto& embed = info["inference"]["embed"];
  CHECK(embed["shape"] == json::array({3, 224, 224}));
  CHECK(embed["parity"].get<double>() <= 1e-4);
  CHECK(embed["prepare_ms"].get<double>() > 0);
  std::string passes;
  for (auto& x : embed["passes"])
    passes += x.get<std::string>() + " ";
  CHECK(passes.find("freeze") != std::string::npos);
  CHECK(passes.find("conv_bn_fold(20/20)") != std::string::npos);
  CHECK(passes.find("onednn") != std::string::npos);

  auto m = http("GET", s.url("/metrics"));
  REQUIRE(m.status == 200);
  INFO(m.body);
  CHECK(m.body.find(R"(rookery_model_forward_total{model="resnet18",route="embed",path="optimized"})")
        != std::string::npos);
  CHECK(m.body.find(R"(route="embed",path="eager")") == std::string::npos);
}

TEST_CASE("inference = eager keeps the eager modules and reports why", "[integration][embed]") {
  temp_dir dir;
  import_weights(dir.path);
  auto env = test_env();
  env["ROOKERY_INFERENCE"] = "eager";
  server s{dir.path, {}, env};
  auto token = signup_and_login(s, "alice");
  auto r = http("POST", s.url("/v1/embed"), read_file(photo_path()),
                with(bearer(token), "Content-Type", "image/png"));
  REQUIRE(r.status == 200);
  CHECK(cosine(exported().photo_embedding, r.json()["embedding"]) >= 0.99);
  auto p = http("GET", s.url("/v1/pipelines/image"), "", bearer(token));
  REQUIRE(p.status == 200);
  INFO(p.body);
  CHECK(p.json()["inference"]["mode"] == "eager");
  CHECK(p.json()["inference"]["embed"]["reason"].get<std::string>().find("eager") != std::string::npos);
  auto m = http("GET", s.url("/metrics"));
  CHECK(m.body.find(R"(rookery_model_forward_total{model="resnet18",route="embed",path="eager"})")
        != std::string::npos);
}

TEST_CASE("without weights the server says so instead of pretending", "[integration][embed]") {
  temp_dir dir;
  server s{dir.path};
  auto token = signup_and_login(s, "alice");
  auto p = http("GET", s.url("/v1/pipelines/image"), "", bearer(token));
  REQUIRE(p.status == 200);
  CHECK(p.json()["pretrained"] == false);
  CHECK(p.json()["status"].get<std::string>().find("UNTRAINED") != std::string::npos);
  CHECK(s.output().find("UNTRAINED") != std::string::npos);
}

TEST_CASE("bad input gets a clear 4xx and the server keeps serving", "[integration][embed]") {
  temp_dir dir;
  server s{dir.path, {}, {{"ROOKERY_MAX_BODY_BYTES", "2000000"}, {"ROOKERY_MAX_IMAGE_PIXELS", "1000000"}}};
  auto token = signup_and_login(s, "alice");
  auto post = [&](const std::string& body, const std::string& query = "") {
    return http("POST", s.url("/v1/embed" + query), body,
                with(bearer(token), "Content-Type", "application/octet-stream"));
  };
  auto photo = read_file(photo_path("coffee.png"));

  // Bytes no pipeline takes (prose now goes to the text pipeline).
  auto text = post(std::string("\x01\x02\x03\xfe\xff\x00\x10\x80 not an image, not text", 32));
  CHECK(text.status == 415);
  CHECK(text.headers["content-type"] == "application/problem+json");
  CHECK(text.json()["detail"].get<std::string>().find("application/octet-stream") != std::string::npos);
  CHECK(text.json()["detail"].get<std::string>().find("image/jpeg") != std::string::npos);

  CHECK(post("").status == 400);
  auto truncated = post(photo.substr(0, photo.size() / 2));
  CHECK(truncated.status == 400);
  std::string corrupt = photo;
  for (size_t i = 100; i < corrupt.size(); i += 7)
    corrupt[i] = static_cast<char>(corrupt[i] ^ 0x5a);
  CHECK(post(corrupt).status == 400);
  CHECK(post(png_with_size(100000, 100000)).status == 413);
  auto big = post(std::string(2100000, 'x'));
  CHECK(big.status == 413);
  CHECK(big.json()["status"] == 413);
  CHECK(post(photo, "?pipeline=nope").status == 404);
  // Malformed JSON elsewhere.
  CHECK(http("POST", s.url("/v1/keys"), "{\"name\":", with(bearer(token), "Content-Type", "application/json")).status == 400);
  // Unknown route.
  CHECK(http("GET", s.url("/v2/nothing")).status == 404);
  // Still serving.
  auto ok = post(photo);
  CHECK(ok.status == 200);
  CHECK(http("GET", s.url("/healthz")).status == 200);
}

TEST_CASE("async embedding jobs: submit, poll, list, cancel, isolation", "[integration][jobs]") {
  temp_dir dir;
  server s{dir.path};
  auto alice = signup_and_login(s, "alice");
  auto bob = signup_and_login(s, "bobby");
  auto photo = read_file(photo_path());
  auto sub = http("POST", s.url("/v1/embed?async=true"), photo, bearer(alice));
  REQUIRE(sub.status == 202);
  auto id = sub.json()["id"].get<std::string>();
  CHECK(sub.json()["state"] == "queued");
  json job;
  for (int i = 0; i < 600; ++i) {
    auto g = http("GET", s.url("/v1/jobs/" + id), "", bearer(alice));
    REQUIRE(g.status == 200);
    job = g.json();
    if (job["state"] == "succeeded" || job["state"] == "failed")
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  REQUIRE(job["state"] == "succeeded");
  CHECK(job["result"]["dim"] == 512);
  CHECK(job["result"]["embedding"].size() == 512);
  // Bob cannot see or cancel it.
  CHECK(http("GET", s.url("/v1/jobs/" + id), "", bearer(bob)).status == 404);
  CHECK(http("DELETE", s.url("/v1/jobs/" + id), "", bearer(bob)).status == 404);
  CHECK(http("GET", s.url("/v1/jobs"), "", bearer(bob)).json()["jobs"].empty());
  auto list = http("GET", s.url("/v1/jobs"), "", bearer(alice));
  REQUIRE(list.json()["jobs"].size() == 1);
  // A finished job cannot be cancelled.
  CHECK(http("DELETE", s.url("/v1/jobs/" + id), "", bearer(alice)).status == 409);
  // Cancel while queued: submit several, cancel the last at once.
  std::string last;
  for (int i = 0; i < 4; ++i)
    last = http("POST", s.url("/v1/embed?async=1"), photo, bearer(alice)).json()["id"];
  auto c = http("DELETE", s.url("/v1/jobs/" + last), "", bearer(alice));
  REQUIRE(c.status == 200);
  CHECK(c.json()["state"] == "cancelled");
  CHECK(http("GET", s.url("/v1/jobs/" + last), "", bearer(alice)).json()["state"] == "cancelled");
  CHECK(http("GET", s.url("/v1/jobs/nope"), "", bearer(alice)).status == 404);
}

TEST_CASE("operations: health, readiness, metrics, OpenAPI, request ids, SIGTERM",
          "[integration][ops]") {
  temp_dir dir;
  server s{dir.path};
  CHECK(http("GET", s.url("/healthz")).status == 200);
  CHECK(http("GET", s.url("/readyz")).status == 200);
  auto token = signup_and_login(s, "alice");
  http("POST", s.url("/v1/embed"), read_file(photo_path()), bearer(token));
  auto m = http("GET", s.url("/metrics"));
  REQUIRE(m.status == 200);
  CHECK(m.body.find("rookery_http_requests_total{method=\"POST\",route=\"/v1/embed\",status=\"200\"} 1") != std::string::npos);
  CHECK(m.body.find("rookery_http_request_duration_seconds_bucket") != std::string::npos);
  CHECK(m.body.find("rookery_model_compute_seconds_count{model=\"resnet18\"} 1") != std::string::npos);
  CHECK(m.body.find("rookery_model_queue_seconds") != std::string::npos);
  auto o = http("GET", s.url("/v1/openapi.json"));
  REQUIRE(o.status == 200);
  for (auto path : {"/v1/users", "/v1/auth/login", "/v1/auth/logout", "/v1/auth/me", "/v1/keys",
                    "/v1/keys/{id}", "/v1/embed", "/v1/jobs", "/v1/jobs/{id}", "/v1/pipelines",
                    "/healthz", "/readyz", "/metrics"})
    CHECK(o.json()["paths"].contains(path));
  auto r = http("GET", s.url("/healthz"), "", {{"X-Request-Id", "trace-123"}});
  CHECK(r.headers["x-request-id"] == "trace-123");
  CHECK(s.stop() == 0);
}

TEST_CASE("serve --print-config shows flags, environment and file merged", "[integration][config]") {
  temp_dir dir;
  std::ofstream(dir.path + "/c.json") << R"({"port": 9000, "max_batch": 4})";
  auto out = dir.path + "/out.json";
  auto cmd = std::string{"ROOKERY_REPLICAS=3 "} + ROOKERY_BINARY + " serve --print-config --config "
             + dir.path + "/c.json --port 9100 > " + out;
  REQUIRE(sh(cmd) == 0);
  auto j = json::parse(read_file(out));
  CHECK(j["port"] == 9100);    // flag beats file
  CHECK(j["max_batch"] == 4);  // file beats default
  CHECK(j["replicas"] == 3);   // environment
  CHECK(j["host"] == "127.0.0.1");
  std::ofstream(dir.path + "/bad.json") << R"({"prot": 1})";
  CHECK(sh(std::string{ROOKERY_BINARY} + " serve --print-config --config " + dir.path
           + "/bad.json 2>/dev/null") == 2);
}

TEST_CASE("a gateway embeds through a worker process over CAF", "[integration][cluster]") {
  temp_dir wdir, gdir;
  server worker{wdir.path, {"--role", "worker", "--cluster-port", "0"}};
  REQUIRE(worker.cluster_port() != 0);
  server gateway{gdir.path,
                 {"--role", "gateway", "--seeds", "127.0.0.1:" + std::to_string(worker.cluster_port())}};
  auto token = signup_and_login(gateway, "alice");
  json r;
  long status = 0;
  for (int i = 0; i < 100 && status != 200; ++i) { // until the gateway has connected
    auto resp = http("POST", gateway.url("/v1/embed"), read_file(photo_path()), bearer(token));
    status = resp.status;
    r = resp.json();
    if (status != 200)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  REQUIRE(status == 200);
  CHECK(r["dim"] == 512);
  CHECK(http("GET", gateway.url("/readyz")).status == 200);
  // The worker dies: the gateway answers 503 at once, not after a timeout.
  worker.kill();
  auto t0 = std::chrono::steady_clock::now();
  auto down = http("POST", gateway.url("/v1/embed"), read_file(photo_path()), bearer(token));
  CHECK(down.status == 503);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
  CHECK(http("GET", gateway.url("/readyz")).status == 503);
}

TEST_CASE("a gateway re-sends work from a dead worker to a live one", "[integration][cluster]") {
  temp_dir w1dir, w2dir, gdir;
  server w1{w1dir.path, {"--role", "worker", "--cluster-port", "0"}};
  server w2{w2dir.path, {"--role", "worker", "--cluster-port", "0"}};
  server gateway{gdir.path,
                 {"--role", "gateway", "--seeds",
                  "127.0.0.1:" + std::to_string(w1.cluster_port()) + ",127.0.0.1:"
                    + std::to_string(w2.cluster_port())}};
  auto token = signup_and_login(gateway, "alice");
  auto photo = read_file(photo_path());
  // Wait until both workers are connected (pipelines report 2 replicas).
  for (int i = 0; i < 100; ++i) {
    auto p = http("GET", gateway.url("/v1/pipelines/image"), "", bearer(token));
    if (p.status == 200 && p.json()["replicas"] == 2)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  REQUIRE(http("GET", gateway.url("/v1/pipelines/image"), "", bearer(token)).json()["replicas"] == 2);
  std::atomic<int> ok{0}, failed{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c)
    clients.emplace_back([&] {
      for (int i = 0; i < 6; ++i) {
        auto r = http("POST", gateway.url("/v1/embed"), photo, bearer(token));
        (r.status == 200 ? ok : failed)++;
      }
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  w1.kill();
  for (auto& t : clients)
    t.join();
  CHECK(failed == 0);
  CHECK(ok == 24);
}

TEST_CASE("rookery embed FILE gives the server's embedding without a server", "[integration][cli]") {
  temp_dir dir;
  import_weights(dir.path);
  auto out = dir.path + "/embed.json";
  // The imported ResNet-18 behind the image pipeline, as test_env() gives the servers.
  REQUIRE(sh("ROOKERY_PIPELINES='{\"image\": \"resnet18\"}' ROOKERY_BUILTIN_MODELS= "
             + std::string{ROOKERY_BINARY} + " embed " + photo_path() + " --data " + dir.path + " > "
             + out) == 0);
  auto j = json::parse(read_file(out));
  CHECK(j["dim"] == 512);
  CHECK(j["mime"] == "image/png");
  CHECK(cosine(exported().photo_embedding, j["embedding"]) >= 0.99);
  // Bytes no pipeline takes are refused with a clear message and a non-zero exit.
  std::ofstream(dir.path + "/blob.bin", std::ios::binary) << std::string("\x01\x02\x03\xfe\xff\x00 not an image", 20);
  CHECK(sh(std::string{ROOKERY_BINARY} + " embed " + dir.path + "/blob.bin --data " + dir.path
           + " 2>/dev/null") == 1);
  // Prose goes to the text pipeline.
  std::ofstream(dir.path + "/note.txt") << "just words\n";
  REQUIRE(sh(std::string{ROOKERY_BINARY} + " embed " + dir.path + "/note.txt --data " + dir.path + " > " + out
             + " 2>/dev/null") == 0);
  CHECK(json::parse(read_file(out))["pipeline"] == "text");
}

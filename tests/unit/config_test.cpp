// Configuration layering, metrics text, error mapping, rate limiting, sniffing.
#include <fstream>
#include <iterator>

#include "common/config.hpp"
#include "common/errc.hpp"
#include "common/metrics.hpp"
#include "common/mime.hpp"
#include "common/token_bucket.hpp"

using namespace rookery;

TEST_CASE("defaults are the embedded quick-start values", "[config]") {
  auto c = load_config("", {}, {});
  REQUIRE(c);
  CHECK(c->host == "127.0.0.1");
  CHECK(c->port == 8080);
  CHECK(c->data == "./rookery-data");
  CHECK(c->role == "all");
  CHECK(c->mime_table.empty()); // the pipelines' own MIME types decide
  CHECK(c->pipelines.empty());  // the built-in pipelines need no entry
}

TEST_CASE("file < environment < flags", "[config]") {
  auto path = std::string{"/tmp/rookery-config-test.json"};
  std::ofstream(path) << R"({"port": 9000, "max_batch": 4, "seeds": ["a:1"], "replicas": 2})";
  auto c = load_config(path, {{"ROOKERY_PORT", "9100"}, {"ROOKERY_REPLICAS", "3"},
                              {"ROOKERY_SEEDS", "h1:1,h2:2"}, {"ROOKERY_UNRELATED", "x"}},
                       {{"port", "9200"}, {"allow_untrained", "false"}});
  REQUIRE(c);
  CHECK(c->port == 9200);
  CHECK(c->max_batch == 4);
  CHECK(c->replicas == 3);
  CHECK(c->seeds == std::vector<std::string>{"h1:1", "h2:2"});
  CHECK_FALSE(c->allow_untrained);
}

TEST_CASE("bad configuration is refused with a message naming the setting", "[config]") {
  auto path = std::string{"/tmp/rookery-config-bad.json"};
  std::ofstream(path) << R"({"prot": 1})";
  auto c = load_config(path, {}, {});
  REQUIRE_FALSE(c);
  CHECK(c.error().message.find("prot") != std::string::npos);
  std::ofstream(path) << "{ not json";
  CHECK_FALSE(load_config(path, {}, {}));
  auto p = load_config("", {{"ROOKERY_PORT", "eighty"}}, {});
  REQUIRE_FALSE(p);
  CHECK(p.error().message.find("ROOKERY_PORT") != std::string::npos);
  CHECK_FALSE(load_config("", {}, {{"port", "-1"}}));
  CHECK_FALSE(load_config("", {}, {{"role", "boss"}}));
  CHECK_FALSE(load_config("", {}, {{"role", "gateway"}})); // needs seeds
  CHECK(load_config("", {}, {{"role", "gateway"}, {"seeds", "127.0.0.1:4242"}}));
  CHECK_FALSE(load_config("", {}, {{"seeds", "nocolon"}}));
  CHECK_FALSE(load_config("", {}, {{"nope", "1"}}));
}

TEST_CASE("the admin password is masked when the config is printed", "[config]") {
  auto c = load_config("", {{"ROOKERY_ADMIN_PASSWORD", "hunter22"}}, {});
  REQUIRE(c);
  CHECK(to_json_text(*c).find("hunter22") == std::string::npos);
}

TEST_CASE("every error kind maps to its HTTP status", "[errors]") {
  CHECK(http_status(errc::bad_request) == 400);
  CHECK(http_status(errc::unauthorized) == 401);
  CHECK(http_status(errc::not_found) == 404);
  CHECK(http_status(errc::payload_too_large) == 413);
  CHECK(http_status(errc::unsupported_media) == 415);
  CHECK(http_status(errc::too_many_requests) == 429);
  CHECK(http_status(errc::unavailable) == 503);
  CHECK(http_status(errc::timeout) == 504);
  CHECK(std::string{to_string(errc::unsupported_media)} == "unsupported_media_type");
}

TEST_CASE("token bucket: burst, then the steady rate", "[ratelimit]") {
  token_bucket b;
  int ok = 0;
  for (int i = 0; i < 10; ++i)
    ok += b.take(100.0, 2, 5) ? 1 : 0;
  CHECK(ok == 5);            // the burst
  CHECK_FALSE(b.take(100.1, 2, 5));
  CHECK(b.take(100.6, 2, 5)); // 0.6 s at 2/s refills one token
  CHECK_FALSE(b.take(100.6, 2, 5));
  CHECK(b.take(200.0, 2, 5)); // refills to the burst, not beyond
  int more = 0;
  for (int i = 0; i < 10; ++i)
    more += b.take(200.0, 2, 5) ? 1 : 0;
  CHECK(more == 4);
}

TEST_CASE("metrics render as Prometheus text with cumulative buckets", "[metrics]") {
  auto& m = metrics::instance();
  m.http_request("GET", "/unit-test", 200, 0.003);
  m.http_request("GET", "/unit-test", 200, 0.2);
  m.http_request("GET", "/unit-test", 404, 0.001);
  auto text = m.render();
  CHECK(text.find("rookery_http_requests_total{method=\"GET\",route=\"/unit-test\",status=\"200\"} 2") != std::string::npos);
  CHECK(text.find("rookery_http_requests_total{method=\"GET\",route=\"/unit-test\",status=\"404\"} 1") != std::string::npos);
  CHECK(text.find("rookery_http_request_duration_seconds_bucket{method=\"GET\",route=\"/unit-test\",le=\"0.005\"} 2") != std::string::npos);
  CHECK(text.find("rookery_http_request_duration_seconds_bucket{method=\"GET\",route=\"/unit-test\",le=\"+Inf\"} 3") != std::string::npos);
  CHECK(text.find("rookery_http_request_duration_seconds_count{method=\"GET\",route=\"/unit-test\"} 3") != std::string::npos);
}

TEST_CASE("libmagic sniffs types from bytes, not names", "[mime]") {
  std::ifstream in("/usr/lib/python3/dist-packages/skimage/data/chelsea.png", std::ios::binary);
  std::string png((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  REQUIRE(png.size() > 1000);
  CHECK(sniff_mime(png) == "image/png");
  CHECK(sniff_mime(png.substr(0, 100)) == "image/png"); // the header is enough
  CHECK(sniff_mime(std::string("\xff\xd8\xff\xe0\x00\x10JFIF\x00", 11) + std::string(64, '\0')) == "image/jpeg");
  CHECK(sniff_mime("hello, this is plain text\n") == "text/plain");
  CHECK(sniff_mime("") == "application/octet-stream");
}

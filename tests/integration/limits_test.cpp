// Decoder bounds seen through the server (issue 8): uploads that crashed the
// process or went past a bound before the limits were added.
#include <catch2/catch.hpp>

#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include <caffe2/serialize/inline_container.h>

#include "harness.hpp"

using namespace rookery::test;
using nlohmann::json;

namespace {

header_list with_auth(const std::string& token, const std::string& boundary) {
  return {{"Authorization", "Bearer " + token},
          {"Content-Type", "multipart/form-data; boundary=" + boundary}};
}

std::string part(const std::string& boundary, const std::string& name, const std::string& value,
                 const std::string& extra_headers = "") {
  return "--" + boundary + "\r\nContent-Disposition: form-data; name=\"" + name + "\"" +
         (name == "weights" || name == "file" ? "; filename=\"f.bin\"" : "") + "\r\n" + extra_headers +
         "\r\n" + value + "\r\n";
}

/// A torch.save-style zip whose data.pkl nests `depth` lists.
std::string deep_checkpoint(const std::string& dir, size_t depth) {
  const std::string path = dir + "/deep.pth";
  std::string pkl = std::string("\x80\x02", 2) + std::string(depth, ']') + std::string(depth - 1, 'a') + ".";
  {
    caffe2::serialize::PyTorchStreamWriter w(path);
    w.writeRecord("data.pkl", pkl.data(), pkl.size());
    w.writeRecord("byteorder", "little", 6);
    w.writeEndOfFile();
  }
  return read_file(path);
}

} // namespace

TEST_CASE("a pickle nested 300,000 deep is a 422, and the server lives on",
          "[integration][limits]") {
  temp_dir dir;
  auto env = test_env();
  env["ROOKERY_ADMIN_USER"] = "root";
  env["ROOKERY_ADMIN_PASSWORD"] = "root-password";
  server s{dir.path, {}, env};
  auto login = http("POST", s.url("/v1/auth/login"),
                    json{{"username", "root"}, {"password", "root-password"}}.dump());
  REQUIRE(login.status == 200);
  const auto admin = login.json()["token"].get<std::string>();
  const std::string b = "bOuNdArY";
  const auto body = part(b, "name", "deep") + part(b, "arch", "resnet18") +
                    part(b, "weights", deep_checkpoint(dir.path, 300'000)) + "--" + b + "--\r\n";
  auto r = http("POST", s.url("/v1/models"), body, with_auth(admin, b));
  CHECK(r.status == 422);
  CHECK_THAT(r.body, Catch::Contains("nested deeper than"));
  CHECK(http("GET", s.url("/healthz")).status == 200);
}

TEST_CASE("multipart forms are bounded in parts and header size", "[integration][limits]") {
  temp_dir dir;
  server s{dir.path, {}, test_env()};
  const auto token = signup_and_login(s, "ada");
  const std::string b = "bOuNdArY";
  const std::string csv = "x,y\n1,2\n";

  SECTION("more parts than a form has fields") {
    std::string body = part(b, "name", "t") + part(b, "file", csv);
    for (int i = 0; i < 100; ++i)
      body += part(b, "junk" + std::to_string(i), "x");
    body += "--" + b + "--\r\n";
    auto r = http("POST", s.url("/v1/datasets"), body, with_auth(token, b));
    CHECK(r.status == 400);
    CHECK_THAT(r.body, Catch::Contains("more than 64 parts"));
  }
  SECTION("a part with 20 KB of headers") {
    const std::string big = "X-Padding: " + std::string(20'000, 'p') + "\r\n";
    const std::string body = part(b, "name", "t", big) + part(b, "file", csv) + "--" + b + "--\r\n";
    auto r = http("POST", s.url("/v1/datasets"), body, with_auth(token, b));
    CHECK(r.status == 400);
    CHECK_THAT(r.body, Catch::Contains("headers are longer than"));
  }
  SECTION("the same form within bounds is accepted") {
    const std::string body = part(b, "name", "t") + part(b, "file", csv) + "--" + b + "--\r\n";
    auto r = http("POST", s.url("/v1/datasets"), body, with_auth(token, b));
    CHECK(r.status == 201);
  }
}

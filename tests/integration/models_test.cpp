// The model repository over HTTP and the Open Inference Protocol (/v2).
#include <catch2/catch.hpp>

#include <cmath>

#include "harness.hpp"

using namespace rookery::test;
using nlohmann::json;

namespace {

header_list bearer(const std::string& t) {
  return {{"Authorization", "Bearer " + t}};
}

std::string form(const std::string& boundary,
                 const std::vector<std::pair<std::string, std::string>>& fields) {
  std::string b;
  for (auto& [k, v] : fields) {
    b += "--" + boundary + "\r\nContent-Disposition: form-data; name=\"" + k + "\"";
    if (k == "weights")
      b += "; filename=\"w.pth\"\r\nContent-Type: application/octet-stream";
    b += "\r\n\r\n" + v + "\r\n";
  }
  return b + "--" + boundary + "--\r\n";
}

} // namespace

TEST_CASE("upload weights over HTTP, then infer through the Open Inference Protocol",
          "[integration][models]") {
  temp_dir dir;
  server s{dir.path, {}, {{"ROOKERY_ADMIN_USER", "root"}, {"ROOKERY_ADMIN_PASSWORD", "root-password"}}};
  auto login = http("POST", s.url("/v1/auth/login"),
                    json{{"username", "root"}, {"password", "root-password"}}.dump());
  REQUIRE(login.status == 200);
  auto admin = login.json()["token"].get<std::string>();
  auto user = signup_and_login(s, "alice");
  const std::string boundary = "xYzZy";
  auto ct = header_list{{"Content-Type", "multipart/form-data; boundary=" + boundary}};
  auto weights = read_file(exported().weights());
  auto body = form(boundary, {{"name", "r18"}, {"arch", "resnet18"}, {"weights", weights}});

  // Only admins install models.
  auto h = bearer(user);
  h.insert(h.end(), ct.begin(), ct.end());
  CHECK(http("POST", s.url("/v1/models"), body, h).status == 403);
  auto ha = bearer(admin);
  ha.insert(ha.end(), ct.begin(), ct.end());
  // Weights that do not fit the architecture are refused with the key report.
  auto wrong = http("POST", s.url("/v1/models"),
                    form(boundary, {{"name", "bad"}, {"arch", "resnet34"}, {"weights", weights}}), ha);
  CHECK(wrong.status == 422);
  CHECK(wrong.json()["detail"].get<std::string>().find("layer") != std::string::npos);
  auto up = http("POST", s.url("/v1/models"), body, ha);
  REQUIRE(up.status == 201);
  CHECK(up.json()["name"] == "r18");
  CHECK(up.json()["version"] == 1);
  auto list = http("GET", s.url("/v1/models"), "", bearer(user));
  REQUIRE(list.status == 200);
  REQUIRE(list.json()["models"].size() == 1);

  // Metadata and readiness.
  auto meta = http("GET", s.url("/v2/models/r18"), "", bearer(user));
  REQUIRE(meta.status == 200);
  CHECK(meta.json()["inputs"][0]["shape"] == json::array({-1, 3, 224, 224}));
  CHECK(meta.json()["outputs"][0]["shape"] == json::array({-1, 1000}));
  CHECK(http("GET", s.url("/v2/models/r18/ready"), "", bearer(user)).status == 200);

  // Inference matches torchvision's logits for the same input.
  auto input = exported().floats("input.bin");
  auto logits = exported().floats("logits.bin");
  json req{{"id", "q1"},
           {"inputs", json::array({{{"name", "input"}, {"shape", {2, 3, 224, 224}},
                                    {"datatype", "FP32"}, {"data", input}}})}};
  auto inf = http("POST", s.url("/v2/models/r18/infer"), req.dump(), bearer(user));
  REQUIRE(inf.status == 200);
  auto out = inf.json()["outputs"][0];
  CHECK(inf.json()["model_name"] == "r18");
  CHECK(inf.json()["id"] == "q1");
  CHECK(out["shape"] == json::array({2, 1000}));
  REQUIRE(out["data"].size() == logits.size());
  double max_diff = 0, max_ref = 1;
  for (size_t i = 0; i < logits.size(); ++i) {
    max_diff = std::max(max_diff, std::abs(out["data"][i].get<double>() - logits[i]));
    max_ref = std::max(max_ref, std::abs(static_cast<double>(logits[i])));
  }
  INFO("max |delta| = " << max_diff);
  CHECK(max_diff / max_ref <= 1e-4);

  // Protocol errors: {"error": ...}.
  auto bad_type = req;
  bad_type["inputs"][0]["datatype"] = "INT8";
  auto e1 = http("POST", s.url("/v2/models/r18/infer"), bad_type.dump(), bearer(user));
  CHECK(e1.status == 400);
  CHECK(e1.json()["error"].is_string());
  auto short_data = req;
  short_data["inputs"][0]["data"] = json::array({1, 2, 3});
  CHECK(http("POST", s.url("/v2/models/r18/infer"), short_data.dump(), bearer(user)).status == 400);
  CHECK(http("POST", s.url("/v2/models/r18/infer"), "{nope", bearer(user)).status == 400);
  auto missing = http("POST", s.url("/v2/models/nope/infer"), req.dump(), bearer(user));
  CHECK(missing.status == 404);
  CHECK(missing.json()["error"].is_string());
  CHECK(http("GET", s.url("/v2/models/nope"), "", bearer(user)).status == 404);

  // A new version replaces the served one; delete removes it.
  auto up2 = http("POST", s.url("/v1/models"), body, ha);
  REQUIRE(up2.status == 201);
  CHECK(up2.json()["version"] == 2);
  CHECK(http("GET", s.url("/v2/models/r18"), "", bearer(user)).json()["versions"][0] == "2");
  CHECK(http("DELETE", s.url("/v1/models/r18"), "", bearer(user)).status == 403);
  CHECK(http("DELETE", s.url("/v1/models/r18"), "", bearer(admin)).status == 204);
  CHECK(http("GET", s.url("/v2/models/r18"), "", bearer(user)).status == 404);
}

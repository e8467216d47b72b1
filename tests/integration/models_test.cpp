// The model repository over HTTP and the Open Inference Protocol (/v2).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <memory>
#include <set>

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

TEST_CASE("models and pipelines through a gateway reach every worker", "[integration][models][cluster]") {
  temp_dir w1dir, w2dir, w2fresh, gdir;
  const uint16_t p2 = free_port();
  server w1{w1dir.path, {"--role", "worker", "--cluster-port", "0"}, admin_env()};
  auto w2 = std::make_unique<server>(
    w2dir.path, std::vector<std::string>{"--role", "worker", "--cluster-port", std::to_string(p2)},
    admin_env());
  auto genv = admin_env();
  genv["ROOKERY_RECONNECT_MS"] = "200";
  const std::vector<std::string> gargs{
    "--role", "gateway", "--seeds",
    "127.0.0.1:" + std::to_string(w1.cluster_port()) + ",127.0.0.1:" + std::to_string(p2)};
  auto gw = std::make_unique<server>(gdir.path, gargs, genv);
  REQUIRE(until([&] { return connected_workers(*gw) == 2; }, 60) >= 0);
  auto admin = admin_token(*gw);
  auto user = signup_and_login(*gw, "alice");
  const std::string boundary = "xYzZy";
  auto ha = bearer(admin);
  ha.push_back({"Content-Type", "multipart/form-data; boundary=" + boundary});
  auto weights = read_file(exported().weights());

  // An upload through the gateway is installed on both workers.
  auto up = http("POST", gw->url("/v1/models"),
                 form(boundary, {{"name", "r18"}, {"arch", "resnet18"}, {"weights", weights}}), ha);
  INFO(up.body);
  REQUIRE(up.status == 201);
  CHECK(up.json()["version"] == 1);
  for (auto* w : {&w1, w2.get()}) {
    auto list = http("GET", w->url("/v1/models"), "", bearer(admin_token(*w)));
    REQUIRE(list.status == 200);
    REQUIRE(list.json()["models"].size() == 1);
    CHECK(list.json()["models"][0]["name"] == "r18");
  }
  auto list = http("GET", gw->url("/v1/models"), "", bearer(user));
  REQUIRE(list.status == 200);
  REQUIRE(list.json()["models"].size() == 1);
  CHECK(list.json()["models"][0]["status"].get<std::string>().find("workers") == std::string::npos);

  // The Open Inference Protocol through the gateway: torchvision's logits,
  // whichever worker answers.
  auto meta = http("GET", gw->url("/v2/models/r18"), "", bearer(user));
  REQUIRE(meta.status == 200);
  CHECK(meta.json()["versions"][0] == "1");
  CHECK(http("GET", gw->url("/v2/models/r18/ready"), "", bearer(user)).status == 200);
  CHECK(http("GET", gw->url("/v2/models/nope"), "", bearer(user)).status == 404);
  auto input = exported().floats("input.bin");
  auto logits = exported().floats("logits.bin");
  json req{{"inputs", json::array({{{"name", "input"}, {"shape", {2, 3, 224, 224}},
                                    {"datatype", "FP32"}, {"data", input}}})}};
  for (int k = 0; k < 4; ++k) { // round-robin: both workers answer
    auto inf = http("POST", gw->url("/v2/models/r18/infer"), req.dump(), bearer(user));
    REQUIRE(inf.status == 200);
    auto out = inf.json()["outputs"][0]["data"];
    REQUIRE(out.size() == logits.size());
    double max_diff = 0;
    for (size_t i = 0; i < logits.size(); ++i)
      max_diff = std::max(max_diff, std::abs(out[i].get<double>() - logits[i]));
    CHECK(max_diff < 1e-3);
  }

  // A pipeline added through the gateway serves on both workers.
  json spec{{"name", "tiny"},
            {"mime_types", json::array({"image/png"})},
            {"ops", json::parse(R"([{"op": "decode_image"}, {"op": "resize", "size": 80},
                {"op": "center_crop", "size": 64}, {"op": "to_tensor"}, {"op": "normalize"},
                {"op": "model", "name": "r18"}, {"op": "l2_normalize"}])")}};
  auto added = http("POST", gw->url("/v1/pipelines"), spec.dump(), bearer(admin));
  INFO(added.body);
  REQUIRE(added.status == 201);
  for (auto* w : {&w1, w2.get()})
    CHECK(http("GET", w->url("/v1/pipelines/tiny"), "", bearer(admin_token(*w))).status == 200);
  auto png = read_file(photo_path("chelsea.png"));
  std::set<std::string> nodes;
  for (int k = 0; k < 4; ++k) {
    auto r = http("POST", gw->url("/v1/embed?pipeline=tiny"), png, bearer(user));
    REQUIRE(r.status == 200);
    CHECK(r.json()["pipeline"] == "tiny");
    nodes.insert(r.json()["node"].get<std::string>());
  }
  CHECK(nodes.size() == 2);

  // A worker replaced by a fresh one (an empty disk, the same address) gets
  // the models put through the gateway, then the run-time pipelines, when it
  // connects.
  w2.reset();
  REQUIRE(until([&] { return connected_workers(*gw) == 1; }, 10) >= 0);
  json second{{"name", "small"},
              {"ops", json::parse(R"([{"op": "decode_image"}, {"op": "resize", "size": 72},
                  {"op": "center_crop", "size": 64}, {"op": "to_tensor"}, {"op": "normalize"},
                  {"op": "model", "name": "resnet18"}, {"op": "l2_normalize"}])")}};
  REQUIRE(http("POST", gw->url("/v1/pipelines"), second.dump(), bearer(admin)).status == 201);
  // The gateway restarts meanwhile: what it replays comes from its data
  // directory (the gateways' shared volume), not from its memory.
  gw.reset();
  gw = std::make_unique<server>(gdir.path, gargs, genv);
  REQUIRE(until([&] { return connected_workers(*gw) == 1; }, 30) >= 0);
  admin = admin_token(*gw);
  auto relog = http("POST", gw->url("/v1/auth/login"),
                    json{{"username", "alice"}, {"password", "correct horse battery"}}.dump(),
                    {{"Content-Type", "application/json"}});
  REQUIRE(relog.status == 200);
  user = relog.json()["token"].get<std::string>();
  w2 = std::make_unique<server>(
    w2fresh.path, std::vector<std::string>{"--role", "worker", "--cluster-port", std::to_string(p2)},
    admin_env());
  REQUIRE(until([&] { return connected_workers(*gw) == 2; }, 30) >= 0);
  auto w2admin = admin_token(*w2);
  CHECK(until([&] {
          return http("GET", w2->url("/v1/pipelines/small"), "", bearer(w2admin)).status == 200;
        }, 30) >= 0);
  CHECK(until([&] {
          return http("GET", w2->url("/v1/pipelines/tiny"), "", bearer(w2admin)).status == 200;
        }, 30) >= 0);
  auto w2models = http("GET", w2->url("/v1/models"), "", bearer(w2admin));
  REQUIRE(w2models.status == 200);
  REQUIRE(w2models.json()["models"].size() == 1);
  CHECK(w2models.json()["models"][0]["name"] == "r18");

  // Removal through the gateway reaches every worker.
  CHECK(http("DELETE", gw->url("/v1/pipelines/small"), "", bearer(admin)).status == 204);
  for (auto* w : {&w1, w2.get()})
    CHECK(http("GET", w->url("/v1/pipelines/small"), "", bearer(admin_token(*w))).status == 404);
  CHECK(http("DELETE", gw->url("/v1/models/r18"), "", bearer(user)).status == 403);
  CHECK(http("DELETE", gw->url("/v1/pipelines/tiny"), "", bearer(admin)).status == 204);
  CHECK(http("DELETE", gw->url("/v1/models/r18"), "", bearer(admin)).status == 204);
  CHECK(http("GET", w1.url("/v2/models/r18"), "", bearer(admin_token(w1))).status == 404);
  CHECK(http("GET", gw->url("/v2/models/r18"), "", bearer(user)).status == 404);
}

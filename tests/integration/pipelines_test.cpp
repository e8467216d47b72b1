// Pipelines as configuration through the real server: the operator chain in
// GET /v1/pipelines/{name}, admins adding and removing pipelines at run time,
// batch embedding of a multipart body, and video.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <thread>

#include "harness.hpp"

using namespace rookery::test;
using nlohmann::json;

namespace {

header_list bearer(const std::string& t) {
  return {{"Authorization", "Bearer " + t}};
}

double cosine(const json& a, const json& b) {
  double d = 0, na = 0, nb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    d += a[i].get<double>() * b[i].get<double>();
    na += a[i].get<double>() * a[i].get<double>();
    nb += b[i].get<double>() * b[i].get<double>();
  }
  return d / std::sqrt(na * nb);
}

std::string multipart(const std::string& boundary,
                      const std::vector<std::pair<std::string, std::string>>& files) {
  std::string b;
  for (auto& [name, data] : files)
    b += "--" + boundary + "\r\nContent-Disposition: form-data; name=\"" + name + "\"; filename=\"" + name
         + "\"\r\nContent-Type: application/octet-stream\r\n\r\n" + data + "\r\n";
  return b + "--" + boundary + "--\r\n";
}

} // namespace

TEST_CASE("pipelines: the chain is shown, and admins add and remove pipelines at run time",
          "[integration][pipelines]") {
  temp_dir dir;
  server s{dir.path, {}, admin_env()};
  auto admin = admin_token(s);
  auto user = signup_and_login(s, "ada");

  auto image = http("GET", s.url("/v1/pipelines/image"), "", bearer(user));
  REQUIRE(image.status == 200);
  auto p = image.json();
  for (auto key : {"name", "ops", "mime_types", "model", "dim", "pretrained", "weights"})
    CHECK(p.contains(key));
  CHECK(p["ops"][0]["op"] == "decode_image");
  CHECK(p["ops"].back()["op"] == "l2_normalize");
  CHECK(p["builtin"] == true);

  // A pipeline of our own: a smaller crop, greyscale, the same model.
  json spec{{"name", "tiny"},
            {"mime_types", json::array({"image/png"})},
            {"ops", json::parse(R"([{"op": "decode_image"}, {"op": "resize", "size": 80},
                {"op": "center_crop", "size": 64}, {"op": "to_tensor"}, {"op": "normalize"},
                {"op": "model", "name": "resnet18"}, {"op": "l2_normalize"}])")}};
  CHECK(http("POST", s.url("/v1/pipelines"), spec.dump(), bearer(user)).status == 403);
  auto bad = spec;
  bad["ops"][1]["size"] = "big";
  auto refused = http("POST", s.url("/v1/pipelines"), bad.dump(), bearer(admin));
  CHECK(refused.status == 400);
  CHECK(refused.json()["detail"].get<std::string>().find("ops[1]") != std::string::npos);
  auto unknown_model = spec;
  unknown_model["name"] = "ghost";
  unknown_model["ops"][5]["name"] = "no-such-model";
  CHECK(http("POST", s.url("/v1/pipelines"), unknown_model.dump(), bearer(admin)).status == 404);
  auto added = http("POST", s.url("/v1/pipelines"), spec.dump(), bearer(admin));
  REQUIRE(added.status == 201);
  CHECK(added.json()["name"] == "tiny");
  CHECK(added.json()["ops"][2] == json{{"op", "center_crop"}, {"size", 64}});
  CHECK(added.json()["dim"] == 512);
  CHECK(http("POST", s.url("/v1/pipelines"), json{{"name", "image"}, {"ops", spec["ops"]}}.dump(),
             bearer(admin)).status == 409);

  // PNGs now go to it (run-time pipelines win over built-ins); JPEGs do not.
  auto png = read_file(photo_path("chelsea.png"));
  auto r = http("POST", s.url("/v1/embed"), png, bearer(user));
  REQUIRE(r.status == 200);
  CHECK(r.json()["pipeline"] == "tiny");
  auto via_image = http("POST", s.url("/v1/embed?pipeline=image"), png, bearer(user));
  REQUIRE(via_image.status == 200);
  // The same model (one shared pool), different preprocessing.
  CHECK(cosine(r.json()["embedding"], via_image.json()["embedding"]) < 0.9999);

  // It survives a restart (stored under <data>/pipelines).
  s.stop();
  server s2{dir.path, {}, admin_env()};
  admin = admin_token(s2);
  user = signup_and_login(s2, "bob");
  CHECK(http("GET", s2.url("/v1/pipelines/tiny"), "", bearer(user)).status == 200);
  CHECK(http("DELETE", s2.url("/v1/pipelines/tiny"), "", bearer(user)).status == 403);
  CHECK(http("DELETE", s2.url("/v1/pipelines/image"), "", bearer(admin)).status == 403);
  CHECK(http("DELETE", s2.url("/v1/pipelines/tiny"), "", bearer(admin)).status == 204);
  CHECK(http("GET", s2.url("/v1/pipelines/tiny"), "", bearer(user)).status == 404);
  CHECK(http("POST", s2.url("/v1/embed"), png, bearer(user)).json()["pipeline"] == "image");
}

TEST_CASE("pipelines: a multipart body of several files is a batch, answered in order",
          "[integration][pipelines]") {
  temp_dir dir;
  server s{dir.path, {}, test_env()};
  auto token = signup_and_login(s, "ada");
  auto png = read_file(photo_path("chelsea.png"));
  auto other = read_file(photo_path("coffee.png"));
  auto h = bearer(token);
  h.emplace_back("Content-Type", "multipart/form-data; boundary=bNd");
  auto r = http("POST", s.url("/v1/embed"),
                multipart("bNd", {{"cat", png}, {"junk", std::string("\x01\x02\x03\xfe\xff\x00 not an image", 20)}, {"cup", other}}), h);
  REQUIRE(r.status == 200);
  auto items = r.json()["items"];
  REQUIRE(items.size() == 3);
  CHECK(items[0]["part"] == "cat");
  CHECK(items[0]["status"] == 200);
  CHECK(items[0]["dim"] == 512);
  CHECK(items[1]["part"] == "junk");
  CHECK(items[1]["status"] == 415);
  CHECK(items[1].contains("detail"));
  CHECK(items[2]["part"] == "cup");
  CHECK(items[2]["status"] == 200);
  // Each answer equals embedding that file alone.
  auto alone = http("POST", s.url("/v1/embed"), other, bearer(token));
  CHECK(cosine(items[2]["embedding"], alone.json()["embedding"]) > 0.99999);
  // One file part is the single-vector shape, as before.
  auto one = http("POST", s.url("/v1/embed"), multipart("bNd", {{"cat", png}}), h);
  CHECK(one.json().contains("embedding"));
}

TEST_CASE("pipelines: a video gives a pooled vector and one vector per segment",
          "[integration][pipelines][video]") {
  temp_dir dir;
  auto clip = dir.path + "/clip.mp4";
  auto cmd = "ffmpeg -loglevel error -y -loop 1 -t 2 -i " + photo_path("chelsea.png") + " -loop 1 -t 2 -i "
             + photo_path("coffee.png")
             + " -filter_complex '[0:v]scale=320:240,setsar=1[a];[1:v]scale=320:240,setsar=1[b];"
               "[a][b]concat=n=2:v=1:a=0,format=yuv420p[v]' -map '[v]' -r 5 -c:v mpeg4 -q:v 4 "
             + clip;
  REQUIRE(std::system(cmd.c_str()) == 0);
  // The built-in pipelines and models (nsfwjs's InceptionV3): segments need
  // features that mean something.
  auto env = test_env();
  env["ROOKERY_PIPELINES"] = unset_env;
  env["ROOKERY_BUILTIN_MODELS"] = unset_env;
  server s{dir.path + "/data", {}, env};
  auto token = signup_and_login(s, "ada");
  auto listing = http("GET", s.url("/v1/pipelines/video"), "", bearer(token)).json();
  if (!listing.value("pretrained", false)) {
    WARN("the built-in models are not installed (scripts/setup.sh converts them): " << listing.dump());
    return;
  }
  CHECK(listing["weights"] == "nsfwjs@4.4.0 inception_v3");
  auto r = http("POST", s.url("/v1/embed"), read_file(clip), bearer(token));
  INFO(r.body.substr(0, 300));
  REQUIRE(r.status == 200);
  auto j = r.json();
  CHECK(j["pipeline"] == "video");
  CHECK(j["mime"] == "video/mp4");
  CHECK(j["dim"] == 2048);
  CHECK(j["frames"] >= 4); // one a second of a 4.4 s clip
  CHECK(j["frames"] <= 5);
  // Two photos, two segments: the cat's first 2 s, then the cup's, whose
  // vectors differ (features centred on a reference mean, the built-in
  // video pipeline's `center` op), covering the clip.
  REQUIRE(j["segments"].size() == 2);
  const auto& a = j["segments"][0];
  const auto& b = j["segments"][1];
  CHECK(a["start_s"] == 0.0);
  CHECK(a["end_s"].get<double>() == Approx(2.0).margin(1.01));
  CHECK(b["start_s"] == a["end_s"]);
  CHECK(b["end_s"].get<double>() == Approx(j["duration_s"].get<double>()).margin(0.3));
  CHECK(a["embedding"].size() == 2048);
  CHECK(cosine(a["embedding"], b["embedding"]) < 0.8);
  auto desc = http("GET", s.url("/v1/pipelines/video"), "", bearer(token)).json();
  CHECK(desc["ops"][4]["op"] == "center");
  // Truncated and empty videos are the client's error.
  auto bytes = read_file(clip);
  CHECK(http("POST", s.url("/v1/embed?pipeline=video"), bytes.substr(0, bytes.size() / 3), bearer(token)).status == 400);
  CHECK(http("POST", s.url("/v1/pipelines/video/embed"), "", bearer(token)).status == 400);
}

TEST_CASE("pipelines: a numeric CSV or JSON series gets MiniRocket features from the timeseries pipeline",
          "[integration][pipelines][timeseries]") {
  temp_dir dir;
  server s{dir.path, {}, test_env()};
  auto token = signup_and_login(s, "ada");
  auto listing = http("GET", s.url("/v1/pipelines/timeseries"), "", bearer(token));
  REQUIRE(listing.status == 200);
  CHECK(listing.json()["kind"] == "timeseries");
  CHECK(listing.json()["model"] == "minirocket");
  CHECK(listing.json()["dim"] == 2016);
  CHECK(listing.json()["ready"] == true);
  CHECK(listing.json()["ops"][3]["op"] == "minirocket");

  auto wave = [](double period, double level, int n, bool header) {
    std::string csv = header ? "t,value\n" : "";
    for (int i = 0; i < n; ++i)
      csv += (header ? std::to_string(i) + "," : std::string()) + std::to_string(level + std::sin(i * 2 * M_PI / period)) + "\n";
    return csv;
  };
  auto ramp = [](int n) {
    std::string csv;
    for (int i = 0; i < n; ++i)
      csv += std::to_string(0.1 * i + 0.05 * (i % 7)) + "\n";
    return csv;
  };
  auto embed = [&](const std::string& body) {
    auto r = http("POST", s.url("/v1/embed"), body, bearer(token));
    INFO(r.body.substr(0, 300));
    REQUIRE(r.status == 200);
    return r.json();
  };
  auto a = embed(wave(30, 0, 200, true)); // an index column, then the values
  CHECK(a["pipeline"] == "timeseries");
  CHECK(a["mime"] == "text/csv");
  CHECK(a["model"] == "minirocket");
  CHECK(a["dim"] == 2016);
  CHECK(a["embedding"].size() == 2016);
  auto b = embed(wave(28, 5, 150, false)); // another level, length, period: the same shape
  auto c = embed(ramp(100));
  CHECK(cosine(a["embedding"], b["embedding"]) > cosine(a["embedding"], c["embedding"]) + 0.3);
  // Deterministic, and JSON holding the same numbers embeds the same.
  CHECK(embed(wave(30, 0, 200, true))["embedding"] == a["embedding"]);
  json values = json::array();
  for (int i = 0; i < 100; ++i)
    values.push_back(0.1 * i + 0.05 * (i % 7));
  auto j = embed(json{{"series", values}}.dump());
  CHECK(j["mime"] == "application/vnd.rookery.series+json");
  CHECK(cosine(j["embedding"], c["embedding"]) > 0.99999);
  // Bad series are the client's error, naming what is wrong.
  auto two = http("POST", s.url("/v1/embed"), "a,b\n1,5\n3,2\n2,8\n", bearer(token));
  CHECK(two.status == 400);
  CHECK(two.body.find("2 numeric columns (a, b)") != std::string::npos);
  CHECK(http("POST", s.url("/v1/embed?pipeline=timeseries"), "1,2,x\n", bearer(token)).status == 400);
  CHECK(http("POST", s.url("/v1/embed?pipeline=timeseries"), "[1]", bearer(token)).status == 400);
  // Prose is not a series: it goes to the text pipeline.
  auto prose = http("POST", s.url("/v1/embed"), "It was a dark and stormy night; the rain fell.\n", bearer(token));
  REQUIRE(prose.status == 200);
  CHECK(prose.json()["pipeline"] == "text");
}

// The faces pipeline end to end through the real server: the answer's shape,
// the same numbers as models/faces in-process (whose parity with face-api in
// Node is tests/unit/faces_test.cpp), no face -> "faces": [], bad input -> 4xx.
// Skips (WARN) when @vladmandic/face-api is not installed (scripts/setup.sh).
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "harness.hpp"
#include "models/faces/faces.hpp"
#include "pipelines/image.hpp"

using namespace rookery::test;
using nlohmann::json;
namespace faces = rookery::faces;

namespace {

bool npm_package_installed() {
  return std::filesystem::exists(std::string(ROOKERY_SOURCE_DIR)
                                 + "/third_party/face-api/node_modules/@vladmandic/face-api/package.json");
}

header_list bearer(const std::string& t) { return {{"Authorization", "Bearer " + t}}; }

const std::string skimage = "/usr/lib/python3/dist-packages/skimage/data/";

/// In-process result on the same bytes (the weights the server uses).
std::vector<faces::face> in_process(const std::string& bytes) {
  static auto models = [] {
    auto m = faces::face_models::load(faces::builtin_models_dir());
    INFO((m ? std::string() : m.error().message));
    REQUIRE(m);
    return std::move(*m);
  }();
  auto img = rookery::decode_rgb(bytes, 0);
  REQUIRE(img);
  auto r = models->analyse(faces::rgb_image{img->width, img->height, std::move(img->pixels)});
  REQUIRE(r);
  return std::move(*r);
}

void check_shape(const json& j, const std::string& mime) {
  CHECK(j["pipeline"] == "faces");
  CHECK(j["mime"] == mime);
  CHECK(j["model"].is_string());
  REQUIRE(j["faces"].is_array());
  CHECK(j.find("embedding") == j.end()); // per face, not per image
  for (auto& f : j["faces"]) {
    REQUIRE(f["box"].size() == 4);
    CHECK(f["score"].get<double>() > 0.5);
    REQUIRE(f["landmarks"].size() == 68);
    CHECK(f["landmarks"][0].size() == 2);
    CHECK(f["embedding"].size() == 128);
  }
}

} // namespace

TEST_CASE("faces pipeline: boxes, landmarks and descriptors over HTTP", "[integration][faces]") {
  if (!npm_package_installed()) {
    WARN("skipped: @vladmandic/face-api is not installed (scripts/setup.sh)");
    return;
  }
  temp_dir dir;
  server s{dir.path};
  auto token = signup_and_login(s, "alice");

  // Listed, with its provenance.
  auto p = http("GET", s.url("/v1/pipelines/faces"), "", bearer(token));
  REQUIRE(p.status == 200);
  CHECK(p.json()["kind"] == "faces");
  CHECK(p.json()["ready"] == true);
  CHECK(p.json()["pretrained"] == true);
  CHECK(p.json()["weights"] == "@vladmandic/face-api@1.7.15");
  CHECK(p.json()["dim"] == 128);
  bool listed = false;
  const auto all = http("GET", s.url("/v1/pipelines"), "", bearer(token)).json(); // kept: the loop reads into it
  for (auto& pl : all["pipelines"])
    listed = listed || pl["name"] == "faces";
  CHECK(listed);

  const auto photo = read_file(skimage + "astronaut.png");
  auto r = http("POST", s.url("/v1/embed?pipeline=faces"), photo, bearer(token));
  INFO(r.body.substr(0, 400));
  REQUIRE(r.status == 200);
  const auto j = r.json();
  check_shape(j, "image/png");
  REQUIRE(j["faces"].size() == 1);
  const auto& f = j["faces"][0];
  const auto want = in_process(photo);
  REQUIRE(want.size() == 1);
  const double want_box[4] = {want[0].box.x, want[0].box.y, want[0].box.width, want[0].box.height};
  for (int i = 0; i < 4; ++i)
    CHECK(f["box"][i].get<double>() == Approx(want_box[i]).margin(1e-6));
  CHECK(f["score"].get<double>() == Approx(want[0].score).margin(1e-6));
  CHECK(f["landmarks"][30][0].get<double>() == Approx(want[0].landmarks[30][0]).margin(1e-6));
  for (size_t i = 0; i < 128; ++i)
    CHECK(f["embedding"][i].get<float>() == Approx(want[0].descriptor[i]).margin(1e-6));
  // Her face, in pixels of the uploaded image.
  faces::rect box{f["box"][0].get<double>(), f["box"][1].get<double>(), f["box"][2].get<double>(),
                  f["box"][3].get<double>()};
  CHECK(faces::iou(box, {181, 73, 83, 102}) > 0.95);

  // The explicit route, multipart form data.
  std::string boundary = "rookeryfaces7";
  std::string form = "--" + boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
                     "Content-Type: image/png\r\n\r\n" + photo + "\r\n--" + boundary + "--\r\n";
  auto m = http("POST", s.url("/v1/pipelines/faces/embed"), form,
                {{"Authorization", "Bearer " + token},
                 {"Content-Type", "multipart/form-data; boundary=" + boundary}});
  REQUIRE(m.status == 200);
  check_shape(m.json(), "image/png");
  CHECK(m.json()["faces"] == j["faces"]);

  // No face: an empty list, not an error.
  auto none = http("POST", s.url("/v1/pipelines/faces/embed"), read_file(skimage + "coffee.png"), bearer(token));
  INFO(none.body.substr(0, 300));
  REQUIRE(none.status == 200);
  CHECK(none.json()["pipeline"] == "faces");
  CHECK(none.json()["faces"] == json::array());

  // Bad input: 4xx problem+json, and the server keeps serving.
  auto text = http("POST", s.url("/v1/embed?pipeline=faces"), "not an image, just words\n", bearer(token));
  CHECK(text.status == 400);
  CHECK(text.headers["content-type"] == "application/problem+json");
  CHECK(http("POST", s.url("/v1/embed?pipeline=faces"), photo.substr(0, photo.size() / 2), bearer(token)).status == 400);
  CHECK(http("POST", s.url("/v1/embed?pipeline=faces"), "", bearer(token)).status == 400);
  CHECK(http("POST", s.url("/v1/pipelines/faces/embed"), "GIF89a\x01\0\x01\0\0\0\0;", bearer(token)).status == 415);
  CHECK(http("POST", s.url("/v1/embed?pipeline=faces"), photo).status == 401);

  // As an asynchronous job.
  auto sub = http("POST", s.url("/v1/embed?pipeline=faces&async=true"), photo, bearer(token));
  REQUIRE(sub.status == 202);
  json job;
  for (int i = 0; i < 600; ++i) {
    job = http("GET", s.url("/v1/jobs/" + sub.json()["id"].get<std::string>()), "", bearer(token)).json();
    if (job["state"] == "succeeded" || job["state"] == "failed")
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  REQUIRE(job["state"] == "succeeded");
  CHECK(job["result"]["faces"] == j["faces"]);

  auto again = http("POST", s.url("/v1/embed?pipeline=faces"), photo, bearer(token));
  REQUIRE(again.status == 200);
  CHECK(again.json()["faces"] == j["faces"]);
}

TEST_CASE("faces pipeline without its weights says why", "[integration][faces]") {
  temp_dir dir;
  server s{dir.path, {}, {{"ROOKERY_FACES_MODELS", dir.path + "/no-such-dir"}}};
  auto token = signup_and_login(s, "alice");
  auto p = http("GET", s.url("/v1/pipelines/faces"), "", bearer(token));
  REQUIRE(p.status == 200);
  CHECK(p.json()["ready"] == false);
  CHECK(p.json()["status"].get<std::string>().find("setup.sh") != std::string::npos);
  auto r = http("POST", s.url("/v1/embed?pipeline=faces"), read_file(skimage + "astronaut.png"), bearer(token));
  CHECK(r.status == 503);
}

// models/faces: parity with face-api itself (@vladmandic/face-api on the
// pure-JS TF.js cpu backend, run in Node by scripts/faces/reference.js) on
// the same pixels, plus the geometry helpers and bad weight files.
// Skips (WARN) when the npm package is not installed (scripts/setup.sh).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "models/faces/faces.hpp"
#include "pipelines/image.hpp"
#include "tensor_files.hpp"

#undef CHECK
#define CHECK(...) INTERNAL_CATCH_TEST("CHECK", Catch::ResultDisposition::ContinueOnFailure, __VA_ARGS__)

using namespace rookery;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const std::string source_dir = ROOKERY_SOURCE_DIR;
const std::string skimage = "/usr/lib/python3/dist-packages/skimage/data/";

bool npm_package_installed() {
  return fs::exists(source_dir + "/third_party/face-api/node_modules/@vladmandic/face-api/package.json")
         && std::system("node --version > /dev/null 2>&1") == 0;
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

/// The converted weights: setup's copy, or converted here into `tmp`.
std::string models_dir(const test::temp_dir& tmp) {
  auto dir = faces::builtin_models_dir();
  if (fs::exists(dir + "/meta.json"))
    return dir;
  const auto out = (tmp.path / "faces").string();
  const auto cmd = "node " + source_dir + "/scripts/faces/convert.js " + source_dir
                   + "/third_party/face-api/node_modules/@vladmandic/face-api/model " + out
                   + " test > /dev/null";
  REQUIRE(std::system(cmd.c_str()) == 0);
  return out;
}

faces::face_models& models() {
  static test::temp_dir tmp("rookery-faces-");
  static auto m = [] {
    auto r = faces::face_models::load(models_dir(tmp));
    INFO((r ? std::string() : r.error().message));
    REQUIRE(r);
    return std::move(*r);
  }();
  return *m;
}

faces::rgb_image load_photo(const std::string& name) {
  auto r = decode_rgb(read_all(skimage + name), 0);
  REQUIRE(r);
  return faces::rgb_image{r->width, r->height, std::move(r->pixels)};
}

cv::Mat to_mat(const faces::rgb_image& img) {
  return cv::Mat(static_cast<int>(img.height), static_cast<int>(img.width), CV_8UC3,
                 const_cast<uint8_t*>(img.pixels.data()))
    .clone();
}

/// A group photo: astronaut at full size and at 300x300, a mirrored,
/// enlarged crop of her face, and the cameraman, on a grey 1000x700 canvas.
faces::rgb_image group_photo() {
  const auto astro = to_mat(load_photo("astronaut.png"));
  const auto cam = to_mat(load_photo("camera.png"));
  cv::Mat canvas(700, 1000, CV_8UC3, cv::Scalar(128, 128, 128));
  astro.copyTo(canvas(cv::Rect(0, 0, 512, 512)));
  cv::Mat small, face, cam_small;
  cv::resize(astro, small, {300, 300}, 0, 0, cv::INTER_AREA);
  small.copyTo(canvas(cv::Rect(520, 10, 300, 300)));
  cv::flip(astro(cv::Rect(150, 40, 150, 170)), face, 1);
  cv::resize(face, face, {225, 255}, 0, 0, cv::INTER_LINEAR);
  face.copyTo(canvas(cv::Rect(760, 400, 225, 255)));
  cv::resize(cam, cam_small, {300, 300}, 0, 0, cv::INTER_AREA);
  cam_small.copyTo(canvas(cv::Rect(430, 380, 300, 300)));
  faces::rgb_image out;
  out.width = canvas.cols;
  out.height = canvas.rows;
  out.pixels.assign(canvas.data, canvas.data + canvas.total() * 3);
  return out;
}

/// face-api in Node on the same pixels.
json reference(const faces::rgb_image& img) {
  test::temp_dir tmp("rookery-faceapi-");
  const auto rgb = (tmp.path / "image.rgb").string();
  const auto out = (tmp.path / "out.json").string();
  {
    std::ofstream f(rgb, std::ios::binary);
    f.write(reinterpret_cast<const char*>(img.pixels.data()),
            static_cast<std::streamsize>(img.pixels.size()));
  }
  const auto cmd = "node " + source_dir + "/scripts/faces/reference.js " + rgb + " "
                   + std::to_string(img.width) + " " + std::to_string(img.height) + " > " + out;
  REQUIRE(std::system(cmd.c_str()) == 0);
  auto j = json::parse(read_all(out));
  REQUIRE(j["backend"] == "cpu");
  return j["faces"];
}

faces::rect to_rect(const json& b) {
  return {b[0].get<double>(), b[1].get<double>(), b[2].get<double>(), b[3].get<double>()};
}

double cosine(const std::vector<float>& a, const json& b) {
  double dot = 0, na = 0, nb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double y = b[i].get<double>();
    dot += a[i] * y;
    na += double(a[i]) * a[i];
    nb += y * y;
  }
  return dot / std::sqrt(na * nb);
}

/// Every face face-api finds, Rookery finds (and no other), with IoU >= 0.9,
/// descriptor cosine >= 0.999 and landmarks within a pixel.
void check_parity(const faces::rgb_image& img, const std::string& what) {
  const auto ref = reference(img);
  auto got = models().analyse(img);
  REQUIRE(got);
  INFO(what << ": face-api found " << ref.size() << ", Rookery " << got->size());
  REQUIRE(got->size() == ref.size());
  for (const auto& r : ref) {
    const auto rbox = to_rect(r["box"]);
    const faces::face* best = nullptr;
    double best_iou = -1;
    for (const auto& f : *got)
      if (double v = faces::iou(rbox, f.box); v > best_iou) {
        best_iou = v;
        best = &f;
      }
    REQUIRE(best);
    double lm = 0;
    for (size_t i = 0; i < 68; ++i)
      lm = std::max(lm, std::hypot(best->landmarks[i][0] - r["landmarks"][i][0].get<double>(),
                                   best->landmarks[i][1] - r["landmarks"][i][1].get<double>()));
    const double cos = cosine(best->descriptor, r["embedding"]);
    INFO(what << " face at " << rbox.x << "," << rbox.y << ": IoU " << best_iou << ", score "
              << best->score << " vs " << r["score"].get<double>() << ", cosine " << cos
              << ", landmarks max distance " << lm << " px");
    WARN(what << " face at (" << rbox.x << ", " << rbox.y << "): IoU " << best_iou << ", cosine "
              << cos << ", landmark max distance " << lm << " px");
    CHECK(best_iou >= 0.9);
    CHECK(std::abs(best->score - r["score"].get<double>()) < 1e-3);
    CHECK(cos >= 0.999);
    CHECK(lm < 1.0);
    CHECK(best->descriptor.size() == 128);
  }
}

} // namespace

TEST_CASE("faces: astronaut matches face-api in Node", "[faces]") {
  if (!npm_package_installed()) {
    WARN("skipped: @vladmandic/face-api is not installed (scripts/setup.sh)");
    return;
  }
  const auto img = load_photo("astronaut.png");
  check_parity(img, "astronaut.png");
  // Rookery on its own: one face where her face is.
  auto got = models().analyse(img);
  REQUIRE(got);
  REQUIRE(got->size() == 1);
  CHECK(faces::iou((*got)[0].box, {181, 73, 83, 102}) > 0.95);
  CHECK((*got)[0].landmarks.size() == 68);
}

TEST_CASE("faces: photos without a face give no face", "[faces]") {
  if (!npm_package_installed()) {
    WARN("skipped: @vladmandic/face-api is not installed (scripts/setup.sh)");
    return;
  }
  // coffee.png has no face. (chelsea.png, the cat, is a face to face-api:
  // score 0.93; the [full] parity test checks Rookery agrees.)
  auto coffee = models().analyse(load_photo("coffee.png"));
  REQUIRE(coffee);
  CHECK(coffee->empty());
  // A flat grey image, and a tiny one.
  faces::rgb_image grey{64, 48, std::vector<uint8_t>(64 * 48 * 3, 128)};
  auto g = models().analyse(grey);
  REQUIRE(g);
  CHECK(g->empty());
  faces::rgb_image dot{1, 1, {10, 20, 30}};
  auto d = models().analyse(dot);
  REQUIRE(d);
  CHECK(d->empty());
  // Wrong pixel count: an error, not a crash.
  faces::rgb_image broken{10, 10, std::vector<uint8_t>(7)};
  CHECK_FALSE(models().analyse(broken));
}

TEST_CASE("faces: a group photo matches face-api in Node", "[faces][full]") {
  if (!npm_package_installed()) {
    WARN("skipped: @vladmandic/face-api is not installed (scripts/setup.sh)");
    return;
  }
  const auto img = group_photo();
  auto got = models().analyse(img);
  REQUIRE(got);
  CHECK(got->size() >= 3);
  check_parity(img, "group photo");
}

TEST_CASE("faces: coffee (no face) and chelsea (a cat) as face-api sees them", "[faces][full]") {
  if (!npm_package_installed()) {
    WARN("skipped: @vladmandic/face-api is not installed (scripts/setup.sh)");
    return;
  }
  CHECK(reference(load_photo("coffee.png")).empty());
  // face-api's detector takes the cat's face for a face (score 0.93), with a
  // box reaching into the padding below the image, as face-api reports it.
  check_parity(load_photo("chelsea.png"), "chelsea.png");
}

TEST_CASE("faces: geometry helpers follow face-api's Box", "[faces]") {
  auto c = faces::clip_at_image_borders({-3.5, 10.7, 50.2, 200.9}, 40, 100);
  CHECK(c.x == 0);
  CHECK(c.y == 10);
  CHECK(c.width == 40);  // min(46.7, 40)
  CHECK(c.height == 89); // floor(min(200.9, 89.3))
  CHECK(faces::iou({0, 0, 10, 10}, {0, 0, 10, 10}) == Approx(1.0));
  CHECK(faces::iou({0, 0, 10, 10}, {5, 0, 10, 10}) == Approx(1.0 / 3));
  CHECK(faces::iou({0, 0, 10, 10}, {20, 20, 5, 5}) == 0.0);
  // Eyes at y = 40, mouth at y = 85: eye-to-mouth distance 45 -> side 100.
  std::vector<faces::point> lm(68, faces::point{50, 40});
  for (size_t i = 36; i < 42; ++i)
    lm[i] = {35, 40};
  for (size_t i = 42; i < 48; ++i)
    lm[i] = {65, 40};
  for (size_t i = 48; i < 68; ++i)
    lm[i] = {50, 85};
  auto r = faces::descriptor_rect(lm, 500, 500);
  const double ref_y = (40 + 40 + 85) / 3.0;
  const double side = std::floor(std::hypot(15, 45) / 0.45);
  CHECK(r.width == side);
  CHECK(r.height == side);
  CHECK(r.x == std::floor(std::max(0.0, 50 - 0.5 * side)));
  CHECK(r.y == std::floor(std::max(0.0, ref_y - 0.43 * side)));
}

TEST_CASE("faces: missing and broken weight files are errors", "[faces]") {
  test::temp_dir tmp("rookery-faces-bad-");
  const auto dir = tmp.path.string();
  auto none = faces::face_models::load(dir + "/nothing");
  REQUIRE_FALSE(none);
  CHECK(none.error().code == errc::not_found);
  {
    std::ofstream(dir + "/meta.json") << R"({"package": "@vladmandic/face-api", "version": "x"})";
    std::ofstream(dir + "/ssd_mobilenetv1_model.rktw", std::ios::binary) << "RKTW0001\x02\0\0\0\x05";
  }
  auto truncated = faces::face_models::load(dir);
  REQUIRE_FALSE(truncated);
  CHECK(truncated.error().code == errc::unprocessable);
  {
    std::ofstream(dir + "/ssd_mobilenetv1_model.rktw", std::ios::binary) << "not a weights file at all";
  }
  auto garbage = faces::face_models::load(dir);
  REQUIRE_FALSE(garbage);
  CHECK(garbage.error().code == errc::unprocessable);
  {
    // A valid file with no tensors: every weight is reported missing.
    std::ofstream f(dir + "/ssd_mobilenetv1_model.rktw", std::ios::binary);
    f.write("RKTW0001\0\0\0\0", 12);
  }
  auto empty = faces::face_models::load(dir);
  REQUIRE_FALSE(empty);
  CHECK(empty.error().code == errc::unprocessable);
  CHECK(empty.error().message.find("missing") != std::string::npos);
}

// The built-in nsfwjs weights through the real server: the default image
// pipeline serves InceptionV3's pooled features (/v1/embed), and both nsfwjs
// classifiers answer the Open Inference Protocol (/v2 infer), compared with
// nsfwjs itself (tests/nsfwjs_reference.hpp: the answer the unit test's run of
// nsfwjs kept, or a fresh run). Without the npm packages (scripts/setup.sh
// installs them) the case WARNs and returns: Catch2 2.x has no SKIP.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "harness.hpp"
#include "models/repository.hpp"
#include "nsfwjs_reference.hpp"
#include "pipelines/image.hpp"

using namespace rookery::test;
using nlohmann::json;
namespace ref = rookery::test::nsfwjs;

namespace {

header_list bearer(const std::string& t) {
  return {{"Authorization", "Bearer " + t}};
}

double cosine(const json& a, const std::vector<double>& b) {
  double dot = 0, na = 0, nb = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    const double x = a[i].get<double>();
    dot += x * b[i];
    na += x * x;
    nb += b[i] * b[i];
  }
  return dot / std::sqrt(na * nb);
}

std::string rgb_of(const std::string& png, int& h, int& w) {
  cv::Mat bgr = cv::imdecode(cv::Mat(1, static_cast<int>(png.size()), CV_8UC1,
                                     const_cast<char*>(png.data())),
                             cv::IMREAD_COLOR);
  REQUIRE(!bgr.empty());
  h = bgr.rows;
  w = bgr.cols;
  std::string rgb(bgr.total() * 3, '\0');
  for (size_t i = 0; i < bgr.total(); ++i)
    for (int c = 0; c < 3; ++c)
      rgb[i * 3 + c] = static_cast<char>(bgr.data[i * 3 + (2 - c)]);
  return rgb;
}

} // namespace

// Regressions it caught: the model op's features went through the softmax
// meant for /v2's class probabilities (cosine 0.42 against nsfwjs's pooled
// features), and a loop over a temporary JSON listing.
TEST_CASE("the default image pipeline and /v2 serve the built-in nsfwjs weights like nsfwjs",
          "[integration][nsfwjs]") {
  std::string why;
  if (!ref::installed(why)) {
    WARN("SKIPPED (Catch2 2.x has no SKIP): " << why);
    return;
  }
  temp_dir dir;
  std::string builtin = rookery::default_builtin_models_dir(), error;
  if (!ref::has_builtin_models(builtin))
    builtin = ref::convert_into(dir.path + "/convert", error);
  INFO(error);
  REQUIRE(!builtin.empty());
  rookery::set_builtin_models_dir(builtin); // this process reads the preprocessing from it

  const auto png = read_file(photo_path());
  int h = 0, w = 0;
  const auto rgb = rgb_of(png, h, w);
  std::map<std::string, ref::answer> theirs;
  for (std::string m : {"inception_v3", "mobilenet_v2"}) {
    auto a = ref::run(m, rgb, h, w, ref::default_cache_dir(), /*read_cache=*/true, error);
    INFO(error);
    REQUIRE(a);
    theirs[m] = *a;
  }

  // The server's defaults: no pipelines setting, the built-in directory only.
  server s{dir.path + "/data", {},
           {{"ROOKERY_PIPELINES", unset_env}, {"ROOKERY_BUILTIN_MODELS", builtin},
            {"ROOKERY_ADMIN_USER", "root"}, {"ROOKERY_ADMIN_PASSWORD", "root-password"}}};
  auto token = signup_and_login(s, "alice");

  auto p = http("GET", s.url("/v1/pipelines/image"), "", bearer(token));
  REQUIRE(p.status == 200);
  CHECK(p.json()["model"] == "nsfwjs_inception_v3");
  CHECK(p.json()["pretrained"] == true);
  CHECK(p.json()["ready"] == true);
  CHECK(p.json()["dim"] == 2048);
  CHECK(p.json()["weights"] == "nsfwjs@4.4.0 inception_v3");
  auto all = http("GET", s.url("/v1/pipelines"), "", bearer(token));
  REQUIRE(all.status == 200);
  const auto listing = all.json(); // a named value: ranging over a temporary's member dangles
  for (auto& pl : listing["pipelines"])
    if (pl["name"] == "image")
      CHECK(pl["weights"] == "nsfwjs@4.4.0 inception_v3");

  // /v1/embed: InceptionV3's pooled features of the photo.
  auto e = http("POST", s.url("/v1/embed"), png,
                {{"Authorization", "Bearer " + token}, {"Content-Type", "image/png"}});
  REQUIRE(e.status == 200);
  REQUIRE(e.json()["dim"] == 2048);
  const double cos = cosine(e.json()["embedding"], theirs["inception_v3"].features);
  std::printf("nsfwjs parity through the server: /v1/embed features cosine %.9f\n", cos);
  CHECK(cos >= 0.9999);

  // The repository lists both built-ins with their provenance.
  auto models = http("GET", s.url("/v1/models"), "", bearer(token));
  REQUIRE(models.status == 200);
  INFO(models.body.substr(0, 600));
  int seen = 0;
  const auto listed = models.json(); // kept: ranging over a temporary's member dangles
  for (auto& m : listed["models"])
    if (m["name"] == "nsfwjs_inception_v3" || m["name"] == "nsfwjs_mobilenet_v2") {
      ++seen;
      CHECK(m["builtin"] == true);
      CHECK(m["weights"].get<std::string>().rfind("nsfwjs@4.4.0 ", 0) == 0);
    }
  CHECK(seen == 2);

  // /v2: both classifiers, on the tensor the pipeline's own preprocessing makes.
  for (std::string m : {"inception_v3", "mobilenet_v2"}) {
    const std::string name = "nsfwjs_" + m;
    auto installed = rookery::find_installed_model(dir.path + "/none", name);
    REQUIRE(installed);
    auto opts = rookery::parse_image_options(installed->preprocess_json);
    REQUIRE(opts);
    auto t = rookery::preprocess_image(png, *opts);
    REQUIRE(t);
    const int64_t side = opts->input_side();
    auto meta = http("GET", s.url("/v2/models/" + name), "", bearer(token));
    REQUIRE(meta.status == 200);
    CHECK(meta.json()["inputs"][0]["shape"] == json::array({-1, 3, side, side}));
    CHECK(meta.json()["outputs"][0]["shape"] == json::array({-1, 5}));
    json req{{"inputs", json::array({{{"name", "input"},
                                      {"shape", {1, 3, side, side}},
                                      {"datatype", "FP32"},
                                      {"data", t->data}}})}};
    auto inf = http("POST", s.url("/v2/models/" + name + "/infer"), req.dump(), bearer(token));
    REQUIRE(inf.status == 200);
    auto out = inf.json()["outputs"][0];
    CHECK(out["shape"] == json::array({1, 5}));
    REQUIRE(out["data"].size() == 5);
    double max_diff = 0, sum = 0;
    for (size_t k = 0; k < 5; ++k) {
      max_diff = std::max(max_diff, std::abs(out["data"][k].get<double>() - theirs[m].probabilities[k]));
      sum += out["data"][k].get<double>();
    }
    std::printf("nsfwjs parity through the server: /v2 %s probabilities max |diff| %.3g\n",
                name.c_str(), max_diff);
    CHECK(max_diff <= 1e-4);
    CHECK(sum == Approx(1.0).margin(1e-5)); // softmax probabilities, as nsfwjs's model gives

    // An input too small for the network is the client's mistake: 400, and serving goes on.
    json tiny{{"inputs", json::array({{{"name", "input"},
                                       {"shape", {1, 3, 8, 8}},
                                       {"datatype", "FP32"},
                                       {"data", std::vector<float>(3 * 8 * 8, 0.5f)}}})}};
    auto bad = http("POST", s.url("/v2/models/" + name + "/infer"), tiny.dump(), bearer(token));
    CHECK(bad.status == 400);
  }
  // Built-ins are read-only, even for an admin.
  auto login = http("POST", s.url("/v1/auth/login"),
                    json{{"username", "root"}, {"password", "root-password"}}.dump());
  REQUIRE(login.status == 200);
  auto del = http("DELETE", s.url("/v1/models/nsfwjs_mobilenet_v2"), "",
                  bearer(login.json()["token"].get<std::string>()));
  CHECK(del.status == 403);
  CHECK(http("GET", s.url("/v2/models/nsfwjs_mobilenet_v2"), "", bearer(token)).status == 200);
}

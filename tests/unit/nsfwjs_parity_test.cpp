// The built-in weights (nsfwjs 4.4.0's InceptionV3 and MobileNetV2, converted by
// scripts/nsfwjs/ into models/zoo's keras_inception_v3 / keras_mobilenet_v2):
// parity of Rookery's whole model path -- PNG decode, the tf_bilinear
// preprocessing, the zoo model, softmax -- with nsfwjs itself running in Node
// on the pure-JS tfjs CPU backend (tests/nsfwjs_reference.hpp), on a real photo.
//
// Catch2 2.x has no SKIP: when the npm packages are not installed (scripts/setup.sh
// installs them) the parity case WARNs and returns, and passes.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <chrono>
#include <optional>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <torch/torch.h>

#include "models/embedding_model.hpp"
#include "models/repository.hpp"
#include "models/zoo/keras_layers.hpp"
#include "models/zoo/zoo.hpp"
#include "nsfwjs_reference.hpp"
#include "pipelines/image.hpp"

#undef CHECK
#define CHECK(...) INTERNAL_CATCH_TEST("CHECK", Catch::ResultDisposition::ContinueOnFailure, __VA_ARGS__)

namespace fs = std::filesystem;
using namespace rookery;
namespace ref = rookery::test::nsfwjs;

namespace {

const char* const photo = "/usr/lib/python3/dist-packages/skimage/data/chelsea.png";

struct tmp_dir {
  fs::path path;
  tmp_dir() {
    path = fs::temp_directory_path() / ("rookery-nsfwjs-test-" + std::to_string(std::rand()));
    fs::create_directories(path);
  }
  ~tmp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// The built-in models, or (when setup has not converted them here) a fresh
// conversion into `scratch`, which then serves as the built-in directory.
bool ensure_builtin(const fs::path& scratch, std::string& error) {
  if (ref::has_builtin_models(builtin_models_dir()))
    return true;
  auto dir = ref::convert_into(scratch, error);
  if (dir.empty())
    return false;
  set_builtin_models_dir(dir);
  return true;
}

struct cpp_answer {
  std::vector<float> probabilities, features;
};

cpp_answer run_rookery(const std::string& name, const std::string& png) {
  auto m = find_installed_model("/nonexistent-data-dir", name);
  REQUIRE(m);
  CHECK(m->builtin);
  CHECK(m->output == "softmax");
  auto opts = parse_image_options(m->preprocess_json);
  REQUIRE(opts);
  auto img = preprocess_image(png, *opts);
  REQUIRE(img);
  model_spec spec;
  spec.name = m->name;
  spec.arch = m->arch;
  spec.weights_path = m->weights;
  spec.format = m->format;
  spec.options_json = m->options_json;
  spec.output = m->output;
  auto model = embedding_model::load(spec);
  REQUIRE(model);
  auto probs = (*model)->forward({img->data.data()}, img->c, img->h, img->w);
  auto feats = (*model)->embed({img->data.data()}, img->c, img->h, img->w);
  REQUIRE(probs);
  REQUIRE(feats);
  return {probs->front(), feats->front()};
}

double cosine(const std::vector<float>& a, const std::vector<double>& b) {
  double dot = 0, na = 0, nb = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    dot += a[i] * b[i];
    na += static_cast<double>(a[i]) * a[i];
    nb += b[i] * b[i];
  }
  return dot / std::sqrt(na * nb);
}

} // namespace

TEST_CASE("the Keras zoo variants are custom entries with nsfwjs's head", "[nsfwjs][zoo]") {
  for (auto name : {"keras_inception_v3", "keras_mobilenet_v2"}) {
    auto listed = zoo::list_models();
    CHECK(std::none_of(listed.begin(), listed.end(), [&](auto& e) { return e.name == name; }));
    auto custom = zoo::list_custom_models();
    CHECK(std::any_of(custom.begin(), custom.end(), [&](auto& e) { return e.name == name; }));
  }
  zoo::model_options o;
  o.num_classes = 5;
  auto inc = zoo::create_model("keras_inception_v3", o);
  REQUIRE(inc);
  auto mob = zoo::create_model("keras_mobilenet_v2", o);
  REQUIRE(mob);
  torch::NoGradGuard ng;
  (*inc)->eval();
  (*mob)->eval();
  CHECK((*inc)->forward(torch::zeros({1, 3, 299, 299})).sizes() == torch::IntArrayRef({1, 5}));
  CHECK((*inc)->forward_features(torch::zeros({2, 3, 299, 299})).sizes() == torch::IntArrayRef({2, 2048}));
  CHECK((*mob)->forward_features(torch::zeros({2, 3, 224, 224})).sizes() == torch::IntArrayRef({2, 1280}));
  auto stages = (*mob)->forward_stages(torch::zeros({1, 3, 224, 224}));
  REQUIRE(stages.size() == 5);
  CHECK(stages[0].size(2) == 112);
  CHECK(stages[3].size(2) == 14);
  CHECK(stages[4].size(1) == 1280);
  CHECK((*inc)->forward_stages(torch::zeros({1, 3, 299, 299})).size() == 5);
  // Names the converter writes: torchvision-style for InceptionV3 (scale=False BN keeps a weight of 1).
  auto params = (*inc)->named_parameters();
  CHECK(params.contains("Mixed_7c.branch3x3dbl_3b.conv.weight"));
  CHECK(params.contains("classifier.6.weight"));
  CHECK(!params["Conv2d_1a_3x3.bn.weight"].requires_grad());
  CHECK(params["Conv2d_1a_3x3.bn.weight"].eq(1).all().item<bool>());
  CHECK((*mob)->named_parameters().contains("blocks.16.project.bn.weight"));
  CHECK(!(*mob)->named_parameters().contains("blocks.0.expand.conv.weight")); // expansion 1
  // num_classes 0: features only; width_mult for MobileNetV2 only.
  o.num_classes = 0;
  auto bare = zoo::create_model("keras_mobilenet_v2", o);
  REQUIRE(bare);
  CHECK((*bare)->forward(torch::zeros({1, 3, 96, 96})).size(1) == 1280);
  o.width_mult = 1.4;
  auto wide = zoo::create_model("keras_mobilenet_v2", o);
  REQUIRE(wide);
  CHECK((*wide)->num_features() == 1792);
  CHECK(zoo::create_model("keras_inception_v3", o).error().code == errc::bad_request);
}

TEST_CASE("TF 'same' padding is asymmetric at stride 2", "[nsfwjs][zoo]") {
  CHECK(zoo::keras::same_padding(224, 3, 2) == std::make_pair<int64_t, int64_t>(0, 1));
  CHECK(zoo::keras::same_padding(225, 3, 2) == std::make_pair<int64_t, int64_t>(1, 1));
  CHECK(zoo::keras::same_padding(17, 7, 1) == std::make_pair<int64_t, int64_t>(3, 3));
  CHECK(zoo::keras::same_padding(10, 4, 1) == std::make_pair<int64_t, int64_t>(1, 2));
}

TEST_CASE("tf_bilinear preprocessing options", "[nsfwjs][image]") {
  auto o = parse_image_options(R"({"resize_mode": "tf_bilinear", "align_corners": true, "resize": 299,
                                   "mean": [0, 0, 0], "std": [1, 1, 1]})");
  REQUIRE(o);
  CHECK(o->mode == resize_mode::tf_bilinear);
  CHECK(o->crop == 0);
  CHECK(o->input_side() == 299);
  CHECK(parse_image_options(R"({"resize_mode": "tf_bilinear", "resize": 299, "crop": 224})").error().code
        == errc::bad_request);
  CHECK(parse_image_options(R"({"resize_mode": "stretch"})").error().code == errc::bad_request);
  CHECK(parse_image_options(R"({"align_corners": true})").error().code == errc::bad_request);
  CHECK(parse_image_options(R"({"resize_mode": "tf_bilinear", "resize": 64, "channels": 1})").error().code
        == errc::bad_request);
  CHECK(parse_image_options(R"({"resize_mode": "tf_bilinear", "resize": 8, "align_corners": 1})").error().code
        == errc::bad_request);

  // A 2x3 image stretched to 3x3 with aligned corners: the corners are the
  // source pixels, the rest linear in between; RGB / 255 with mean 0, std 1.
  cv::Mat img(2, 3, CV_8UC3);
  const unsigned char red[2][3] = {{0, 30, 60}, {90, 120, 150}};
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 3; ++x)
      img.at<cv::Vec3b>(y, x) = cv::Vec3b(0, 255, red[y][x]); // BGR
  std::vector<unsigned char> png;
  REQUIRE(cv::imencode(".png", img, png));
  o = parse_image_options(R"({"resize_mode": "tf_bilinear", "align_corners": true, "resize": 3,
                              "mean": [0, 0, 0], "std": [1, 1, 1]})");
  auto t = preprocess_image(std::string(png.begin(), png.end()), *o);
  REQUIRE(t);
  REQUIRE(t->data.size() == 27);
  const float expect[9] = {0, 30, 60, 45, 75, 105, 90, 120, 150};
  for (int i = 0; i < 9; ++i) {
    CHECK(t->data[i] == Approx(expect[i] / 255.0).margin(1e-6)); // R
    CHECK(t->data[9 + i] == Approx(1.0f).margin(1e-6));          // G
    CHECK(t->data[18 + i] == Approx(0.0f).margin(1e-6));         // B
  }
}

TEST_CASE("built-in models: found whatever the data directory, shadowed by its own, read-only",
          "[nsfwjs][repository]") {
  tmp_dir builtin, data;
  const auto saved = builtin_models_dir();
  set_builtin_models_dir(builtin.path.string());
  fs::create_directories(builtin.path / "m1" / "1");
  std::ofstream(builtin.path / "m1" / "1" / "config.json")
    << R"({"arch": "resnet18", "provenance": "somewhere 1.0", "output": "softmax"})";
  auto m = find_installed_model(data.path.string(), "m1");
  REQUIRE(m);
  CHECK(m->builtin);
  CHECK(m->provenance == "somewhere 1.0");
  CHECK(m->output == "softmax");
  auto all = list_installed_models(data.path.string());
  REQUIRE(all.size() == 1);
  CHECK(all[0].builtin);
  CHECK(remove_model(data.path.string(), "m1").error().code == errc::forbidden);
  CHECK(fs::exists(builtin.path / "m1" / "1" / "config.json"));
  // The data directory's own model of the same name wins.
  fs::create_directories(data.path / "models" / "m1" / "3");
  std::ofstream(data.path / "models" / "m1" / "3" / "config.json") << R"({"arch": "resnet34"})";
  m = find_installed_model(data.path.string(), "m1");
  REQUIRE(m);
  CHECK(!m->builtin);
  CHECK(m->arch == "resnet34");
  all = list_installed_models(data.path.string());
  REQUIRE(all.size() == 1);
  CHECK(!all[0].builtin);
  CHECK(remove_model(data.path.string(), "m1"));
  CHECK(find_installed_model(data.path.string(), "m1")->builtin); // the built-in shows again
  // A bad "output" is refused when the config is read.
  fs::create_directories(builtin.path / "m2" / "1");
  std::ofstream(builtin.path / "m2" / "1" / "config.json") << R"({"arch": "resnet18", "output": "argmax"})";
  CHECK(find_installed_model(data.path.string(), "m2").error().code == errc::unprocessable);
  set_builtin_models_dir("");
  CHECK(find_installed_model(data.path.string(), "m1").error().code == errc::not_found);
  set_builtin_models_dir(saved);
}

TEST_CASE("built-in weights match nsfwjs itself on a real photo", "[nsfwjs][parity]") {
  std::string why;
  if (!ref::installed(why)) {
    WARN("SKIPPED (Catch2 2.x has no SKIP): " << why);
    return;
  }
  tmp_dir scratch;
  const auto saved = builtin_models_dir();
  std::string error;
  const bool converted = ensure_builtin(scratch.path, error);
  INFO(error);
  REQUIRE(converted);

  const auto png = ref::slurp(photo);
  REQUIRE(!png.empty());
  cv::Mat bgr = cv::imdecode(cv::Mat(1, static_cast<int>(png.size()), CV_8UC1,
                                     const_cast<char*>(png.data())),
                             cv::IMREAD_COLOR);
  REQUIRE(!bgr.empty());
  cv::Mat rgb_mat;
  cv::Mat channels[3];
  cv::split(bgr, channels);
  std::swap(channels[0], channels[2]);
  cv::merge(channels, 3, rgb_mat);
  const std::string rgb(reinterpret_cast<const char*>(rgb_mat.data), rgb_mat.total() * 3);

  // nsfwjs in Node, both models at once (pure JS is single-threaded).
  const std::vector<std::string> models = {"inception_v3", "mobilenet_v2"};
  std::vector<std::optional<ref::answer>> theirs(models.size());
  std::vector<std::string> errors(models.size());
  std::vector<std::thread> node;
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t i = 0; i < models.size(); ++i)
    node.emplace_back([&, i] {
      // Always nsfwjs afresh here; the answer is kept for tests/integration/nsfwjs_test.cpp.
      theirs[i] = ref::run(models[i], rgb, bgr.rows, bgr.cols, ref::default_cache_dir(),
                           /*read_cache=*/false, errors[i]);
    });
  for (auto& t : node)
    t.join();
  const double node_s =
    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::vector<cpp_answer> ours;
  for (auto& m : models)
    ours.push_back(run_rookery("nsfwjs_" + m, png));

  for (size_t i = 0; i < models.size(); ++i) {
    INFO(models[i] << ": " << errors[i]);
    REQUIRE(theirs[i]);
    CHECK(theirs[i]->package == "nsfwjs@4.4.0");
    CHECK(theirs[i]->backend == "cpu");
    REQUIRE(theirs[i]->probabilities.size() == 5);
    REQUIRE(ours[i].probabilities.size() == 5);
    double max_diff = 0;
    for (size_t k = 0; k < 5; ++k)
      max_diff = std::max(max_diff, std::abs(ours[i].probabilities[k] - theirs[i]->probabilities[k]));
    REQUIRE(ours[i].features.size() == theirs[i]->features.size());
    const double cos = cosine(ours[i].features, theirs[i]->features);
    std::printf("nsfwjs parity, %s on chelsea.png: probabilities max |diff| %.3g, features cosine "
                "%.9f (1 - cos = %.3g; nsfwjs %s; rookery [%.6f %.6f %.6f %.6f %.6f], nsfwjs [%.6f %.6f %.6f %.6f "
                "%.6f]; node %.1f s for both)\n",
                models[i].c_str(), max_diff, cos, 1.0 - cos, theirs[i]->package.c_str(),
                ours[i].probabilities[0], ours[i].probabilities[1], ours[i].probabilities[2],
                ours[i].probabilities[3], ours[i].probabilities[4], theirs[i]->probabilities[0],
                theirs[i]->probabilities[1], theirs[i]->probabilities[2],
                theirs[i]->probabilities[3], theirs[i]->probabilities[4], node_s);
    CHECK(max_diff <= 1e-4);
    CHECK(cos >= 0.9999);
  }
  set_builtin_models_dir(saved);
}

// The zoo's registry and customisation interface (models/zoo/zoo.hpp): names,
// errors, num_classes / in_channels / features_only options, reset_classifier,
// backbone()/head(), parameter and MAC counts. Expected numbers come from
// torchvision through tests/tools/export_zoo.py (never hard-coded), except the
// published GFLOPS (= GMACs) of ResNet-18 / ResNet-50.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "models/embedding_model.hpp"
#include "models/resnet.hpp"
#include "models/zoo/zoo.hpp"
#include "tensor_files.hpp"

#undef CHECK
#define CHECK(...) INTERNAL_CATCH_TEST("CHECK", Catch::ResultDisposition::ContinueOnFailure, __VA_ARGS__)

namespace fs = std::filesystem;
using namespace rookery;
using rookery::test::python;
using rookery::test::read_bin;
using rookery::test::read_tensor;
using rookery::test::temp_dir;

namespace {

// One exporter run per process, shared by the test cases below: resnet18 and
// mobilenet_v3_small weights + outputs at 64 px, and parameter counts.
const std::vector<std::pair<std::string, nlohmann::json>>& param_jobs() {
  static const std::vector<std::pair<std::string, nlohmann::json>> jobs{
    {"resnet50", {}},          {"resnext50_32x4d", {}},  {"vgg11", {}},
    {"vgg13_bn", {}},          {"alexnet", {}},          {"squeezenet1_0", {}},
    {"densenet121", {}},       {"densenet161", {}},      {"mobilenet_v2", {}},
    {"mobilenet_v3_large", {}}, {"mnasnet0_75", {}},     {"mnasnet1_3", {}},
    {"shufflenet_v2_x2_0", {}}, {"googlenet", {{"init_weights", false}}},
    {"inception_v3", {{"init_weights", false}}},
    {"resnet18", {{"num_classes", 10}}},
    {"mobilenet_v2", {{"width_mult", 0.75}}},
    {"mobilenet_v3_small", {{"width_mult", 1.25}}},
  };
  return jobs;
}

std::string param_tag(const std::string& name, const nlohmann::json& kw) {
  return kw.empty() || (kw.size() == 1 && kw.contains("init_weights")) ? name + "_p"
                                                                        : name + "_" + kw.dump();
}

struct exported {
  temp_dir dir{"rookery-zoo-test-"};
  nlohmann::json meta;
  bool ok = false;
  exported() {
    nlohmann::json spec = nlohmann::json::array();
    spec.push_back({{"name", "resnet18"}, {"size", 64}});
    spec.push_back({{"name", "mobilenet_v3_small"}, {"size", 64}});
    // The configurations of torchvision's pretrained GoogLeNet / Inception V3.
    spec.push_back({{"name", "googlenet"}, {"tag", "googlenet_pretrained_cfg"}, {"size", 64},
                    {"kwargs", {{"transform_input", true}, {"aux_logits", false}, {"init_weights", false}}}});
    spec.push_back({{"name", "inception_v3"}, {"tag", "inception_v3_pretrained_cfg"}, {"size", 96},
                    {"kwargs", {{"transform_input", true}, {"init_weights", false}}}});
    for (auto& [name, kw] : param_jobs())
      spec.push_back({{"name", name}, {"tag", param_tag(name, kw)}, {"kwargs", kw.is_null() ? nlohmann::json::object() : kw},
                      {"mode", "params"}});
    std::ofstream(dir.path / "spec.json") << spec.dump();
    const std::string cmd = std::string(python) + " " ROOKERY_SOURCE_DIR "/tests/tools/export_zoo.py "
                            + dir.path.string() + " " + (dir.path / "spec.json").string();
    const int rc = std::system(cmd.c_str());
    std::ifstream in(dir.path / "meta.json");
    if (rc == 0 && in) {
      meta = nlohmann::json::parse(in);
      ok = true;
    }
  }
};

exported& exports() {
  static exported e;
  return e;
}

int64_t param_sum(const std::vector<std::shared_ptr<torch::nn::Module>>& mods) {
  int64_t n = 0;
  for (auto& m : mods)
    n += zoo::count_parameters(*m);
  return n;
}

double max_abs(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

const std::vector<std::string> expected_names{
  "alexnet",          "densenet121",        "densenet161",        "densenet169",
  "densenet201",      "googlenet",          "inception_v3",       "mnasnet0_5",
  "mnasnet0_75",      "mnasnet1_0",         "mnasnet1_3",         "mobilenet_v2",
  "mobilenet_v3_large", "mobilenet_v3_small", "resnet101",        "resnet152",
  "resnet18",         "resnet34",           "resnet50",           "resnext101_32x8d",
  "resnext101_64x4d", "resnext50_32x4d",    "shufflenet_v2_x0_5", "shufflenet_v2_x1_0",
  "shufflenet_v2_x1_5", "shufflenet_v2_x2_0", "squeezenet1_0",    "squeezenet1_1",
  "vgg11",            "vgg11_bn",           "vgg13",              "vgg13_bn",
  "vgg16",            "vgg16_bn",           "vgg19",              "vgg19_bn",
  "wide_resnet101_2", "wide_resnet50_2",
};

// The quick model of each of this half's families, at a size it accepts.
const std::vector<std::pair<std::string, int64_t>> small_models{
  {"resnet18", 64},     {"vgg11_bn", 64},      {"alexnet", 64},           {"squeezenet1_1", 64},
  {"mobilenet_v2", 64}, {"mobilenet_v3_small", 64}, {"densenet121", 64}, {"shufflenet_v2_x0_5", 64},
  {"mnasnet0_5", 64},   {"googlenet", 64},     {"inception_v3", 96},
};

} // namespace

TEST_CASE("zoo registry lists every torchvision classification name", "[zoo]") {
  auto models = zoo::list_models();
  std::set<std::string> names;
  std::string prev;
  for (auto& e : models) {
    CHECK(e.name > prev); // sorted, unique
    prev = e.name;
    names.insert(e.name);
    CHECK_FALSE(e.family.empty());
    CHECK(e.default_size > 0);
    CHECK(static_cast<bool>(e.make));
  }
  for (auto& n : expected_names) {
    INFO(n);
    CHECK(names.count(n) == 1);
  }
  for (auto& e : models)
    if (e.name == "inception_v3")
      CHECK(e.default_size == 299);
  // register_model refuses duplicates.
  zoo::model_entry dup = models.front();
  CHECK_FALSE(zoo::register_model(dup));
  // The embedding model accepts every zoo name.
  CHECK(embedding_model::supported_archs().size() == models.size());
}

TEST_CASE("zoo create_model errors", "[zoo]") {
  auto r = zoo::create_model("resnet17");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == errc::bad_request);
  CHECK(r.error().message.find("resnet17") != std::string::npos);
  CHECK(r.error().message.find("resnet18") != std::string::npos); // suggestions

  zoo::model_options o;
  o.width_mult = 0.5;
  r = zoo::create_model("resnet18", o); // no width multiplier in ResNet
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == errc::bad_request);
  o = {};
  o.drop_path = 0.1;
  r = zoo::create_model("vgg11", o); // no stochastic depth in VGG
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == errc::bad_request);
  o = {};
  o.num_classes = -1;
  CHECK_FALSE(zoo::create_model("mobilenet_v2", o).ok());
  o = {};
  o.in_channels = 0;
  CHECK_FALSE(zoo::create_model("densenet121", o).ok());
  o = {};
  o.dropout = 1.5;
  CHECK_FALSE(zoo::create_model("alexnet", o).ok());
  // Options that apply are accepted.
  o = {};
  o.drop_path = 0.1;
  o.dropout = 0.3;
  CHECK(zoo::create_model("resnet18", o).ok());
  o = {};
  o.width_mult = 0.75;
  auto mb = zoo::create_model("mobilenet_v2", o);
  REQUIRE(mb.ok());
  CHECK(zoo::create_model("mnasnet1_0", o).ok());
}

TEST_CASE("zoo num_classes, features and reset_classifier", "[zoo]") {
  torch::manual_seed(0);
  for (auto& [name, size] : small_models) {
    INFO(name);
    zoo::model_options o;
    o.num_classes = 10;
    auto r = zoo::create_model(name, o);
    INFO((r ? std::string("ok") : r.error().message));
    REQUIRE(r.ok());
    auto m = r.value();
    m->eval();
    c10::InferenceMode guard;
    auto x = torch::randn({2, 3, size, size});
    auto y = m->forward(x);
    CHECK(y.sizes() == torch::IntArrayRef({2, 10}));
    auto f = m->forward_features(x);
    CHECK(f.sizes() == torch::IntArrayRef({2, m->num_features()}));

    // backbone + head (+ aux heads) hold every parameter exactly once.
    const int64_t total = zoo::count_parameters(*m);
    CHECK(param_sum(m->backbone()) + zoo::count_parameters(*m->head()) + param_sum(m->aux_heads())
          == total);
    CHECK(zoo::count_parameters(*m->head()) > 0);

    m->reset_classifier(5);
    CHECK(m->forward(x).sizes() == torch::IntArrayRef({2, 5}));
    m->reset_classifier(0);
    CHECK(zoo::count_parameters(*m->head()) == 0);
    auto y0 = m->forward(x);
    CHECK(y0.sizes() == torch::IntArrayRef({2, m->num_features()}));
    CHECK(max_abs(y0, m->forward_features(x)) == 0.0);
    CHECK(m->aux_heads().empty());
    CHECK(zoo::count_parameters(*m) < total);
  }
}

TEST_CASE("zoo dropout and drop_path act only while training", "[zoo]") {
  zoo::model_options o;
  o.drop_path = 0.5;
  o.dropout = 0.5;
  for (const char* name : {"resnet18", "mobilenet_v3_small"}) {
    INFO(name);
    zoo::model_options oo = o;
    if (std::string(name) != "resnet18")
      oo.drop_path = 0; // MobileNet has no stochastic depth...
    auto r = zoo::create_model(name, oo);
    REQUIRE(r.ok());
    auto m = r.value();
    torch::NoGradGuard ng;
    auto x = torch::randn({4, 3, 64, 64});
    m->eval();
    auto e1 = m->forward(x), e2 = m->forward(x);
    CHECK(max_abs(e1, e2) == 0.0);
    m->train();
    auto t1 = m->forward(x), t2 = m->forward(x);
    CHECK(max_abs(t1, t2) > 0.0);
  }
  o = {};
  o.drop_path = 0.2;
  CHECK_FALSE(zoo::create_model("mobilenet_v3_small", o).ok()); // ...and says so
}

TEST_CASE("zoo forward_stages and features_only / out_indices", "[zoo]") {
  zoo::model_options o;
  o.features_only = true;
  o.out_indices = {1, 2, -1};
  auto r = zoo::create_model("resnet18", o);
  REQUIRE(r.ok());
  auto m = r.value();
  m->eval();
  c10::InferenceMode guard;
  auto x = torch::randn({2, 3, 64, 64});
  auto maps = m->forward_feature_maps(x);
  REQUIRE(maps.size() == 3);
  CHECK(maps[0].sizes() == torch::IntArrayRef({2, 64, 16, 16}));
  CHECK(maps[1].sizes() == torch::IntArrayRef({2, 128, 8, 8}));
  CHECK(maps[2].sizes() == torch::IntArrayRef({2, 512, 2, 2}));
  auto all = m->forward_feature_maps(x, {});
  REQUIRE(all.size() == 5);
  CHECK(all[0].sizes() == torch::IntArrayRef({2, 64, 32, 32}));
  CHECK(max_abs(all[4], maps[2]) == 0.0);
  CHECK(m->forward(x).sizes() == torch::IntArrayRef({2, 512})); // no head
  CHECK_THROWS(m->forward_feature_maps(x, {5}));

  // Every family: stages go from shallow to deep, strides 2^k, the last one
  // is the deepest map (stride 16 for VGG / AlexNet / SqueezeNet, else 32).
  for (auto& [name, size] : small_models) {
    INFO(name);
    auto rm = zoo::create_model(name);
    INFO((rm ? std::string("ok") : rm.error().message));
    REQUIRE(rm.ok());
    rm.value()->eval();
    auto xs = torch::randn({1, 3, size, size});
    auto stages = rm.value()->forward_stages(xs);
    REQUIRE(stages.size() >= 3);
    int64_t prev_stride = 1;
    for (auto& s : stages) {
      REQUIRE(s.dim() == 4);
      const double stride = static_cast<double>(size) / static_cast<double>(s.size(2));
      CHECK(stride >= static_cast<double>(prev_stride) - 1e-9);
      prev_stride = static_cast<int64_t>(std::floor(stride));
    }
    CHECK(prev_stride >= 8);
  }
}

TEST_CASE("zoo count_parameters equals torchvision's", "[zoo]") {
  auto& ex = exports();
  REQUIRE(ex.ok);
  for (auto& [name, kw] : param_jobs()) {
    const auto tag = param_tag(name, kw);
    INFO(tag);
    REQUIRE(ex.meta.contains(tag));
    zoo::model_options o;
    if (kw.contains("num_classes"))
      o.num_classes = kw["num_classes"].get<int64_t>();
    if (kw.contains("width_mult"))
      o.width_mult = kw["width_mult"].get<double>();
    auto m = zoo::create_model(name, o);
    REQUIRE(m.ok());
    const int64_t expected = ex.meta[tag]["num_params"].get<int64_t>();
    CHECK(zoo::count_parameters(*m.value()) == expected);
    CHECK(static_cast<int64_t>(m.value()->named_parameters().size() + m.value()->named_buffers().size())
          == ex.meta[tag]["num_state"].get<int64_t>());
  }
}

TEST_CASE("zoo load_pretrained: num_classes, in_channels 1 and 4, features_only", "[zoo]") {
  auto& ex = exports();
  REQUIRE(ex.ok);
  const auto dir = ex.dir.path / "resnet18";
  const auto weights = (dir / "weights.pth").string();
  const auto& shapes = ex.meta["resnet18"]["tensors"];
  auto x = read_tensor(dir / "input.bin", shapes["input"]);
  auto feats_ref = read_tensor(dir / "features.bin", shapes["features"]);

  auto ref = zoo::create_pretrained("resnet18", weights);
  REQUIRE(ref.ok());
  auto ref_params = ref.value()->named_parameters();

  SECTION("num_classes 10: the head is re-initialised, the rest loaded") {
    zoo::model_options o;
    o.num_classes = 10;
    auto r = zoo::create_pretrained("resnet18", weights, o);
    INFO((r ? std::string("ok") : r.error().message));
    REQUIRE(r.ok());
    auto m = r.value();
    m->eval();
    auto p = m->named_parameters();
    CHECK(p["fc.weight"].sizes() == torch::IntArrayRef({10, 512}));
    CHECK(max_abs(p["layer3.1.conv2.weight"], ref_params["layer3.1.conv2.weight"]) == 0.0);
    c10::InferenceMode guard;
    CHECK(max_abs(m->forward_features(x), feats_ref) <= 1e-4);
    CHECK(m->forward(x).sizes() == torch::IntArrayRef({2, 10}));
  }

  SECTION("in_channels 1 and 4: first conv summed / tiled and rescaled like timm") {
    for (int64_t c : {1, 4}) {
      INFO("in_channels " << c);
      zoo::model_options o;
      o.in_channels = c;
      auto r = zoo::create_pretrained("resnet18", weights, o);
      INFO((r ? std::string("ok") : r.error().message));
      REQUIRE(r.ok());
      auto p = r.value()->named_parameters();
      const std::string tag = "conv1_in" + std::to_string(c);
      auto expected = read_tensor(dir / (tag + ".bin"), shapes[tag]);
      CHECK(p["conv1.weight"].sizes() == expected.sizes());
      CHECK(max_abs(p["conv1.weight"], expected) <= 1e-6);
      CHECK(max_abs(p["layer1.0.conv1.weight"], ref_params["layer1.0.conv1.weight"]) == 0.0);
      CHECK(max_abs(p["fc.weight"], ref_params["fc.weight"]) == 0.0);
      // A grey image through the 1-channel model == the same image as RGB.
      if (c == 1) {
        r.value()->eval();
        ref.value()->eval();
        c10::InferenceMode guard;
        auto grey = torch::randn({1, 1, 64, 64});
        CHECK(max_abs(r.value()->forward(grey), ref.value()->forward(grey.repeat({1, 3, 1, 1})))
              <= 1e-4);
      }
    }
    // adapt_first_conv directly.
    auto w = ref_params["conv1.weight"];
    auto w7 = zoo::adapt_first_conv(w, 7);
    CHECK(w7.sizes() == torch::IntArrayRef({64, 7, 7, 7}));
    CHECK(max_abs(w7.slice(1, 0, 3), w * (3.0 / 7.0)) <= 1e-7);
    CHECK(max_abs(w7.slice(1, 6, 7), w.slice(1, 0, 1) * (3.0 / 7.0)) <= 1e-7);
    CHECK(max_abs(zoo::adapt_first_conv(w, 3), w) == 0.0);
  }

  SECTION("features_only drops the head; wrong architecture fails cleanly") {
    zoo::model_options o;
    o.features_only = true;
    auto r = zoo::create_pretrained("resnet18", weights, o);
    REQUIRE(r.ok());
    r.value()->eval();
    c10::InferenceMode guard;
    auto maps = r.value()->forward_feature_maps(x);
    REQUIRE(maps.size() == 5);
    CHECK(max_abs(torch::flatten(torch::adaptive_avg_pool2d(maps.back(), {1, 1}), 1), feats_ref)
          <= 1e-4);
    auto bad = zoo::create_pretrained("resnet34", weights);
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().code == errc::unprocessable);
    zoo::model_options o10;
    o10.num_classes = 10;
    bad = zoo::create_pretrained("resnet34", weights, o10);
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().code == errc::unprocessable);
    auto missing = zoo::create_pretrained("resnet18", (ex.dir.path / "nope.pth").string(), o10);
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.error().code == errc::not_found);
  }
}

TEST_CASE("zoo count_macs matches the published numbers", "[zoo]") {
  auto r18 = zoo::create_model("resnet18");
  auto r50 = zoo::create_model("resnet50");
  REQUIRE(r18.ok());
  REQUIRE(r50.ok());
  auto m18 = zoo::count_macs(*r18.value(), 224);
  auto m50 = zoo::count_macs(*r50.value(), 224);
  INFO((m18 ? std::string("ok") : m18.error().message));
  REQUIRE(m18.ok());
  REQUIRE(m50.ok());
  std::cout << "[zoo] count_macs at 224: resnet18 = " << m18.value() << ", resnet50 = " << m50.value()
            << std::endl;
  // torchvision's docs: ResNet-18 1.81 GFLOPS, ResNet-50 4.09 GFLOPS (counted as MACs).
  CHECK(std::fabs(static_cast<double>(m18.value()) / 1.81e9 - 1.0) < 0.01);
  CHECK(std::fabs(static_cast<double>(m50.value()) / 4.09e9 - 1.0) < 0.01);
  // The model is left as it was: training mode and requires_grad restored.
  CHECK(r18.value()->is_training());
  for (auto& p : r18.value()->parameters())
    CHECK(p.requires_grad());
  // Scales with the input area and the first conv with in_channels.
  auto m18_448 = zoo::count_macs(*r18.value(), 448);
  REQUIRE(m18_448.ok());
  CHECK(std::fabs(static_cast<double>(m18_448.value()) / 4 / static_cast<double>(m18.value()) - 1.0)
        < 0.01);
  zoo::model_options o1;
  o1.in_channels = 1;
  auto r18g = zoo::create_model("resnet18", o1);
  REQUIRE(r18g.ok());
  auto m18g = zoo::count_macs(*r18g.value(), 224, 1);
  REQUIRE(m18g.ok());
  // conv1: 64 x 112 x 112 outputs x 7 x 7 x (3 - 1) fewer MACs.
  CHECK(m18.value() - m18g.value() == int64_t{64} * 112 * 112 * 49 * 2);
  CHECK_FALSE(zoo::count_macs(*r18.value(), 0).ok());
  for (auto& [name, size] : small_models) {
    auto m = zoo::create_model(name);
    REQUIRE(m.ok());
    auto macs = zoo::count_macs(*m.value(), name == "inception_v3" ? 299 : 224);
    INFO(name << ": " << (macs ? std::string("ok") : macs.error().message));
    CHECK(macs.ok());
    if (macs)
      std::cout << "[zoo] count_macs " << name << " = " << macs.value() << std::endl;
  }
}

TEST_CASE("embedding_model loads any zoo arch", "[zoo]") {
  auto& ex = exports();
  REQUIRE(ex.ok);
  const auto dir = ex.dir.path / "mobilenet_v3_small";
  const auto& shapes = ex.meta["mobilenet_v3_small"]["tensors"];
  auto x = read_tensor(dir / "input.bin", shapes["input"]);
  auto feats_ref = read_tensor(dir / "features.bin", shapes["features"]);
  model_spec spec;
  spec.name = "mnv3";
  spec.arch = "mobilenet_v3_small";
  spec.weights_path = (dir / "weights.pth").string();
  auto m = embedding_model::load(spec);
  INFO((m ? std::string("ok") : m.error().message));
  REQUIRE(m.ok());
  CHECK(m.value()->dim() == 1024);
  CHECK(m.value()->arch() == "mobilenet_v3_small");
  const auto per = x[0].numel();
  auto xc = x.contiguous();
  auto emb = m.value()->embed({xc.data_ptr<float>(), xc.data_ptr<float>() + per}, 3, 64, 64);
  REQUIRE(emb.ok());
  REQUIRE(emb->size() == 2);
  auto ref = torch::nn::functional::normalize(feats_ref, torch::nn::functional::NormalizeFuncOptions().dim(1));
  for (int64_t i = 0; i < 2; ++i) {
    auto got = torch::from_blob(emb->at(static_cast<size_t>(i)).data(), {1024}, torch::kFloat);
    CHECK(max_abs(got, ref[i]) <= 1e-5);
  }
  spec.arch = "vgg11_bn"; // wrong architecture for these weights
  auto bad = embedding_model::load(spec);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == errc::unprocessable);
}

TEST_CASE("zoo GoogLeNet / Inception V3 in torchvision's pretrained configuration", "[zoo]") {
  auto& ex = exports();
  REQUIRE(ex.ok);
  for (auto [tag, name, aux] : {std::make_tuple("googlenet_pretrained_cfg", "googlenet", false),
                                std::make_tuple("inception_v3_pretrained_cfg", "inception_v3", true)}) {
    INFO(tag);
    const auto dir = ex.dir.path / tag;
    const auto& shapes = ex.meta[tag]["tensors"];
    zoo::model_options o;
    o.transform_input = true;
    o.aux_logits = aux;
    auto m = zoo::create_pretrained(name, (dir / "weights.pth").string(), o);
    INFO((m ? std::string("ok") : m.error().message));
    REQUIRE(m.ok());
    CHECK(m.value()->aux_heads().size() == (aux ? 1u : 0u));
    m.value()->eval();
    auto x = read_tensor(dir / "input.bin", shapes["input"]);
    auto logits_ref = read_tensor(dir / "logits.bin", shapes["logits"]);
    auto feats_ref = read_tensor(dir / "features.bin", shapes["features"]);
    c10::InferenceMode guard;
    const double dl = max_abs(m.value()->forward(x), logits_ref)
                      / std::max(1.0, logits_ref.abs().max().item<double>());
    const double df = max_abs(m.value()->forward_features(x), feats_ref)
                      / std::max(1.0, feats_ref.abs().max().item<double>());
    std::cout << "[zoo] " << tag << ": logits rel |d| = " << dl << ", features rel |d| = " << df
              << std::endl;
    CHECK(dl <= 1e-4);
    CHECK(df <= 1e-4);
  }
  zoo::model_options bad;
  bad.transform_input = true;
  CHECK_FALSE(zoo::create_model("resnet18", bad).ok());
}

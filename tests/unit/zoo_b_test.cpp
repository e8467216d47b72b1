// Parity of the zoo's EfficientNet (V1, V2), RegNet (X, Y), ConvNeXt, ViT,
// Swin (V1, V2) and MaxViT with torchvision 0.14: tests/tools/export_zoo_b.py (run with
// /usr/bin/python3, Debian's python3-torch / python3-torchvision) saves seeded
// weights, an input, the logits, the pre-logits features and the multi-scale
// maps; the C++ models load the weights by name and must agree to
// max|d| / max(1, max|ref|) <= 1e-4. Plus the customisation options.
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "models/state_dict.hpp"
#include "models/zoo/convnext.hpp"
#include "models/zoo/efficientnet.hpp"
#include "models/zoo/layers.hpp"
#include "models/zoo/maxvit.hpp"
#include "models/zoo/regnet.hpp"
#include "models/zoo/swin.hpp"
#include "models/zoo/vit.hpp"
#include "tensor_files.hpp"

// glog's CHECK would shadow Catch's (see tests/pch_tests.hpp).
#undef CHECK
#define CHECK(...)                                                                                 \
  INTERNAL_CATCH_TEST("CHECK", Catch::ResultDisposition::ContinueOnFailure, __VA_ARGS__)

namespace fs = std::filesystem;
using namespace rookery;
using rookery::test::python;
using rookery::test::read_bin;
using namespace rookery::zoo;

namespace {

torch::Tensor load_tensor(const fs::path& p, const nlohmann::json& shape) {
  auto v = read_bin(p);
  std::vector<int64_t> sizes = shape.get<std::vector<int64_t>>();
  int64_t n = 1;
  for (auto s : sizes)
    n *= s;
  REQUIRE(static_cast<int64_t>(v.size()) == n);
  return torch::from_blob(v.data(), sizes, torch::kFloat32).clone();
}

/// max|a - b| / max(1, max|b|)
double rel_diff(const torch::Tensor& a, const torch::Tensor& ref) {
  REQUIRE(a.sizes() == ref.sizes());
  const auto d = (a - ref).abs().max().item<double>();
  const auto m = ref.abs().max().item<double>();
  return d / std::max(1.0, m);
}

struct temp_root {
  fs::path path;
  temp_root() {
    std::random_device rd;
    path = fs::temp_directory_path() / ("rookery-zoo-b-" + std::to_string(rd()));
    fs::create_directories(path);
  }
  ~temp_root() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

temp_root& tmp() {
  static temp_root t;
  return t;
}

struct export_set {
  fs::path dir;
  nlohmann::json meta;
  bool ok = false;
};

/// Runs the exporter once per set of names per process.
const export_set& exported(const std::vector<std::string>& names) {
  static std::map<std::string, export_set> runs;
  std::string key;
  for (auto& n : names)
    key += n + " ";
  auto it = runs.find(key);
  if (it != runs.end())
    return it->second;
  export_set e;
  e.dir = tmp().path / ("set" + std::to_string(runs.size()));
  const auto script = fs::path(ROOKERY_SOURCE_DIR) / "tests/tools/export_zoo_b.py";
  std::string cmd = std::string(python) + " " + script.string() + " " + e.dir.string() + " " + key;
  const auto t0 = std::chrono::steady_clock::now();
  const int rc = std::system(cmd.c_str());
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "[zoo_b] exporter (" << names.size() << " models): " << s << " s" << std::endl;
  if (rc == 0) {
    std::ifstream in(e.dir / "meta.json");
    e.meta = nlohmann::json::parse(in);
    e.ok = true;
  }
  return runs.emplace(key, std::move(e)).first->second;
}

/// MAXVIT_MINI of tests/tools/export_zoo_b.py: torchvision's MaxVit class at a
/// small size (128 px; blocks of 32, 16, 8, 4 with partition size 4).
maxvit_config maxvit_mini() {
  maxvit_config c;
  c.stem_channels = 16;
  c.partition_size = 4;
  c.block_channels = {16, 32, 48, 64};
  c.block_layers = {2, 1, 2, 1};
  c.head_dim = 8;
  c.stochastic_depth_prob = 0.2;
  return c;
}

/// `name` may carry the exporter's "@HxW" input size suffix.
std::shared_ptr<ZooModelImpl> make(const std::string& full_name, const model_options& o = {}) {
  const auto name = full_name.substr(0, full_name.find('@'));
  if (name.rfind("efficientnet_", 0) == 0)
    return EfficientNet(name, o).ptr();
  if (name.rfind("regnet_", 0) == 0)
    return RegNet(name, o).ptr();
  if (name.rfind("convnext_", 0) == 0)
    return ConvNeXt(name, o).ptr();
  if (name.rfind("vit_", 0) == 0)
    return VisionTransformer(name, o).ptr();
  if (name.rfind("swin_", 0) == 0)
    return SwinTransformer(name, o).ptr();
  if (name == "maxvit_mini") {
    model_options m = o;
    if (m.image_size == 0)
      m.image_size = 128;
    return MaxVit(maxvit_mini(), m, name).ptr();
  }
  if (name.rfind("maxvit_", 0) == 0)
    return MaxVit(name, o).ptr();
  FAIL("no such model " << name);
  return nullptr;
}

/// Loads `name`'s exported weights and compares logits, features and stages.
/// Returns the worst relative difference.
double check_parity(const export_set& ex, const std::string& name) {
  REQUIRE(ex.ok);
  const auto& m = ex.meta["models"][name];
  const auto dir = ex.dir / name;
  model_options o;
  o.image_size = m["image_size"].get<int64_t>();
  auto model = make(name, o);
  auto st = load_state_dict(*model, (dir / "weights.pth").string());
  INFO(name << ": " << (st ? std::string("ok") : st.error().message));
  REQUIRE(st.ok());
  model->eval();
  torch::NoGradGuard ng;
  const auto& t = m["tensors"];
  auto x = load_tensor(dir / "input.bin", t["input"]);
  const auto t0 = std::chrono::steady_clock::now();
  const double dl = rel_diff(model->forward(x), load_tensor(dir / "logits.bin", t["logits"]));
  const double df =
      rel_diff(model->forward_features(x), load_tensor(dir / "features.bin", t["features"]));
  CHECK(model->num_features() == t["features"][1].get<int64_t>());
  auto stages = model->forward_stages(x);
  double ds = 0;
  size_t n_ref = 0;
  while (t.contains("stage" + std::to_string(n_ref)))
    ++n_ref;
  CHECK(stages.size() == n_ref);
  for (size_t i = 0; i < std::min(n_ref, stages.size()); ++i) {
    const auto k = "stage" + std::to_string(i);
    ds = std::max(ds, rel_diff(stages[i], load_tensor(dir / (k + ".bin"), t[k])));
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "[zoo_b] " << name << " @" << m["size"][0].get<int>() << "x"
            << m["size"][1].get<int>() << ": logits rel " << dl << ", features rel " << df
            << ", stages rel " << ds << " (" << s << " s)" << std::endl;
  CHECK(dl <= 1e-4);
  CHECK(df <= 1e-4);
  CHECK(ds <= 1e-4);
  return std::max({dl, df, ds});
}

void check_all(const std::vector<std::string>& names) {
  const auto& ex = exported(names);
  REQUIRE(ex.ok);
  for (const auto& n : names) {
    DYNAMIC_SECTION(n) {
      check_parity(ex, n);
    }
  }
}

} // namespace

// The quick set: one variant per block type, at small sizes. 32x224 makes Swin
// shift its windows along W only (a window covers H from the second stage on).
const std::vector<std::string> quick_set{"efficientnet_b0", "efficientnet_v2_s", "regnet_y_400mf",
                                         "regnet_x_400mf",  "convnext_tiny",     "vit_b_32",
                                         "swin_t",          "swin_v2_t",         "swin_t@32x224",
                                         "swin_v2_t@32x224"};

TEST_CASE("zoo B: quick variants match torchvision 0.14", "[zoo_b]") {
  check_all(quick_set);
}

TEST_CASE("zoo B: the parity check has teeth", "[zoo_b]") {
  // The exporter run above is cached; this reuses it.
  const auto& ex = exported(quick_set);
  REQUIRE(ex.ok);
  torch::NoGradGuard ng;
  auto run = [&](const std::string& name, const std::function<void(ZooModelImpl&)>& tweak) {
    const auto& t = ex.meta["models"][name]["tensors"];
    auto model = make(name);
    REQUIRE(load_state_dict(*model, (ex.dir / name / "weights.pth").string()).ok());
    model->eval();
    tweak(*model);
    auto x = load_tensor(ex.dir / name / "input.bin", t["input"]);
    return rel_diff(model->forward(x), load_tensor(ex.dir / name / "logits.bin", t["logits"]));
  };
  // One LayerScale of one ConvNeXt block.
  CHECK(run("convnext_tiny", [](ZooModelImpl& m) {
          m.named_parameters()["features.5.4.layer_scale"].add_(0.05);
        }) > 1e-3);
  // Swin without the shifted-window mask / without the shift of one block.
  CHECK(run("swin_t", [](ZooModelImpl& m) {
          auto* s = dynamic_cast<SwinTransformerImpl&>(m).features->ptr(1)->as<SeqImpl>();
          s->ptr(1)->as<SwinTransformerBlockImpl>()->attn->shift_size = {0, 0};
        }) > 1e-3);
  // Swin V2 zeroes the key third of qkv.bias at run time (torchvision clones
  // and zeroes it), so what the checkpoint holds there has no effect.
  CHECK(run("swin_v2_t", [](ZooModelImpl& m) {
          auto* s = dynamic_cast<SwinTransformerImpl&>(m).features->ptr(1)->as<SeqImpl>();
          auto* a = s->ptr(0)->as<SwinTransformerBlockImpl>()->attn.get();
          a->qkv->bias.slice(0, 96, 192).add_(0.1);
        }) == 0.0);
  // A BatchNorm running mean of RegNet.
  CHECK(run("regnet_y_400mf", [](ZooModelImpl& m) {
          m.named_buffers()["trunk_output.block2.block2-1.f.b.1.running_mean"].add_(0.5);
        }) > 1e-3);
}

TEST_CASE("zoo B: RegNet block parameters match torchvision's quantization", "[zoo_b]") {
  const auto path = tmp().path / "regnet_params.json";
  const auto script = fs::path(ROOKERY_SOURCE_DIR) / "tests/tools/export_zoo_b.py";
  REQUIRE(std::system(
              (std::string(python) + " " + script.string() + " --regnet-params " + path.string())
                  .c_str()) == 0);
  std::ifstream in(path);
  auto ref = nlohmann::json::parse(in);
  REQUIRE(ref.size() == regnet_names().size());
  for (const auto& name : regnet_names()) {
    INFO(name);
    regnet_block_params p;
    REQUIRE(regnet_arch(name, p));
    const auto& r = ref[name];
    CHECK(p.depths == r["depths"].get<std::vector<int64_t>>());
    CHECK(p.widths == r["widths"].get<std::vector<int64_t>>());
    CHECK(p.group_widths == r["group_widths"].get<std::vector<int64_t>>());
    CHECK(p.se_ratio == r["se_ratio"].get<double>());
  }
}

namespace {

int64_t n_params(torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters())
    n += p.numel();
  return n;
}

// torchvision 0.14's Weights.meta["num_params"] (1000 classes, default size).
const std::map<std::string, int64_t>& torchvision_num_params() {
  static const std::map<std::string, int64_t> n{
      {"efficientnet_b0", 5288548},
      {"efficientnet_b1", 7794184},
      {"efficientnet_b2", 9109994},
      {"efficientnet_b3", 12233232},
      {"efficientnet_b4", 19341616},
      {"efficientnet_b5", 30389784},
      {"efficientnet_b6", 43040704},
      {"efficientnet_b7", 66347960},
      {"efficientnet_v2_s", 21458488},
      {"efficientnet_v2_m", 54139356},
      {"efficientnet_v2_l", 118515272},
      {"regnet_y_400mf", 4344144},
      {"regnet_y_800mf", 6432512},
      {"regnet_y_1_6gf", 11202430},
      {"regnet_y_3_2gf", 19436338},
      {"regnet_y_8gf", 39381472},
      {"regnet_y_16gf", 83590140},
      {"regnet_y_32gf", 145046770},
      {"regnet_y_128gf", 644812894},
      {"regnet_x_400mf", 5495976},
      {"regnet_x_800mf", 7259656},
      {"regnet_x_1_6gf", 9190136},
      {"regnet_x_3_2gf", 15296552},
      {"regnet_x_8gf", 39572648},
      {"regnet_x_16gf", 54278536},
      {"regnet_x_32gf", 107811560},
      {"convnext_tiny", 28589128},
      {"convnext_small", 50223688},
      {"convnext_base", 88591464},
      {"convnext_large", 197767336},
      {"vit_b_16", 86567656},
      {"vit_b_32", 88224232},
      {"vit_l_16", 304326632},
      {"vit_l_32", 306535400},
      {"vit_h_14", 632045800},
      {"swin_t", 28288354},
      {"swin_s", 49606258},
      {"swin_b", 87768224},
      {"swin_v2_t", 28351570},
      {"swin_v2_s", 49737442},
      {"swin_v2_b", 87930848},
      {"maxvit_t", 30919624},
  };
  return n;
}

void check_num_params(bool heavy) {
  for (const auto& [name, n] : torchvision_num_params()) {
    if ((n > 30'000'000) != heavy)
      continue;
    INFO(name);
    auto m = make(name);
    CHECK(n_params(*m) == n);
  }
}

} // namespace

TEST_CASE("zoo B: parameter counts of the light variants match torchvision", "[zoo_b]") {
  check_num_params(false);
  // The image size of ViT moves the position embedding (vit_b_16 SWAG at 384).
  model_options o;
  o.image_size = 384;
  CHECK(n_params(*make("vit_b_16", o)) == 86859496);
}

TEST_CASE("zoo B: parameter counts of the heavy variants match torchvision", "[zoo_b][full]") {
  check_num_params(true);
  model_options o;
  o.image_size = 518;
  CHECK(n_params(*make("vit_h_14", o)) == 633470440);
  o.image_size = 512;
  CHECK(n_params(*make("vit_l_16", o)) == 305174504);
}

TEST_CASE("zoo B: customisation options", "[zoo_b]") {
  torch::NoGradGuard ng;
  const std::vector<std::pair<std::string, int64_t>> models{
      {"efficientnet_b0", 64}, {"efficientnet_v2_s", 64}, {"regnet_x_400mf", 64},
      {"convnext_tiny", 64},   {"vit_b_32", 64},          {"swin_t", 64},
      {"swin_v2_t", 64}};
  for (const auto& [name, size] : models) {
    INFO(name);
    model_options o;
    o.num_classes = 7;
    o.in_channels = 1;
    o.image_size = name.rfind("vit", 0) == 0 ? size : 0;
    auto m = make(name, o);
    m->eval();
    auto x = torch::randn({2, 1, size, size});
    auto y = m->forward(x);
    CHECK(y.sizes() == torch::IntArrayRef({2, 7}));
    auto f = m->forward_features(x);
    CHECK(f.sizes() == torch::IntArrayRef({2, m->num_features()}));
    // Logits are the head applied to the features.
    auto head = m->head();
    REQUIRE(head);
    CHECK(n_params(*head) == 7 * m->num_features() + 7);
    auto stages = m->forward_stages(x);
    REQUIRE(!stages.empty());
    for (auto& s : stages) {
      CHECK(s.dim() == 4);
      CHECK(s.size(0) == 2);
    }
    if (name.rfind("vit", 0) != 0) {
      // Strides double from stage to stage; the last is 32.
      CHECK(stages.back().size(2) == (size + 31) / 32);
      for (size_t i = 1; i < stages.size(); ++i)
        CHECK(stages[i].size(2) == (stages[i - 1].size(2) + 1) / 2);
    }
    CHECK(!m->backbone().empty());

    // num_classes 0: forward() is forward_features(); head() is an identity.
    m->reset_classifier(0);
    CHECK(n_params(*m->head()) == 0);
    CHECK(torch::equal(m->forward(x), f));
    m->reset_classifier(3);
    CHECK(m->forward(x).sizes() == torch::IntArrayRef({2, 3}));
    CHECK(torch::equal(m->forward_features(x), f)); // the backbone is untouched
  }
  // Built with num_classes 0.
  model_options o;
  o.num_classes = 0;
  for (const std::string name : {"regnet_x_400mf", "efficientnet_b0"}) {
    auto m0 = make(name, o);
    CHECK(m0->forward(torch::randn({1, 3, 64, 64})).size(1) == m0->num_features());
    CHECK(n_params(*m0->head()) == 0);
  }
}

TEST_CASE("zoo B: stochastic depth and dropout", "[zoo_b]") {
  torch::NoGradGuard ng;
  for (const std::string name : {"efficientnet_b0", "convnext_tiny", "swin_t"}) {
    INFO(name);
    model_options o;
    o.drop_path = 0.5;
    auto m = make(name, o);
    auto x = torch::randn({4, 3, 64, 64});
    m->eval();
    CHECK(torch::equal(m->forward(x), m->forward(x)));
    m->train();
    CHECK(!torch::allclose(m->forward_features(x), m->forward_features(x)));
  }
  // StochasticDepth itself: rows zeroed or scaled by 1 / (1 - p); identity in eval.
  StochasticDepth sd(0.5, "row");
  auto ones = torch::ones({1000, 3});
  auto y = sd(ones);
  auto row = y.select(1, 0);
  CHECK(torch::all((row == 0) | (row == 2)).item<bool>());
  CHECK(torch::all(y.select(1, 1) == row).item<bool>());
  CHECK(std::abs(row.mean().item<double>() - 1.0) < 0.15);
  sd->eval();
  CHECK(torch::equal(sd(ones), ones));
  StochasticDepth batch(0.5, "batch");
  auto b = batch(ones);
  CHECK((torch::all(b == 0).item<bool>() || torch::all(b == 2).item<bool>()));
  CHECK_THROWS_AS(StochasticDepth(1.5, "row"), c10::Error);
  CHECK_THROWS_AS(StochasticDepth(0.1, "col"), c10::Error);
}

TEST_CASE("zoo B: a training step back-propagates through every family", "[zoo_b]") {
  for (const std::string name : {"efficientnet_b0", "efficientnet_v2_s", "regnet_y_400mf",
                                 "convnext_tiny", "vit_b_32", "swin_t", "swin_v2_t"}) {
    INFO(name);
    model_options o;
    o.num_classes = 5;
    o.dropout = name.rfind("regnet", 0) == 0 || name.rfind("convnext", 0) == 0 ? -1 : 0.1;
    o.drop_path = name.rfind("efficientnet", 0) == 0 || name.rfind("convnext", 0) == 0 ||
                          name.rfind("swin", 0) == 0
                      ? 0.2
                      : 0;
    o.image_size = name.rfind("vit", 0) == 0 ? 64 : 0;
    auto m = make(name, o);
    m->train();
    auto x = torch::randn({2, 3, 64, 64});
    auto loss = torch::nn::functional::cross_entropy(m->forward(x), torch::tensor({1, 3}));
    loss.backward();
    int64_t with_grad = 0, total = 0;
    for (const auto& p : m->parameters()) {
      ++total;
      with_grad += p.grad().defined() ? 1 : 0;
    }
    CHECK(std::isfinite(loss.item<double>()));
    // Every parameter takes part (Swin V2's key bias gets a zero gradient).
    CHECK(with_grad == total);
  }
}

TEST_CASE("zoo B: options that cannot apply throw", "[zoo_b]") {
  auto bad = [](const std::string& name, const std::function<void(model_options&)>& set) {
    model_options o;
    set(o);
    try {
      make(name, o);
    } catch (const c10::Error& e) {
      std::cout << "[zoo_b] " << name << ": " << e.what_without_backtrace() << std::endl;
      return true;
    }
    return false;
  };
  CHECK(bad("efficientnet_b9", [](model_options&) {}));
  CHECK(bad("regnet_z_400mf", [](model_options&) {}));
  CHECK(bad("convnext_huge", [](model_options&) {}));
  CHECK(bad("vit_g_14", [](model_options&) {}));
  CHECK(bad("swin_v3_t", [](model_options&) {}));
  CHECK(bad("efficientnet_b0", [](model_options& o) { o.num_classes = -1; }));
  CHECK(bad("efficientnet_b0", [](model_options& o) { o.in_channels = 0; }));
  CHECK(bad("efficientnet_b0", [](model_options& o) { o.dropout = 1.0; }));
  CHECK(bad("efficientnet_v2_s", [](model_options& o) { o.width_mult = 1.5; }));
  CHECK(bad("regnet_y_400mf", [](model_options& o) { o.width_mult = 2; }));
  CHECK(bad("regnet_y_400mf", [](model_options& o) { o.dropout = 0.2; }));
  CHECK(bad("regnet_y_400mf", [](model_options& o) { o.drop_path = 0.1; }));
  CHECK(bad("convnext_tiny", [](model_options& o) { o.dropout = 0.2; }));
  CHECK(bad("convnext_tiny", [](model_options& o) { o.drop_path = 1.5; }));
  CHECK(bad("vit_b_16", [](model_options& o) { o.drop_path = 0.1; }));
  CHECK(bad("vit_b_16", [](model_options& o) { o.image_size = 100; }));
  CHECK(bad("vit_b_16", [](model_options& o) { o.image_size = -16; }));
  CHECK(bad("swin_t", [](model_options& o) { o.width_mult = 0.5; }));
  // ... and those that can.
  CHECK_FALSE(bad("efficientnet_b0", [](model_options& o) { o.width_mult = 0.5; }));
  CHECK_FALSE(bad("efficientnet_b0", [](model_options& o) { o.drop_path = -1; }));
  CHECK_FALSE(bad("vit_b_32", [](model_options& o) {
    o.image_size = 96;
    o.dropout = 0.1;
  }));

  // ViT checks its input size.
  model_options o;
  o.image_size = 64;
  auto vit = make("vit_b_32", o);
  torch::NoGradGuard ng;
  CHECK_THROWS_AS(vit->forward(torch::randn({1, 3, 96, 96})), c10::Error);
  // EfficientNet B0 at half width: 16 -> 8 channels in the first stage.
  o = {};
  o.width_mult = 0.5;
  auto half = make("efficientnet_b0", o);
  CHECK(half->named_parameters()["features.0.0.weight"].size(0) == 16);
  CHECK(half->num_features() == 640); // 4 * 160
}

TEST_CASE("zoo B: heavy variants match torchvision 0.14", "[zoo_b][full]") {
  std::map<std::string, std::vector<std::string>> by_family;
  // maxvit_t: its own [maxvit][full] case below.
  const std::set<std::string> quick{"efficientnet_b0", "efficientnet_v2_s", "regnet_y_400mf",
                                    "regnet_x_400mf",  "convnext_tiny",     "vit_b_32",
                                    "swin_t",          "swin_v2_t",         "maxvit_t"};
  for (const auto& [name, n] : torchvision_num_params())
    if (!quick.count(name))
      by_family[name.substr(0, name.find('_'))].push_back(name);
  for (const auto& [fam, names] : by_family) {
    DYNAMIC_SECTION(fam) {
      // One exporter run per model keeps the disk use to one checkpoint.
      for (const auto& n : names) {
        const auto& ex = exported({n});
        check_parity(ex, n);
        std::error_code ec;
        fs::remove_all(ex.dir, ec);
      }
    }
  }
}

// --- MaxViT ------------------------------------------------------------------------------------

namespace {

/// torchvision's state_dict layout of `name` (export_zoo_b.py --state-keys): key -> shape.
std::map<std::string, std::vector<int64_t>> torchvision_state_keys(const std::string& name) {
  const auto path = tmp().path / ("keys_" + name + ".json");
  const auto script = fs::path(ROOKERY_SOURCE_DIR) / "tests/tools/export_zoo_b.py";
  const std::string cmd = std::string(python) + " " + script.string() + " --state-keys " + name +
                          " " + path.string() + " 2>/dev/null";
  REQUIRE(std::system(cmd.c_str()) == 0);
  std::ifstream in(path);
  const auto keys = nlohmann::json::parse(in);
  std::map<std::string, std::vector<int64_t>> out;
  for (auto& [k, v] : keys.items())
    out[k] = v.get<std::vector<int64_t>>();
  return out;
}

std::map<std::string, std::vector<int64_t>> state_keys(torch::nn::Module& m) {
  std::map<std::string, std::vector<int64_t>> out;
  for (const auto& kv : m.named_parameters())
    out[kv.key()] = kv.value().sizes().vec();
  for (const auto& kv : m.named_buffers())
    out[kv.key()] = kv.value().sizes().vec();
  return out;
}

} // namespace

TEST_CASE("zoo B: reduced MaxViT matches torchvision 0.14", "[zoo_b][maxvit]") {
  check_all({"maxvit_mini"});
}

TEST_CASE("zoo B: maxvit_t matches torchvision 0.14 at 224 px", "[zoo_b][maxvit][full]") {
  check_all({"maxvit_t"});
}

TEST_CASE("zoo B: MaxViT has torchvision's state_dict keys and shapes", "[zoo_b][maxvit]") {
  for (const std::string name : {"maxvit_t", "maxvit_mini"}) {
    INFO(name);
    auto ref = torchvision_state_keys(name);
    auto m = make(name);
    auto mine = state_keys(*m);
    CHECK(mine.size() == ref.size());
    for (const auto& [k, shape] : ref) {
      INFO(k);
      auto it = mine.find(k);
      REQUIRE(it != mine.end());
      CHECK(it->second == shape);
    }
    for (const auto& [k, shape] : mine) {
      INFO(k);
      CHECK(ref.count(k) == 1);
    }
  }
  // torchvision 0.14's MaxVit_T_Weights.meta["num_params"].
  auto t = make("maxvit_t");
  CHECK(n_params(*t) == 30919624);
  CHECK(t->num_features() == 512);
  torch::NoGradGuard ng;
  t->eval();
  CHECK(t->forward(torch::randn({1, 3, 224, 224})).sizes() == torch::IntArrayRef({1, 1000}));
}

TEST_CASE("zoo B: the MaxViT parity check has teeth", "[zoo_b][maxvit]") {
  const auto& ex = exported({"maxvit_mini"});
  REQUIRE(ex.ok);
  torch::NoGradGuard ng;
  const auto& t = ex.meta["models"]["maxvit_mini"]["tensors"];
  // The worst relative difference over the four block outputs (the logits of a
  // randomly initialised MaxViT are small and move little).
  auto run = [&](const std::function<void(MaxVitImpl&)>& tweak) {
    auto model = make("maxvit_mini");
    REQUIRE(load_state_dict(*model, (ex.dir / "maxvit_mini" / "weights.pth").string()).ok());
    model->eval();
    tweak(dynamic_cast<MaxVitImpl&>(*model));
    auto x = load_tensor(ex.dir / "maxvit_mini" / "input.bin", t["input"]);
    auto stages = model->forward_stages(x);
    double d = 0;
    for (size_t i = 0; i < stages.size(); ++i) {
      const auto k = "stage" + std::to_string(i);
      d = std::max(d, rel_diff(stages[i], load_tensor(ex.dir / "maxvit_mini" / (k + ".bin"), t[k])));
    }
    std::cout << "[zoo_b] maxvit_mini tweaked: stages rel " << d << std::endl;
    return d;
  };
  auto layer = [](MaxVitImpl& m, size_t b, size_t l) {
    return m.blocks->ptr(b)->as<MaxVitBlockImpl>()->layers->ptr(l)->as<MaxVitLayerImpl>();
  };
  CHECK(run([](MaxVitImpl&) {}) <= 1e-4);
  // Grid attention partitioned like window attention (block 0: 8 x 8 cells vs 4 x 4 windows).
  CHECK(run([&](MaxVitImpl& m) {
          auto* g = layer(m, 0, 0)->grid_attention.get();
          g->grid = false;
          g->p = 4;
        }) > 1e-3);
  // The relative position bias of one attention.
  CHECK(run([&](MaxVitImpl& m) {
          auto* a = layer(m, 1, 0)->window_attention->attn_layer->ptr(1)
                        ->as<RelativePositionalMultiHeadAttentionImpl>();
          a->relative_position_bias_table.add_(torch::randn_like(a->relative_position_bias_table));
        }) > 1e-3);
  // The squeeze-excitation of one MBConv.
  CHECK(run([&](MaxVitImpl& m) {
          m.named_parameters()["blocks.2.layers.1.layers.MBconv.layers.squeeze_excitation.fc2.bias"]
              .add_(1.0);
        }) > 1e-3);
}

TEST_CASE("zoo B: MaxViT options", "[zoo_b][maxvit]") {
  torch::NoGradGuard ng;
  model_options o;
  o.num_classes = 7;
  o.in_channels = 1;
  auto m = make("maxvit_mini", o);
  m->eval();
  auto x = torch::randn({2, 1, 128, 128});
  auto y = m->forward(x);
  CHECK(y.sizes() == torch::IntArrayRef({2, 7}));
  auto f = m->forward_features(x);
  CHECK(f.sizes() == torch::IntArrayRef({2, 64}));
  CHECK(n_params(*m->head()) == 7 * 64); // classifier.5 has no bias
  int64_t in_parts = n_params(*m->head());
  for (auto& b : m->backbone())
    in_parts += n_params(*b);
  CHECK(in_parts == n_params(*m));
  auto stages = m->forward_stages(x);
  REQUIRE(stages.size() == 4);
  const std::vector<int64_t> sides{32, 16, 8, 4}, channels{16, 32, 48, 64};
  for (size_t i = 0; i < 4; ++i)
    CHECK(stages[i].sizes() == torch::IntArrayRef({2, channels[i], sides[i], sides[i]}));
  // num_classes 0: forward() is forward_features(); the pre-logits layers are kept.
  m->reset_classifier(0);
  CHECK(n_params(*m->head()) == 0);
  CHECK(torch::equal(m->forward(x), f));
  m->reset_classifier(3);
  CHECK(m->forward(x).sizes() == torch::IntArrayRef({2, 3}));
  CHECK(torch::equal(m->forward_features(x), f));
  // The input size the model was built for, and nothing else.
  CHECK_THROWS_AS(m->forward(torch::randn({1, 1, 96, 96})), c10::Error);

  // create_model: 80 models; the image size must suit partition size 7.
  CHECK(zoo::list_models().size() == 80);
  auto t = create_model("maxvit_t");
  REQUIRE(t.ok());
  CHECK(dynamic_cast<MaxVitImpl&>(*t.value()).image_size() == 224);
  model_options big;
  big.image_size = 448;
  CHECK(create_model("maxvit_t", big).ok());
  for (const int64_t bad : {64, 256, 225}) {
    model_options b;
    b.image_size = bad;
    auto r = create_model("maxvit_t", b);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == errc::bad_request);
    std::cout << "[zoo_b] maxvit_t @" << bad << ": " << r.error().message << std::endl;
    CHECK(r.error().message.find("image_size " + std::to_string(bad)) != std::string::npos);
    CHECK(r.error().message.find(bad == 64 ? "221" : "224") != std::string::npos);
  }
  CHECK(maxvit_size_problem(maxvit_config{}, 221).empty());
  CHECK(maxvit_size_problem(maxvit_config{}, 445).empty());
  CHECK_FALSE(maxvit_size_problem(maxvit_config{}, 220).empty());
  model_options wm;
  wm.width_mult = 0.5;
  CHECK_FALSE(create_model("maxvit_t", wm).ok());
  model_options neg;
  neg.image_size = -224;
  CHECK_FALSE(create_model("maxvit_t", neg).ok());
}

TEST_CASE("zoo B: MaxViT stochastic depth, dropout and a training step", "[zoo_b][maxvit]") {
  model_options o;
  o.num_classes = 5;
  o.drop_path = 0.5;
  o.dropout = 0.1;
  auto m = make("maxvit_mini", o);
  auto x = torch::randn({4, 3, 128, 128});
  {
    torch::NoGradGuard ng;
    m->eval();
    CHECK(torch::equal(m->forward(x), m->forward(x)));
    m->train();
    CHECK(!torch::allclose(m->forward_features(x), m->forward_features(x)));
  }
  auto loss = torch::nn::functional::cross_entropy(m->forward(x), torch::tensor({1, 3, 0, 4}));
  loss.backward();
  CHECK(std::isfinite(loss.item<double>()));
  int64_t with_grad = 0, total = 0;
  for (const auto& p : m->parameters()) {
    ++total;
    with_grad += p.grad().defined() ? 1 : 0;
  }
  CHECK(with_grad == total);
}

TEST_CASE("zoo B: maxvit_t MACs match torchvision's published number", "[zoo_b][maxvit]") {
  auto m = create_model("maxvit_t");
  REQUIRE(m.ok());
  auto macs = count_macs(*m.value(), 224);
  INFO((macs ? std::string("ok") : macs.error().message));
  REQUIRE(macs.ok());
  std::cout << "[zoo_b] count_macs maxvit_t @224 = " << macs.value() << std::endl;
  // torchvision 0.14's docs: maxvit_t 5.56 GFLOPS (counted as MACs).
  CHECK(std::fabs(static_cast<double>(macs.value()) / 5.56e9 - 1.0) < 0.02);
}

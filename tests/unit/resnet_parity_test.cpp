// Parity of models/ + pipelines/image with torchvision: the reference outputs
// come from tests/tools/export_resnet.py, run with /usr/bin/python3 (Debian's
// python3-torch / python3-torchvision / python3-skimage).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <torch/torch.h>

#include "models/embedding_model.hpp"
#include "models/zoo/zoo.hpp"
#include "models/resnet.hpp"
#include "models/state_dict.hpp"
#include "pipelines/image.hpp"

// Debian's LibTorch pulls in glog, whose CHECK(cond) would replace Catch's
// CHECK (a failing check would abort the binary, passing ones go uncounted).
// tests/pch_tests.hpp orders the includes to avoid it; this keeps the file
// correct even if compiled without that PCH.
#undef CHECK
#define CHECK(...) INTERNAL_CATCH_TEST("CHECK", Catch::ResultDisposition::ContinueOnFailure, __VA_ARGS__)

namespace fs = std::filesystem;
using namespace rookery;

namespace {

const char* const python = "/usr/bin/python3";
const char* const skimage_data = "/usr/lib/python3/dist-packages/skimage/data";

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::vector<float> read_bin(const fs::path& p) {
  auto s = read_file(p);
  std::vector<float> v(s.size() / sizeof(float));
  std::memcpy(v.data(), s.data(), v.size() * sizeof(float));
  return v;
}

// One exporter run per arch per process (Catch2 re-enters a TEST_CASE per SECTION).
struct export_run {
  fs::path dir;
  std::vector<fs::path> images; // photos handed to the exporter, in order
  bool ok = false;
};

struct temp_root {
  fs::path path;
  temp_root() {
    std::random_device rd;
    path = fs::temp_directory_path() / ("rookery-parity-" + std::to_string(rd()));
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

std::vector<fs::path> photos() {
  std::vector<fs::path> out;
  for (const char* name : {"chelsea.png", "coffee.png", "astronaut.png"}) {
    fs::path p = fs::path(skimage_data) / name;
    if (fs::exists(p))
      out.push_back(p);
  }
  // A JPEG too: same decoder library (libjpeg-turbo) on both sides.
  if (!out.empty()) {
    auto img = cv::imread(out.front().string(), cv::IMREAD_COLOR);
    std::vector<uchar> buf;
    if (!img.empty() && cv::imencode(".jpg", img, buf, {cv::IMWRITE_JPEG_QUALITY, 92})) {
      fs::path j = tmp().path / "photo.jpg";
      std::ofstream(j, std::ios::binary).write(reinterpret_cast<const char*>(buf.data()),
                                               static_cast<std::streamsize>(buf.size()));
      out.push_back(j);
    }
  }
  return out;
}

const export_run& exported(const std::string& arch) {
  static std::map<std::string, export_run> runs;
  auto it = runs.find(arch);
  if (it != runs.end())
    return it->second;
  export_run r;
  r.dir = tmp().path / arch;
  r.images = photos();
  std::string cmd = std::string(python) + " '" + ROOKERY_SOURCE_DIR + "/tests/tools/export_resnet.py' '"
                    + r.dir.string() + "' " + arch;
  for (auto& p : r.images)
    cmd += " '" + p.string() + "'";
  std::cout << "[parity] running: " << cmd << std::endl;
  r.ok = std::system(cmd.c_str()) == 0 && fs::exists(r.dir / "meta.json");
  return runs.emplace(arch, std::move(r)).first->second;
}

// max|a-b| / max(1, max|b|)
double rel_max_diff(const float* a, const float* b, size_t n) {
  double d = 0, m = 0;
  for (size_t i = 0; i < n; ++i) {
    d = std::max(d, static_cast<double>(std::fabs(a[i] - b[i])));
    m = std::max(m, static_cast<double>(std::fabs(b[i])));
  }
  return d / std::max(1.0, m);
}

double max_abs_diff(const float* a, const float* b, size_t n) {
  double d = 0;
  for (size_t i = 0; i < n; ++i)
    d = std::max(d, static_cast<double>(std::fabs(a[i] - b[i])));
  return d;
}

double cosine(const std::vector<float>& a, const float* b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ab += double(a[i]) * b[i];
    aa += double(a[i]) * a[i];
    bb += double(b[i]) * b[i];
  }
  return ab / std::sqrt(aa * bb);
}

std::vector<float> l2_rows(std::vector<float> v, size_t rows) {
  const size_t d = v.size() / rows;
  for (size_t r = 0; r < rows; ++r) {
    double s = 0;
    for (size_t i = 0; i < d; ++i)
      s += double(v[r * d + i]) * v[r * d + i];
    const float inv = static_cast<float>(1.0 / std::max(std::sqrt(s), 1e-12));
    for (size_t i = 0; i < d; ++i)
      v[r * d + i] *= inv;
  }
  return v;
}

std::vector<float> flat(const std::vector<std::vector<float>>& rows) {
  std::vector<float> out;
  for (auto& r : rows)
    out.insert(out.end(), r.begin(), r.end());
  return out;
}

// Checks one arch end to end against the exporter's reference outputs.
void check_arch(const std::string& arch, int64_t feature_dim) {
  const auto& ex = exported(arch);
  REQUIRE(ex.ok);
  const auto input = read_bin(ex.dir / "input.bin");
  const auto logits_ref = read_bin(ex.dir / "logits.bin");
  const auto feats_ref = read_bin(ex.dir / "features.bin");
  REQUIRE(input.size() == 2u * 3 * 224 * 224);
  REQUIRE(logits_ref.size() == 2u * 1000);
  REQUIRE(feats_ref.size() == 2u * static_cast<size_t>(feature_dim));
  const auto weights = (ex.dir / "weights.pth").string();
  const std::vector<const float*> batch{input.data(), input.data() + 3 * 224 * 224};

  SECTION("ResNet + load_state_dict reproduces torchvision logits and features") {
    ResNetOptions o;
    o.arch = arch;
    ResNet net(o);
    CHECK(net->feature_dim() == feature_dim);
    auto st = load_state_dict(*net, weights);
    INFO((st ? std::string("ok") : st.error().message));
    REQUIRE(st.ok());
    net->eval();
    c10::InferenceMode guard;
    auto x = torch::from_blob(const_cast<float*>(input.data()), {2, 3, 224, 224}).clone();
    auto logits = net->forward(x).contiguous();
    auto feats = net->forward_features(x).contiguous();
    REQUIRE(logits.sizes() == torch::IntArrayRef({2, 1000}));
    REQUIRE(feats.sizes() == torch::IntArrayRef({2, feature_dim}));
    const double dl = rel_max_diff(logits.data_ptr<float>(), logits_ref.data(), logits_ref.size());
    const double df = rel_max_diff(feats.data_ptr<float>(), feats_ref.data(), feats_ref.size());
    std::cout << "[parity] " << arch << " ResNet: logits max|d|/max(1,|ref|) = " << dl
              << ", features = " << df << " (abs " << max_abs_diff(logits.data_ptr<float>(), logits_ref.data(), logits_ref.size())
              << ")" << std::endl;
    CHECK(dl <= 1e-4);
    CHECK(df <= 1e-4);
  }

  SECTION("embedding_model (state_dict) forward and embed") {
    model_spec spec;
    spec.name = arch;
    spec.arch = arch;
    spec.weights_path = weights;
    spec.format = "state_dict";
    auto m = embedding_model::load(spec);
    INFO((m ? std::string("ok") : m.error().message));
    REQUIRE(m.ok());
    auto& model = *m.value();
    CHECK(model.dim() == static_cast<uint32_t>(feature_dim));
    CHECK(model.arch() == arch);
    CHECK(model.pretrained());
    auto out = model.forward(batch, 3, 224, 224);
    REQUIRE(out.ok());
    REQUIRE(out->size() == 2);
    auto logits = flat(out.value());
    const double dl = rel_max_diff(logits.data(), logits_ref.data(), logits_ref.size());
    auto emb = model.embed(batch, 3, 224, 224);
    REQUIRE(emb.ok());
    REQUIRE(emb->size() == 2);
    REQUIRE(emb->at(0).size() == static_cast<size_t>(feature_dim));
    auto e = flat(emb.value());
    const auto ref = l2_rows(feats_ref, 2);
    const double de = max_abs_diff(e.data(), ref.data(), ref.size());
    std::cout << "[parity] " << arch << " embedding_model: logits rel diff = " << dl
              << ", normalised embedding max|d| = " << de << std::endl;
    CHECK(dl <= 1e-4);
    CHECK(de <= 1e-5);
  }

  SECTION("embedding_model (torchscript) gives the same embedding") {
    model_spec spec;
    spec.name = arch + "-ts";
    spec.arch = "torchscript";
    spec.weights_path = (ex.dir / "model.ts").string();
    spec.format = "torchscript";
    auto m = embedding_model::load(spec);
    INFO((m ? std::string("ok") : m.error().message));
    REQUIRE(m.ok());
    CHECK(m.value()->dim() == static_cast<uint32_t>(feature_dim));
    CHECK(m.value()->arch() == "torchscript");
    auto emb = m.value()->embed(batch, 3, 224, 224);
    REQUIRE(emb.ok());
    const auto ref = l2_rows(feats_ref, 2);
    for (size_t i = 0; i < 2; ++i) {
      const double c = cosine(emb->at(i), ref.data() + i * static_cast<size_t>(feature_dim));
      std::cout << "[parity] " << arch << " torchscript embedding " << i << ": cos = " << c << std::endl;
      CHECK(c >= 0.9999);
    }
  }

  SECTION("photo: preprocess_image + embed vs the torchvision pipeline") {
    REQUIRE(!ex.images.empty());
    model_spec spec;
    spec.arch = arch;
    spec.weights_path = weights;
    auto m = embedding_model::load(spec);
    REQUIRE(m.ok());
    for (size_t i = 0; i < ex.images.size(); ++i) {
      const auto tag = "image" + std::to_string(i);
      auto bytes = read_file(ex.images[i]);
      auto t = preprocess_image(bytes, image_options{});
      INFO(ex.images[i].string() << ": " << (t ? std::string("ok") : t.error().message));
      REQUIRE(t.ok());
      REQUIRE(t->c == 3);
      REQUIRE(t->h == 224);
      REQUIRE(t->w == 224);
      const auto pix_ref = read_bin(ex.dir / (tag + ".bin"));
      REQUIRE(pix_ref.size() == t->data.size());
      const double dp = max_abs_diff(t->data.data(), pix_ref.data(), pix_ref.size());
      auto emb = m.value()->embed({t->data.data()}, 3, 224, 224);
      REQUIRE(emb.ok());
      const auto emb_ref = read_bin(ex.dir / (tag + "_emb.bin"));
      const double c = cosine(emb->front(), emb_ref.data());
      std::cout << "[parity] " << arch << " " << ex.images[i].filename().string()
                << ": preprocessed tensor max|d| vs torchvision = " << dp << ", embedding cos = " << c
                << std::endl;
      CHECK(c >= 0.99);
      // PNG decoding is lossless and the resampler is Pillow's, so the tensors
      // agree (bit-exact in practice); JPEG allows for libjpeg build differences.
      if (ex.images[i].extension() == ".png")
        CHECK(dp <= 1e-5);
      else
        CHECK(dp <= 0.05);
    }
  }
}

} // namespace

TEST_CASE("resnet18 matches torchvision 0.14: weights and TorchScript and photo pipeline", "[model]") {
  check_arch("resnet18", 512);
}

TEST_CASE("resnet50 and resnext50_32x4d match torchvision", "[model][full]") {
  SECTION("resnet50") { check_arch("resnet50", 2048); }
  SECTION("resnext50_32x4d") { check_arch("resnext50_32x4d", 2048); }
}

TEST_CASE("load_state_dict reports bad weights clearly", "[model]") {
  const auto& ex = exported("resnet18");
  REQUIRE(ex.ok);
  const auto weights = ex.dir / "weights.pth";

  SECTION("keys and shapes that do not match") {
    ResNet net(ResNetOptions{});
    auto st = load_state_dict(*net, (ex.dir / "mismatch.pth").string());
    REQUIRE_FALSE(st.ok());
    const auto& msg = st.error().message;
    std::cout << "[parity] mismatch message: " << msg << std::endl;
    CHECK(st.error().code == errc::unprocessable);
    CHECK(msg.find("1 missing keys: layer1.0.conv1.weight") != std::string::npos);
    CHECK(msg.find("1 unexpected keys: extra.weight") != std::string::npos);
    CHECK(msg.find("fc.weight: expected [1000, 512] got [10, 512]") != std::string::npos);
  }

  SECTION("resnet18 weights into resnet34 and resnet50") {
    ResNetOptions o;
    o.arch = "resnet34";
    ResNet r34(o);
    auto st = load_state_dict(*r34, weights.string());
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == errc::unprocessable);
    CHECK(st.error().message.find("missing keys: layer1.2.conv1.weight") != std::string::npos);
    CHECK(st.error().message.find("more)") != std::string::npos); // long lists are truncated
    o.arch = "resnet50";
    ResNet r50(o);
    st = load_state_dict(*r50, weights.string());
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().message.find("mis-shaped keys") != std::string::npos);
    CHECK(st.error().message.size() < 4000);
  }

  SECTION("truncated and garbage and missing and TorchScript files") {
    ResNet net(ResNetOptions{});
    auto full = read_file(weights);
    auto trunc = tmp().path / "truncated.pth";
    std::ofstream(trunc, std::ios::binary).write(full.data(), static_cast<std::streamsize>(full.size() / 2));
    auto st = load_state_dict(*net, trunc.string());
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == errc::unprocessable);
    std::cout << "[parity] truncated: " << st.error().message << std::endl;

    auto garbage = tmp().path / "garbage.pth";
    std::ofstream(garbage, std::ios::binary) << "this is not a checkpoint at all";
    st = load_state_dict(*net, garbage.string());
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == errc::unprocessable);

    st = load_state_dict(*net, (tmp().path / "does-not-exist.pth").string());
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == errc::not_found);

    st = load_state_dict(*net, (ex.dir / "model.ts").string());
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().message.find("TorchScript") != std::string::npos);

    // A zip whose pickle is corrupted: flip bytes inside data.pkl's region.
    auto bad = full;
    auto pos = bad.find("data.pkl");
    REQUIRE(pos != std::string::npos);
    for (size_t i = pos + 40; i < pos + 200 && i < bad.size(); ++i)
      bad[i] = static_cast<char>(bad[i] ^ 0x5A);
    auto corrupt = tmp().path / "corrupt.pth";
    std::ofstream(corrupt, std::ios::binary).write(bad.data(), static_cast<std::streamsize>(bad.size()));
    st = load_state_dict(*net, corrupt.string());
    REQUIRE_FALSE(st.ok());
    std::cout << "[parity] corrupt: " << st.error().message << std::endl;

    // The model is untouched after failed loads and still loads the good file.
    REQUIRE(load_state_dict(*net, weights.string()).ok());
  }

  SECTION("OrderedDict and plain dict and protocol 4 and nested checkpoint and single key") {
    const auto ref = read_bin(ex.dir / "linear.bin");
    REQUIRE(ref.size() == 8);
    for (const char* f : {"linear_ordered.pth", "linear_plain.pth", "linear_proto4.pth", "linear_nested.pth"}) {
      torch::nn::Linear lin(3, 2);
      auto st = load_state_dict(*lin, (ex.dir / f).string());
      INFO(f << ": " << (st ? std::string("ok") : st.error().message));
      REQUIRE(st.ok());
      auto w = lin->weight.detach().contiguous();
      auto b = lin->bias.detach().contiguous();
      CHECK(max_abs_diff(w.data_ptr<float>(), ref.data(), 6) == 0.0);
      CHECK(max_abs_diff(b.data_ptr<float>(), ref.data() + 6, 2) == 0.0);
    }
    torch::nn::Linear lin(3, 2);
    auto st = load_state_dict(*lin, (ex.dir / "linear_single.pth").string());
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().message.find("1 missing keys: bias") != std::string::npos);
  }
}

TEST_CASE("embedding_model: untrained models and bad specs and bad input", "[model]") {
  auto a = embedding_model::create_untrained("resnet18");
  auto b = embedding_model::create_untrained("resnet18");
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  CHECK_FALSE(a.value()->pretrained());
  CHECK(a.value()->dim() == 512);
  std::vector<float> img(3 * 64 * 64);
  for (size_t i = 0; i < img.size(); ++i)
    img[i] = std::sin(0.01f * static_cast<float>(i));
  auto ea = a.value()->embed({img.data()}, 3, 64, 64);
  auto eb = b.value()->embed({img.data()}, 3, 64, 64);
  REQUIRE(ea.ok());
  REQUIRE(eb.ok());
  // Same seed for every replica: identical embeddings, unit norm.
  CHECK(max_abs_diff(ea->front().data(), eb->front().data(), 512) == 0.0);
  double norm = 0;
  for (float v : ea->front())
    norm += double(v) * v;
  CHECK(std::fabs(norm - 1.0) < 1e-5);

  auto wrong_c = a.value()->embed({img.data()}, 1, 64, 64);
  REQUIRE_FALSE(wrong_c.ok());
  CHECK(wrong_c.error().code == errc::bad_request);
  auto empty = a.value()->embed({}, 3, 64, 64);
  REQUIRE(empty.ok());
  CHECK(empty->empty());

  CHECK_FALSE(embedding_model::create_untrained("vgg16").ok());
  model_spec spec;
  spec.arch = "resnet18";
  spec.weights_path = "/nonexistent/weights.pth";
  auto m = embedding_model::load(spec);
  REQUIRE_FALSE(m.ok());
  CHECK(m.error().code == errc::not_found);
  spec.arch = "no-such-arch";
  m = embedding_model::load(spec);
  REQUIRE_FALSE(m.ok());
  CHECK(m.error().code == errc::unprocessable);
  // Every zoo architecture can back an embedding model.
  CHECK(embedding_model::supported_archs().size() == zoo::list_models().size());
  CHECK(embedding_model::supported_archs().size() >= 38);
}

TEST_CASE("ResNet module tree matches torchvision names", "[model]") {
  ResNet net(ResNetOptions{});
  auto params = net->named_parameters();
  auto buffers = net->named_buffers();
  CHECK(params.contains("conv1.weight"));
  CHECK(params.contains("layer2.0.downsample.0.weight"));
  CHECK(params.contains("layer2.0.downsample.1.bias"));
  CHECK(buffers.contains("layer4.1.bn2.running_var"));
  CHECK(params.contains("fc.bias"));
  CHECK(params.size() == 62);  // len(list(torchvision.models.resnet18().parameters()))
  CHECK(buffers.size() == 60); // 20 BatchNorms x 3
  ResNetOptions o;
  o.arch = "resnext50_32x4d";
  o.num_classes = 10;
  ResNet rx(o);
  CHECK(rx->feature_dim() == 2048);
  CHECK(rx->named_parameters()["layer1.0.conv2.weight"].sizes() == torch::IntArrayRef({128, 4, 3, 3}));
  CHECK(rx->named_parameters()["fc.weight"].sizes() == torch::IntArrayRef({10, 2048}));
  o.arch = "wide_resnet50_2";
  ResNet wr(o);
  CHECK(wr->named_parameters()["layer1.0.conv2.weight"].sizes() == torch::IntArrayRef({128, 128, 3, 3}));
  o.arch = "resnet18";
  o.groups = 32;
  CHECK_FALSE(make_resnet(o).ok());
  o.arch = "nope";
  CHECK_FALSE(make_resnet(o).ok());
}

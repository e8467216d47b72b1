// Parity of every zoo model (models/zoo/) with torchvision 0.14: the reference
// weights and outputs come from tests/tools/export_zoo.py, run once per test
// case with /usr/bin/python3 for all the models it checks.
//
//  [zoo]        the quick set, zoo::quick_models(): one small variant per family
//               (the non-heavy entries), including families registered later.
//  [zoo][full]  every registered model.
// Inputs are reduced to 64 x 64 (the models are size-agnostic) except
// Inception V3 (96: it needs >= 75) and the ViT family (64, or 56 for patch
// 14, built with that image_size on both sides) and MaxViT (224: partition size
// 7 in every block needs 221..224; built for it on both sides). Batch 2, eval mode. A model passes when
// max|C++ - torchvision| / max(1, max|torchvision|) <= 1e-4 for the logits
// AND for the pre-logits features (forward_features vs the input of
// torchvision's last Linear) -- and the same for the inference-optimised
// graphs the server runs (models/inference.hpp: traced, frozen, conv-BN folded,
// oneDNN), which must also be taken (mode "optimized") for every family.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "models/inference.hpp"
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

struct job {
  zoo::model_entry entry;
  int64_t size = 64;
  zoo::model_options options;
  nlohmann::json kwargs = nlohmann::json::object();
};

job make_job(const zoo::model_entry& e) {
  job j;
  j.entry = e;
  if (e.name == "inception_v3")
    j.size = 96;
  if (e.name == "googlenet" || e.name == "inception_v3")
    j.kwargs["init_weights"] = false; // init only (the exporter randomises anyway); much faster
  if (e.family == "vit" || e.name.rfind("vit_", 0) == 0) {
    if (e.name.find("_14") != std::string::npos)
      j.size = 56; // patch 14
    j.options.image_size = j.size;
    j.kwargs["image_size"] = j.size;
  }
  if (e.family == "maxvit") {
    j.size = 224;
    j.options.image_size = j.size;
    j.kwargs["input_size"] = {j.size, j.size};
  }
  return j;
}

// Runs the exporter for `jobs` into `dir`; returns meta.json (empty on failure).
nlohmann::json export_models(const fs::path& dir, const std::vector<job>& jobs) {
  nlohmann::json spec = nlohmann::json::array();
  for (auto& j : jobs)
    spec.push_back({{"name", j.entry.name}, {"size", j.size}, {"batch", 2}, {"seed", 0},
                    {"kwargs", j.kwargs}});
  const auto spec_path = dir / "spec.json";
  std::ofstream(spec_path) << spec.dump();
  const std::string cmd = std::string(python) + " " ROOKERY_SOURCE_DIR "/tests/tools/export_zoo.py "
                          + dir.string() + " " + spec_path.string() + " > " + (dir / "export.log").string()
                          + " 2>&1";
  const int rc = std::system(cmd.c_str());
  std::ifstream log(dir / "export.log");
  std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  if (rc != 0)
    std::cout << "[zoo-parity] exporter exit " << rc << ":\n" << text << std::endl;
  std::ifstream in(dir / "meta.json");
  if (!in)
    return {};
  return nlohmann::json::parse(in);
}

double rel_diff(const torch::Tensor& got, const torch::Tensor& ref) {
  const double scale = std::max(1.0, ref.abs().max().item<double>());
  return (got - ref).abs().max().item<double>() / scale;
}

struct outcome {
  std::string name;
  double logits = -1, features = -1;
  double opt_logits = -1, opt_features = -1; // the inference-optimised graphs (models/inference.hpp)
  bool ok = false;
};

// CHECKs only (no REQUIRE): one failing model must not hide the others, and
// SECTIONs would re-run the exporter once per section.
outcome check_one(const job& j, const fs::path& dir, const nlohmann::json& meta) {
  outcome o;
  o.name = j.entry.name;
  INFO(j.entry.name);
  auto fail_here = [&](const std::string& why) {
    std::cout << "[zoo-parity] " << j.entry.name << ": FAILED: " << why << std::endl;
    FAIL_CHECK(j.entry.name << ": " << why);
    return o;
  };
  if (!meta.contains(j.entry.name))
    return fail_here("not exported");
  const auto& m = meta[j.entry.name];
  if (m.contains("error"))
    return fail_here("exporter: " + m["error"].get<std::string>());
  const auto mdir = dir / j.entry.name;
  auto made = zoo::create_model(j.entry.name, j.options);
  if (!made)
    return fail_here("create_model: " + made.error().message);
  auto& model = *made.value();
  auto st = zoo::load_pretrained(model, (mdir / "weights.pth").string(), j.options);
  if (!st)
    return fail_here("load_pretrained: " + st.error().message);
  model.eval();
  CHECK(zoo::count_parameters(model) == m["num_params"].get<int64_t>());
  CHECK(model.num_features() == m["num_features"].get<int64_t>());

  const auto& shapes = m["tensors"];
  auto x = read_tensor(mdir / "input.bin", shapes["input"]);
  auto logits_ref = read_tensor(mdir / "logits.bin", shapes["logits"]);
  auto feats_ref = read_tensor(mdir / "features.bin", shapes["features"]);
  torch::Tensor logits, feats;
  try {
    c10::InferenceMode guard;
    logits = model.forward(x);
    feats = model.forward_features(x);
  } catch (const std::exception& e) {
    return fail_here(std::string("forward: ") + e.what());
  }
  if (logits.sizes() != logits_ref.sizes() || feats.sizes() != feats_ref.sizes()) {
    std::ostringstream os;
    os << "shapes: logits " << logits.sizes() << " vs " << logits_ref.sizes() << ", features "
       << feats.sizes() << " vs " << feats_ref.sizes();
    return fail_here(os.str());
  }
  o.logits = rel_diff(logits, logits_ref);
  o.features = rel_diff(feats, feats_ref);
  std::cout << "[zoo-parity] " << j.entry.name << " (" << j.entry.family << ", " << j.size
            << " px): logits max rel |d| = " << o.logits << ", features max rel |d| = " << o.features
            << std::endl;
  CHECK(o.logits <= 1e-4);
  CHECK(o.features <= 1e-4);

  // The inference-optimised path (trace, freeze, conv-BN fold, oneDNN) against
  // the same torchvision outputs, on the exporter's batch of 2.
  for (auto& p : model.parameters())
    p.set_requires_grad(false);
  inference::options io;
  io.time_it = false; // parity only: the keep-if-faster rule is the server's
  const std::vector<int64_t> shape{x.size(1), x.size(2), x.size(3)};
  for (bool features : {true, false}) {
    inference::report rep;
    auto prepared = inference::prepare_traced(
      [&](const torch::Tensor& in) { return features ? model.forward_features(in) : model.forward(in); },
      shape, io, rep);
    INFO((features ? "features" : "logits") << ": " << rep.json());
    if (!prepared) { // stays eager in the server, with this reason (shown in GET /v1/pipelines)
      std::cout << "[zoo-parity] " << j.entry.name << " optimised path NOT taken: " << rep.reason << std::endl;
      continue;
    }
    torch::Tensor got;
    {
      c10::InferenceMode guard;
      got = (*prepared)(x);
    }
    (features ? o.opt_features : o.opt_logits) = rel_diff(got, features ? feats_ref : logits_ref);
    std::cout << "[zoo-parity] " << j.entry.name << " optimised " << (features ? "features" : "logits")
              << ": max rel |d| = " << (features ? o.opt_features : o.opt_logits) << ", "
              << rep.json() << std::endl;
  }
  if (o.opt_logits >= 0)
    CHECK(o.opt_logits <= 1e-4);
  if (o.opt_features >= 0)
    CHECK(o.opt_features <= 1e-4);
  o.ok = o.logits <= 1e-4 && o.features <= 1e-4 && o.opt_logits <= 1e-4 && o.opt_features <= 1e-4;
  return o;
}

// OpenMP teams spin badly on a loaded 2-core machine: one thread while checking.
struct one_thread {
  int before = at::get_num_threads();
  one_thread() { at::set_num_threads(1); }
  ~one_thread() { at::set_num_threads(before); }
};

void run_parity(const std::vector<zoo::model_entry>& entries, size_t chunk) {
  one_thread threads;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<outcome> results;
  for (size_t begin = 0; begin < entries.size(); begin += chunk) {
    std::vector<job> jobs;
    for (size_t i = begin; i < std::min(entries.size(), begin + chunk); ++i)
      jobs.push_back(make_job(entries[i]));
    temp_dir dir{"rookery-zoo-"};
    auto meta = export_models(dir.path, jobs);
    REQUIRE_FALSE(meta.empty());
    for (auto& j : jobs)
      results.push_back(check_one(j, dir.path, meta));
  }
  const double secs =
    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  size_t passed = 0;
  for (auto& r : results)
    passed += r.ok ? 1 : 0;
  std::cout << "[zoo-parity] " << passed << " / " << entries.size()
            << " models within 1e-4 (export + C++: " << secs << " s)" << std::endl;
}

} // namespace

TEST_CASE("zoo quick set matches torchvision (one variant per family)", "[zoo]") {
  auto quick = zoo::quick_models();
  REQUIRE_FALSE(quick.empty());
  std::string names;
  for (auto& e : quick)
    names += (names.empty() ? "" : ", ") + e.name;
  std::cout << "[zoo-parity] quick set: " << names << std::endl;
  // Every family appears.
  std::vector<std::string> families;
  for (auto& e : zoo::list_models())
    if (std::find(families.begin(), families.end(), e.family) == families.end())
      families.push_back(e.family);
  for (auto& f : families)
    CHECK(std::any_of(quick.begin(), quick.end(), [&](auto& e) { return e.family == f; }));
  run_parity(quick, quick.size());
}

TEST_CASE("zoo: every registered model matches torchvision", "[zoo][full]") {
  run_parity(zoo::list_models(), 4);
}

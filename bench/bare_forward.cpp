// Benchmark (not a test): the bare LibTorch baseline for bench/embed_bench.sh and
// bench/pretrained_bench.sh.
//
// Loads a model through Rookery's own embedding_model (the class the server's
// model replicas use) -- with --data, built exactly as the server builds an
// installed model: its config.json's arch, options (e.g. nsfwjs's 5-class head)
// and output -- preprocesses one real image with Rookery's image pipeline and
// that model's own "preprocess" settings (e.g. nsfwjs's TF bilinear resize to
// 299 x 299, RGB / 255; ImageNet's 256/224 for --weights), then times the plain
// sequential forward loop:
//
//   bare      batch 1, one embed() call after another on this one thread
//   bare_b8   batch 8 (the server's default max_batch), for reference
//   bare_opt, bare_opt_b8   the same on the inference-optimised path
//             (embedding_model::prepare; skipped with --eager-only)
//   preprocess  decode + the model's preprocessing of the same image
//
// embed() is what a replica runs per batch (forward_features + L2 norm), so
// this is the ceiling Rookery's /v1/embed can approach on the same machine.
//
//   bare_forward (--data DIR [--model NAME] | --weights FILE [--arch resnet18])
//                [--image FILE] [--threads N] [--seconds S] [--warmup N]
//
// Prints one machine-readable line per measurement, e.g.
//   bare images_per_s=41.3 p50_ms=24.1 p99_ms=26.0 calls=413 batch=1 threads=2
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "models/embedding_model.hpp"
#include "models/repository.hpp"
#include "pipelines/image.hpp"

using namespace rookery;
using clk = std::chrono::steady_clock;

namespace {

struct options {
  std::string data, model = "resnet18";
  std::string weights, arch = "resnet18";
  std::string image;
  int threads = 2;
  double seconds = 8;
  int warmup = 5;
  bool optimized = true; // also time the inference-optimised path (--eager-only: not)
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "bare_forward: " << why << "\n"
            << "usage: bare_forward (--data DIR [--model NAME] | --weights FILE [--arch ARCH])\n"
               "                    [--image FILE] [--threads N] [--seconds S] [--warmup N] [--eager-only]\n";
  std::exit(2);
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc)
        usage(a + " needs a value");
      return argv[++i];
    };
    if (a == "--data") o.data = next();
    else if (a == "--model") o.model = next();
    else if (a == "--weights") o.weights = next();
    else if (a == "--arch") o.arch = next();
    else if (a == "--image") o.image = next();
    else if (a == "--threads") o.threads = std::atoi(next().c_str());
    else if (a == "--seconds") o.seconds = std::atof(next().c_str());
    else if (a == "--warmup") o.warmup = std::atoi(next().c_str());
    else if (a == "--eager-only") o.optimized = false;
    else if (a == "-h" || a == "--help") usage("help");
    else usage("unknown argument " + a);
  }
  if (o.data.empty() == o.weights.empty())
    usage("give exactly one of --data or --weights");
  if (o.threads <= 0 || o.seconds <= 0 || o.warmup < 0)
    usage("--threads and --seconds must be > 0, --warmup >= 0");
  return o;
}

double pct(std::vector<double> v, double p) {
  if (v.empty())
    return 0;
  std::sort(v.begin(), v.end());
  // nearest rank
  size_t k = static_cast<size_t>(std::max(1.0, std::ceil(p / 100.0 * static_cast<double>(v.size()))));
  return v[std::min(k, v.size()) - 1];
}

struct stats {
  std::vector<double> call_ms;
  double wall_s = 0;
  size_t items = 0;
};

// Calls f() (which processes `per_call` items) repeatedly for `seconds` after
// `warmup` untimed calls. Stops early on failure.
template <class F>
stats loop(double seconds, int warmup, size_t per_call, F&& f) {
  for (int i = 0; i < warmup; ++i)
    f();
  stats s;
  auto t0 = clk::now();
  auto deadline = t0 + std::chrono::duration<double>(seconds);
  do {
    auto a = clk::now();
    f();
    auto b = clk::now();
    s.call_ms.push_back(std::chrono::duration<double, std::milli>(b - a).count());
    s.items += per_call;
  } while (clk::now() < deadline);
  s.wall_s = std::chrono::duration<double>(clk::now() - t0).count();
  return s;
}

void report(const std::string& label, const stats& s, const std::string& extra) {
  std::printf("%s images_per_s=%.2f p50_ms=%.2f p99_ms=%.2f calls=%zu %s\n", label.c_str(),
              static_cast<double>(s.items) / s.wall_s, pct(s.call_ms, 50), pct(s.call_ms, 99),
              s.call_ms.size(), extra.c_str());
  std::fflush(stdout);
}

} // namespace

int main(int argc, char** argv) {
  auto o = parse(argc, argv);

  model_spec spec;
  spec.threads = o.threads;
  image_options popt; // ImageNet's unless the installed model says otherwise
  if (!o.data.empty()) {
    auto m = find_installed_model(o.data, o.model);
    if (!m) {
      std::cerr << "bare_forward: no model '" << o.model << "' in " << o.data << ": "
                << m.error().message << "\n";
      return 1;
    }
    spec.name = m->name;
    spec.arch = m->arch;
    spec.format = m->format;
    spec.weights_path = m->weights;
    // As the model registry does (actors/model_registry.cpp pool_for) ...
    spec.options_json = m->options_json;
    spec.output = m->output;
    // ... and as the pipeline in front of it preprocesses (image_ops_for_model).
    auto p = parse_image_options(m->preprocess_json);
    if (!p) {
      std::cerr << "bare_forward: bad preprocess in " << m->dir << "/config.json: "
                << p.error().message << "\n";
      return 1;
    }
    popt = p.value();
  } else {
    spec.name = o.arch;
    spec.arch = o.arch;
    spec.weights_path = o.weights;
  }
  auto model = embedding_model::load(spec);
  if (!model) {
    std::cerr << "bare_forward: cannot load " << spec.weights_path << ": "
              << model.error().message << "\n";
    return 1;
  }
  auto& net = *model.value();

  // One preprocessed input (3 x side x side): the real image through Rookery's
  // own pipeline, or (no --image) normally distributed values of the same shape.
  image_tensor input;
  std::string bytes;
  if (!o.image.empty()) {
    std::ifstream in(o.image, std::ios::binary);
    if (!in) {
      std::cerr << "bare_forward: cannot read " << o.image << "\n";
      return 1;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    bytes = ss.str();
    auto t = preprocess_image(bytes, popt);
    if (!t) {
      std::cerr << "bare_forward: cannot preprocess " << o.image << ": " << t.error().message << "\n";
      return 1;
    }
    input = std::move(t.value());
  } else {
    const int64_t side = popt.input_side();
    input.c = popt.channels, input.h = side, input.w = side;
    input.data.resize(static_cast<size_t>(input.c * side * side));
    std::mt19937 rng(0);
    std::normal_distribution<float> nd;
    for (auto& x : input.data)
      x = nd(rng);
  }
  std::printf("# bare_forward: %s (%s) from %s, input %lldx%lldx%lld, intra-op threads %d, "
              "%.1fs per measurement\n",
              spec.name.c_str(), spec.arch.c_str(), spec.weights_path.c_str(),
              static_cast<long long>(input.c), static_cast<long long>(input.h),
              static_cast<long long>(input.w), o.threads, o.seconds);

  bool failed = false;
  auto run = [&](const std::vector<const float*>& batch) {
    auto r = net.embed(batch, input.c, input.h, input.w);
    if (!r || r->size() != batch.size()) {
      if (!failed)
        std::cerr << "bare_forward: embed failed: " << (r ? "wrong row count" : r.error().message)
                  << "\n";
      failed = true;
    }
  };

  const std::string extra = "threads=" + std::to_string(o.threads);
  std::vector<const float*> b1{input.data.data()};
  auto s1 = loop(o.seconds, o.warmup, 1, [&] { run(b1); });
  if (failed)
    return 1;
  report("bare", s1, "batch=1 " + extra);

  std::vector<const float*> b8(8, input.data.data());
  auto s8 = loop(o.seconds, std::min(o.warmup, 2), 8, [&] { run(b8); });
  if (failed)
    return 1;
  report("bare_b8", s8, "batch=8 " + extra);

  if (o.optimized) {
    // The same model on the inference-optimised path the server's replicas take
    // (embedding_model::prepare: traced, frozen, conv-BN folded, oneDNN).
    prepare_options po;
    po.shape = {input.c, input.h, input.w};
    auto t0 = clk::now();
    net.prepare(po);
    std::printf("# inference (%.0f ms): %s\n",
                std::chrono::duration<double, std::milli>(clk::now() - t0).count(),
                net.inference_json().c_str());
    if (!net.optimized_for(po.shape))
      std::printf("# the optimised path was not taken; bare_opt rows are eager\n");
    auto o1 = loop(o.seconds, o.warmup, 1, [&] { run(b1); });
    if (failed)
      return 1;
    report("bare_opt", o1, "batch=1 " + extra + " path=" + net.last_path());
    auto o8 = loop(o.seconds, std::min(o.warmup, 2), 8, [&] { run(b8); });
    if (failed)
      return 1;
    report("bare_opt_b8", o8, "batch=8 " + extra + " path=" + net.last_path());
  }

  if (!bytes.empty()) {
    // Decode + preprocess is single-threaded by design (init_image_pipeline).
    bool bad = false;
    auto sp = loop(std::min(o.seconds, 3.0), o.warmup, 1, [&] {
      if (!preprocess_image(bytes, popt))
        bad = true;
    });
    if (bad)
      return 1;
    report("preprocess", sp, "image_bytes=" + std::to_string(bytes.size()));
  }
  return 0;
}

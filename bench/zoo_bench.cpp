// Eager forward latency of every zoo family in C++ (issue 3, item 6); the
// Python side is bench/zoo_bench.py and bench/zoo_bench.sh prints the ratios.
//   zoo_bench THREADS [all]   -> lines "name size b1_ms b8_ms"
// Random weights (speed does not depend on them), eval mode, no grad. Each
// measurement: 2 warm-up passes, then the median of at least 3 passes or 1 s.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "models/zoo/zoo.hpp"

using namespace rookery;

namespace {

double median_ms(zoo::ZooModelImpl& m, const torch::Tensor& x) {
  for (int i = 0; i < 2; ++i)
    m.forward(x);
  std::vector<double> ms;
  auto start = std::chrono::steady_clock::now();
  while (ms.size() < 3
         || std::chrono::steady_clock::now() - start < std::chrono::seconds(1)) {
    auto t0 = std::chrono::steady_clock::now();
    m.forward(x);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                   .count());
    if (ms.size() >= 50)
      break;
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

} // namespace

int main(int argc, char** argv) {
  int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  bool all = argc > 2 && std::string{argv[2]} == "all";
  at::set_num_threads(threads);
  torch::NoGradGuard no_grad;
  auto entries = all ? zoo::list_models() : zoo::quick_models();
  for (auto& e : entries) {
    if (all && e.heavy)
      continue;
    auto m = zoo::create_model(e.name);
    if (!m) {
      std::fprintf(stderr, "%s: %s\n", e.name.c_str(), m.error().message.c_str());
      continue;
    }
    auto& model = **m;
    model.eval();
    auto size = e.default_size;
    double b1 = median_ms(model, torch::randn({1, 3, size, size}));
    double b8 = median_ms(model, torch::randn({8, 3, size, size}));
    std::printf("%s %lld %.3f %.3f\n", e.name.c_str(), static_cast<long long>(size), b1, b8);
    std::fflush(stdout);
  }
  return 0;
}

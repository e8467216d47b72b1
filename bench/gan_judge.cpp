// Judges a GAN run with a classifier run (bench/train_bench.sh, part gan):
// draws N samples from the trained generator and classifies them with the
// trained small_cnn, then prints the mean class confidence, the class balance
// (entropy of the predicted-class histogram / log K) and an Inception-score-
// style exp(E_x[KL(p(y|x) || p(y))]) -- and the same figures for N real test
// images, the ceiling this classifier allows.
//
//   gan_judge --gan-spec gan.json --gan-dir OUT/gan --classifier-dir OUT/cnn
//             [--samples 1000] [--threads 2] [--seed 1]
#include <cmath>
#include <fstream>
#include <iostream>
#include <sstream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "datasets/datasets.hpp"
#include "models/state_dict.hpp"
#include "models/zoo/zoo.hpp"
#include "trainers/gan_trainer.hpp"

using json = nlohmann::json;
using namespace rookery;

namespace {

json read_json(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return json::parse(ss.str());
}

struct figures {
  double confidence = 0, balance = 0, inception_score = 0;
  std::vector<int64_t> histogram;
};

/// p: N x K class probabilities.
figures judge(const torch::Tensor& p) {
  figures f;
  const auto k = p.size(1);
  f.confidence = std::get<0>(p.max(1)).mean().item<double>();
  auto hist = torch::bincount(p.argmax(1), {}, k).to(torch::kFloat64);
  for (int64_t i = 0; i < k; ++i)
    f.histogram.push_back(static_cast<int64_t>(hist[i].item<double>()));
  auto q = hist / hist.sum();
  f.balance = -(q * (q + 1e-12).log()).sum().item<double>() / std::log(static_cast<double>(k));
  auto marginal = p.mean(0, true);
  auto kl = (p * ((p + 1e-12).log() - (marginal + 1e-12).log())).sum(1);
  f.inception_score = std::exp(kl.mean().item<double>());
  return f;
}

void print(const std::string& what, const figures& f, const std::vector<std::string>& classes) {
  std::printf("  %-22s confidence %.3f   balance %.3f   inception-style score %.2f (max %zu)\n",
              what.c_str(), f.confidence, f.balance, f.inception_score, classes.size());
  std::printf("  %-22s per class:", "");
  for (size_t i = 0; i < f.histogram.size(); ++i)
    std::printf(" %s=%lld", classes[i].c_str(), static_cast<long long>(f.histogram[i]));
  std::printf("\n");
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"judge GAN samples with a trained classifier"};
  std::string gan_spec, gan_dir, cls_dir;
  int64_t samples = 1000;
  int threads = 2;
  uint64_t seed = 1;
  app.add_option("--gan-spec", gan_spec, "the GAN job spec (JSON)")->required();
  app.add_option("--gan-dir", gan_dir, "the GAN job directory")->required();
  app.add_option("--classifier-dir", cls_dir, "the classifier job directory")->required();
  app.add_option("--samples", samples);
  app.add_option("--threads", threads);
  app.add_option("--seed", seed);
  CLI11_PARSE(app, argc, argv);
  try {
    at::set_num_threads(threads);
    torch::NoGradGuard no_grad;
    // The classifier, as its run exported it.
    auto res = read_json(cls_dir + ".result.json");
    auto opts = zoo::parse_model_options(res["model"]["options"].dump());
    if (!opts)
      throw std::runtime_error(opts.error().message);
    auto net = zoo::create_model(res["model"]["arch"].get<std::string>(), *opts);
    if (!net)
      throw std::runtime_error(net.error().message);
    if (auto st = load_state_dict(**net, cls_dir + "/model/model.pt"); !st)
      throw std::runtime_error(st.error().message);
    (*net)->eval();
    const auto& pre = res["model"]["preprocess"];
    const double mean = pre["mean"][0].get<double>(), stdv = pre["std"][0].get<double>();
    std::vector<std::string> classes = pre["classes"].get<std::vector<std::string>>();
    auto classify = [&](const torch::Tensor& x01) {
      std::vector<torch::Tensor> out;
      for (int64_t i = 0; i < x01.size(0); i += 250)
        out.push_back(torch::softmax((*net)->forward((x01.slice(0, i, i + 250) - mean) / stdv), 1));
      return torch::cat(out);
    };

    // The generator, as the GAN run left it.
    auto spec = read_json(gan_spec);
    auto cfg = train::parse_gan_config(spec.value("hyper", json::object()));
    if (!cfg)
      throw std::runtime_error(cfg.error().message);
    auto size = cfg->image_size > 0 ? cfg->image_size : 28;
    train::DCGANGenerator g(cfg->latent_dim, 1, size, cfg->width);
    if (auto st = load_state_dict(*g, gan_dir + "/model/generator.pt"); !st)
      throw std::runtime_error(st.error().message);
    g->eval();
    auto gen = at::detail::createCPUGenerator(seed);
    auto z = torch::randn({samples, cfg->latent_dim}, gen);
    auto fake = (g->forward(z) + 1) / 2; // [-1, 1] -> [0, 1]

    data::dataset_paths paths;
    auto ds = data::find_dataset(paths, "fashion-mnist", 0, false);
    if (!ds)
      throw std::runtime_error(ds.error().message);
    auto real = data::load_images(*ds, {0, samples, seed});
    if (!real)
      throw std::runtime_error(real.error().message);
    auto real01 = real->test.images.to(torch::kFloat32) / 255;

    print("GAN samples (" + std::to_string(samples) + ")", judge(classify(fake)), classes);
    print("real test images", judge(classify(real01)), classes);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "gan_judge: " << e.what() << "\n";
    return 1;
  }
}

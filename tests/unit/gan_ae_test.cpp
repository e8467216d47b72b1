// The generative trainers (trainers/gan_trainer.hpp, trainers/autoencoder_trainer.hpp),
// the conv_ae / conv_vae zoo models and save_module_weights (models/state_dict.hpp),
// on small Fashion-MNIST subsets so every case stays within seconds on two cores.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <torch/torch.h>

#include "datasets/registry.hpp"
#include "models/state_dict.hpp"
#include "models/zoo/autoencoder.hpp"
#include "models/zoo/zoo.hpp"
#include "tensor_files.hpp"
#include "trainers/autoencoder_trainer.hpp"
#include "trainers/gan_trainer.hpp"
#include "trainers/trainer.hpp"

#undef CHECK
#define CHECK(...) INTERNAL_CATCH_TEST("CHECK", Catch::ResultDisposition::ContinueOnFailure, __VA_ARGS__)

namespace fs = std::filesystem;
using namespace rookery;
using nlohmann::json;
using rookery::test::temp_dir;

namespace {

data::dataset_info fashion_mnist(const fs::path& data_dir) {
  data::dataset_paths paths;
  paths.data_dir = data_dir.string();
  auto ds = data::find_dataset(paths, "fashion-mnist", 0, false);
  REQUIRE(ds.ok());
  REQUIRE(ds->available);
  return ds.value();
}

double mean_of(const std::vector<double>& v, size_t from, size_t count) {
  double s = 0;
  for (size_t i = from; i < from + count; ++i)
    s += v[i];
  return s / static_cast<double>(count);
}

std::vector<torch::Tensor> snapshot(torch::nn::Module& m) {
  std::vector<torch::Tensor> out;
  for (auto& p : m.parameters())
    out.push_back(p.detach().clone());
  return out;
}

bool changed(torch::nn::Module& m, const std::vector<torch::Tensor>& before) {
  auto now = m.parameters();
  for (size_t i = 0; i < now.size(); ++i)
    if (!torch::equal(now[i], before[i]))
      return true;
  return false;
}

// Runs `steps` train steps through the epochs, as fit() would; returns the step metrics.
std::vector<train::metrics> run_steps(train::Trainer& t, int64_t steps) {
  std::vector<train::metrics> out;
  const int64_t spe = t.steps_per_epoch();
  REQUIRE(spe > 0);
  for (int64_t s = 0; s < steps; ++s) {
    if (s % spe == 0)
      t.train_mode();
    out.push_back(t.train_step(s / spe, s % spe));
  }
  return out;
}

std::unique_ptr<train::Trainer> make(const json& spec, const data::dataset_info& ds) {
  auto r = spec["trainer"] == "gan" ? train::make_gan_trainer(spec, ds)
                                    : train::make_autoencoder_trainer(spec, ds);
  if (!r)
    FAIL(r.error().message);
  return std::move(r.value());
}

} // namespace

TEST_CASE("conv_ae and conv_vae: zoo entries, shapes, latent_dim only for autoencoders", "[trainers]") {
  torch::manual_seed(3);
  zoo::model_options o;
  o.in_channels = 3;
  o.image_size = 32;
  o.latent_dim = 16;
  for (const char* name : {"conv_ae", "conv_vae"}) {
    auto m = zoo::create_model(name, o);
    REQUIRE(m.ok());
    auto& net = *m.value();
    net.eval();
    auto x = torch::rand({2, 3, 32, 32});
    CHECK(net.num_features() == 16);
    CHECK(net.forward_features(x).sizes() == torch::IntArrayRef({2, 16}));
    CHECK(net.forward(x).sizes() == torch::IntArrayRef({2, 3 * 32 * 32}));
    auto stages = net.forward_stages(x);
    REQUIRE(stages.size() == 2);
    CHECK(stages[1].sizes() == torch::IntArrayRef({2, 64, 8, 8}));
    auto names = net.named_parameters().keys();
    auto has = [&](const std::string& k) { return std::find(names.begin(), names.end(), k) != names.end(); };
    CHECK(has("encoder.0.weight"));
    CHECK(has("decoder.5.weight"));
    CHECK(has("fc_mu.weight") == (std::string(name) == "conv_vae"));
  }
  // Default 28x28x1, latent 32.
  zoo::model_options d;
  d.in_channels = 1;
  auto ae = zoo::create_model("conv_ae", d);
  REQUIRE(ae.ok());
  CHECK(ae.value()->num_features() == 32);
  CHECK(ae.value()->forward(torch::rand({1, 1, 28, 28})).size(1) == 784);
  // Sizes that do not halve twice, and latent_dim on a torchvision family.
  d.image_size = 30;
  CHECK(zoo::create_model("conv_ae", d).error().code == errc::bad_request);
  zoo::model_options r;
  r.latent_dim = 8;
  auto bad = zoo::create_model("resnet18", r);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == errc::bad_request);
  CHECK(bad.error().message.find("latent_dim") != std::string::npos);
  // Custom models stay out of the torchvision listing.
  for (auto& e : zoo::list_models())
    CHECK(e.family != "autoencoder");
}

TEST_CASE("save_module_weights: load_state_dict and Python's torch.load read it back", "[trainers]") {
  torch::manual_seed(5);
  temp_dir tmp("rookery_savew_");
  torch::nn::Sequential a(torch::nn::Conv2d(3, 4, 3), torch::nn::BatchNorm2d(4), torch::nn::Linear(4, 2));
  a->train();
  a[0]->as<torch::nn::Conv2d>()->forward(torch::rand({2, 3, 5, 5}));
  a[1]->as<torch::nn::BatchNorm2d>()->forward(torch::rand({2, 4, 3, 3})); // running stats, counter
  const auto path = (tmp.path / "w.pt").string();
  REQUIRE(save_module_weights(*a, path).ok());

  torch::nn::Sequential b(torch::nn::Conv2d(3, 4, 3), torch::nn::BatchNorm2d(4), torch::nn::Linear(4, 2));
  auto st = load_state_dict(*b, path);
  INFO((st.ok() ? std::string() : st.error().message));
  REQUIRE(st.ok());
  auto pa = a->named_parameters(), pb = b->named_parameters();
  for (auto& kv : pa)
    CHECK(torch::equal(kv.value(), pb[kv.key()]));
  auto ba = a->named_buffers(), bb = b->named_buffers();
  REQUIRE(ba.size() == 3);
  for (auto& kv : ba) {
    CHECK(kv.value().scalar_type() == bb[kv.key()].scalar_type());
    CHECK(torch::equal(kv.value(), bb[kv.key()]));
  }
  CHECK(bb["1.num_batches_tracked"].item<int64_t>() == 1);

  // A module of another shape is refused, not half-loaded.
  torch::nn::Sequential c(torch::nn::Conv2d(3, 5, 3), torch::nn::BatchNorm2d(5), torch::nn::Linear(5, 2));
  CHECK(load_state_dict(*c, path).error().code == errc::unprocessable);

  // The file is torch.save's format: Python reads it (when Debian's python3-torch is there).
  if (std::system((std::string(rookery::test::python) + " -c 'import torch' 2>/dev/null").c_str()) == 0) {
    const auto out = (tmp.path / "sum.txt").string();
    const std::string cmd = std::string(rookery::test::python) + " -c \"import torch; d = torch.load('"
                            + path + "'); open('" + out
                            + "', 'w').write(' '.join(k + '=' + str(float(v.double().sum())) for k, v in d.items()))\"";
    REQUIRE(std::system(cmd.c_str()) == 0);
    std::ifstream in(out);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    for (auto& kv : pa) {
      auto pos = text.find(kv.key() + "=");
      REQUIRE(pos != std::string::npos);
      const double v = std::stod(text.substr(pos + kv.key().size() + 1));
      CHECK(v == Approx(kv.value().sum().item<double>()).epsilon(1e-5).margin(1e-6));
    }
    CHECK(text.find("1.num_batches_tracked=1.0") != std::string::npos);
  }
}

TEST_CASE("autoencoder trainer: plain AE learns, reconstructions grid, validation", "[trainers]") {
  torch::manual_seed(11);
  temp_dir tmp("rookery_ae_");
  auto ds = fashion_mnist(tmp.path);
  json spec = {{"trainer", "autoencoder"},
               {"dataset", "fashion-mnist"},
               {"hyper",
                {{"variant", "ae"}, {"batch_size", 64}, {"limit_train", 512}, {"limit_test", 128},
                 {"lr", 2e-3}, {"latent_dim", 16}, {"seed", 7}}}};
  auto t = make(spec, ds);
  REQUIRE(t->kind() == "autoencoder");
  auto st = t->setup();
  INFO((st.ok() ? std::string() : st.error().message));
  REQUIRE(st.ok());
  CHECK(t->steps_per_epoch() == 8);
  auto before = t->validate();
  auto ms = run_steps(*t, 40);
  std::vector<double> loss;
  for (auto& m : ms) {
    REQUIRE(m.count("loss"));
    REQUIRE(m.count("recon"));
    CHECK(m.count("kl") == 0);
    CHECK(std::isfinite(m["loss"]));
    loss.push_back(m["loss"]);
  }
  const double first = mean_of(loss, 0, 5), last = mean_of(loss, loss.size() - 5, 5);
  INFO("first " << first << " last " << last);
  CHECK(last < 0.8 * first);
  auto after = t->validate();
  CHECK(after.count("val_kl") == 0);
  CHECK(after["val_recon"] > 0);
  CHECK(after["val_recon"] < before["val_recon"]);
  CHECK(after["val_loss"] < before["val_loss"]);

  auto files = t->epoch_artifacts(1, tmp.path.string());
  REQUIRE(files.size() == 1);
  CHECK(files[0] == "reconstructions_epoch1.png");
  auto img = cv::imread((tmp.path / files[0]).string(), cv::IMREAD_UNCHANGED);
  REQUIRE_FALSE(img.empty());
  // 2 rows x 8 columns of 28x28 tiles with 2-pixel gaps (with or without an outer border).
  CHECK(img.cols >= 8 * 28 + 7 * 2);
  CHECK(img.cols <= 8 * 28 + 9 * 2);
  CHECK(img.rows >= 2 * 28 + 2);
  CHECK(img.rows <= 2 * 28 + 3 * 2);

  auto ex = t->export_model((tmp.path / "model").string());
  REQUIRE(ex.ok());
  CHECK(ex->arch == "conv_ae");
  CHECK(ex->dim == 16);
  auto pre = json::parse(ex->preprocess_json);
  CHECK(pre["size"] == 28);
  CHECK(pre["channels"] == 1);
  CHECK(pre["mean"] == json::array({0.0}));
  CHECK(pre["std"] == json::array({1.0}));
}

TEST_CASE("autoencoder trainer: VAE learns with KL > 0; export loads into a fresh conv_vae", "[trainers]") {
  torch::manual_seed(12);
  temp_dir tmp("rookery_vae_");
  auto ds = fashion_mnist(tmp.path);
  json spec = {{"trainer", "autoencoder"},
               {"dataset", "fashion-mnist"},
               {"hyper",
                {{"variant", "vae"}, {"batch_size", 64}, {"limit_train", 512}, {"limit_test", 128},
                 {"lr", 2e-3}, {"latent_dim", 8}, {"beta", 1.0}, {"seed", 8}}}};
  auto t = make(spec, ds);
  REQUIRE(t->setup().ok());
  auto ms = run_steps(*t, 40);
  std::vector<double> loss;
  for (auto& m : ms) {
    REQUIRE(m.count("kl"));
    CHECK(m["kl"] > 0);
    CHECK(std::isfinite(m["loss"]));
    CHECK(m["loss"] == Approx(m["recon"] + m["kl"]).epsilon(1e-4));
    loss.push_back(m["loss"]);
  }
  const double first = mean_of(loss, 0, 5), last = mean_of(loss, loss.size() - 5, 5);
  INFO("first " << first << " last " << last);
  CHECK(last < 0.8 * first);
  auto v = t->validate();
  CHECK(v["val_kl"] > 0);
  CHECK(std::isfinite(v["val_loss"]));
  CHECK(v["val_recon"] > 0);
  CHECK(v["val_recon"] < 0.2);

  auto files = t->epoch_artifacts(3, tmp.path.string());
  REQUIRE(files.size() == 2);
  CHECK(files[1] == "samples_epoch3.png");
  auto samples = cv::imread((tmp.path / files[1]).string(), cv::IMREAD_UNCHANGED);
  REQUIRE_FALSE(samples.empty());
  CHECK(samples.cols >= 8 * 28 + 7 * 2);
  CHECK(samples.rows >= 4 * 28 + 3 * 2); // 32 codes: 4 rows

  auto ex = t->export_model((tmp.path / "model").string());
  REQUIRE(ex.ok());
  CHECK(ex->arch == "conv_vae");
  CHECK(ex->dim == 8);
  // As the model repository does: options from the JSON, then a strict load.
  auto parsed = zoo::parse_model_options(ex->options_json);
  REQUIRE(parsed.ok());
  auto o = parsed.value();
  CHECK(o.in_channels == 1);
  CHECK(o.image_size == 28);
  CHECK(o.latent_dim == 8);
  auto fresh = zoo::create_model(ex->arch, o);
  REQUIRE(fresh.ok());
  auto* trained = dynamic_cast<train::AutoencoderTrainer*>(t.get());
  REQUIRE(trained);
  auto x = torch::rand({4, 1, 28, 28});
  torch::NoGradGuard ng;
  trained->model()->eval();
  fresh.value()->eval();
  auto want = trained->model()->forward_features(x);
  CHECK_FALSE(torch::equal(fresh.value()->forward_features(x), want));
  auto st = load_state_dict(*fresh.value(), ex->weights_path);
  INFO((st.ok() ? std::string() : st.error().message));
  REQUIRE(st.ok());
  CHECK(torch::equal(fresh.value()->forward_features(x), want));
  CHECK(torch::equal(fresh.value()->forward(x), trained->model()->forward(x)));
}

TEST_CASE("gan trainer: DCGAN steps move both networks; samples grid; generator.pt", "[trainers]") {
  torch::manual_seed(21);
  temp_dir tmp("rookery_dcgan_");
  auto ds = fashion_mnist(tmp.path);
  json spec = {{"trainer", "gan"},
               {"dataset", "fashion-mnist"},
               {"hyper",
                {{"mode", "dcgan"}, {"batch_size", 32}, {"limit_train", 256}, {"limit_test", 64},
                 {"width", 16}, {"latent_dim", 16}, {"label_smoothing", 0.1}, {"seed", 9}}}};
  auto t = make(spec, ds);
  REQUIRE(t->kind() == "gan");
  REQUIRE(t->setup().ok());
  auto* gan = dynamic_cast<train::GanTrainer*>(t.get());
  REQUIRE(gan);
  CHECK(gan->config().n_critic == 1);
  CHECK(gan->config().lr_g == Approx(2e-4));
  CHECK(t->steps_per_epoch() == 8);
  auto g0 = snapshot(*gan->generator()), d0 = snapshot(*gan->discriminator());
  auto ms = run_steps(*t, 4);
  for (auto& m : ms) {
    for (const char* k : {"loss", "loss_g", "loss_d", "d_real", "d_fake"}) {
      REQUIRE(m.count(k));
      CHECK(std::isfinite(m[k]));
    }
    CHECK(m.count("gp") == 0);
    CHECK(m["loss"] == m["loss_g"]);
    CHECK(m["d_real"] > 0);
    CHECK(m["d_real"] < 1);
  }
  CHECK(changed(*gan->generator(), g0));
  CHECK(changed(*gan->discriminator(), d0));
  auto v = t->validate();
  CHECK(std::isfinite(v["val_loss"]));
  CHECK(v.count("val_d_fake"));

  auto files = t->epoch_artifacts(1, tmp.path.string());
  REQUIRE(files.size() == 2);
  CHECK(files[0] == "samples_epoch1.png");
  auto img = cv::imread((tmp.path / files[0]).string(), cv::IMREAD_UNCHANGED);
  REQUIRE_FALSE(img.empty());
  CHECK(img.cols >= 8 * 28 + 7 * 2); // 64 samples, 8 x 8
  CHECK(img.rows >= 8 * 28 + 7 * 2);
  CHECK(img.cols <= 8 * 28 + 9 * 2);
  CHECK(img.rows <= 8 * 28 + 9 * 2);

  CHECK(files[1] == "generator.pt");
  train::DCGANGenerator fresh(16, 1, 28, 16);
  REQUIRE(load_state_dict(*fresh, (tmp.path / "generator.pt").string()).ok());
  fresh->eval();
  gan->generator()->eval();
  torch::NoGradGuard ng;
  auto z = torch::randn({2, 16});
  CHECK(torch::equal(fresh->forward(z), gan->generator()->forward(z)));

  auto ex = t->export_model((tmp.path / "model").string());
  REQUIRE_FALSE(ex.ok());
  CHECK(ex.error().code == errc::unprocessable);
  CHECK(fs::exists(tmp.path / "model" / "generator.pt"));
}

TEST_CASE("gan trainer: WGAN-GP critic steps with a finite, positive gradient penalty", "[trainers]") {
  torch::manual_seed(22);
  temp_dir tmp("rookery_wgan_");
  auto ds = fashion_mnist(tmp.path);
  json spec = {{"trainer", "gan"},
               {"dataset", "fashion-mnist"},
               {"hyper",
                {{"mode", "wgan-gp"}, {"batch_size", 32}, {"limit_train", 256}, {"limit_test", 64},
                 {"width", 8}, {"latent_dim", 16}, {"n_critic", 2}, {"lr_d", 3e-4}, {"seed", 10}}}};
  auto t = make(spec, ds);
  REQUIRE(t->setup().ok());
  auto* gan = dynamic_cast<train::GanTrainer*>(t.get());
  CHECK(gan->config().lr_d == Approx(3e-4));
  CHECK(gan->config().lr_g == Approx(1e-4));
  CHECK(gan->config().gp_lambda == 10);
  CHECK(t->steps_per_epoch() == 256 / (32 * 2));
  // No batch statistics in the critic.
  for (auto& m : gan->discriminator()->modules())
    CHECK(m->as<torch::nn::BatchNorm2d>() == nullptr);
  auto g0 = snapshot(*gan->generator()), d0 = snapshot(*gan->discriminator());
  auto ms = run_steps(*t, 3);
  for (auto& m : ms) {
    REQUIRE(m.count("gp"));
    CHECK(std::isfinite(m["gp"]));
    CHECK(m["gp"] > 0);
    for (const char* k : {"loss", "loss_g", "loss_d", "d_real", "d_fake"})
      CHECK(std::isfinite(m[k]));
    // Wasserstein estimate: loss_d = E[D(fake)] - E[D(real)] over the critic batches.
    CHECK(m["loss_d"] == Approx(m["d_fake"] - m["d_real"]).margin(1e-4));
  }
  CHECK(changed(*gan->generator(), g0));
  CHECK(changed(*gan->discriminator(), d0));
  auto v = t->validate();
  CHECK(std::isfinite(v["val_loss"]));
}

TEST_CASE("gan and autoencoder trainers: steps are reproducible from the seed", "[trainers]") {
  temp_dir tmp("rookery_gan_seed_");
  auto ds = fashion_mnist(tmp.path);
  json spec = {{"trainer", "gan"},
               {"dataset", "fashion-mnist"},
               {"hyper",
                {{"mode", "wgan-gp"}, {"batch_size", 16}, {"limit_train", 128}, {"limit_test", 32},
                 {"width", 8}, {"latent_dim", 8}, {"n_critic", 2}, {"seed", 4}}}};
  auto run = [&](const json& s) {
    torch::manual_seed(4);
    auto t = make(s, ds);
    REQUIRE(t->setup().ok());
    auto ms = run_steps(*t, 3);
    return ms.back();
  };
  auto a = run(spec), b = run(spec);
  CHECK(a == b);
  spec["hyper"]["seed"] = 5;
  CHECK_FALSE(run(spec) == a);
  json ae = {{"trainer", "autoencoder"},
             {"hyper",
              {{"variant", "vae"}, {"batch_size", 16}, {"limit_train", 64}, {"limit_test", 16}, {"seed", 4}}}};
  CHECK(run(ae) == run(ae));
}

TEST_CASE("gan and autoencoder trainers: bad hyper-parameters and data sets", "[trainers]") {
  temp_dir tmp("rookery_gan_bad_");
  auto ds = fashion_mnist(tmp.path);
  auto gan_err = [&](const json& hyper) {
    json spec = {{"trainer", "gan"}, {"hyper", hyper}};
    auto r = train::make_gan_trainer(spec, ds);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == errc::bad_request);
    return r.error().message;
  };
  auto ae_err = [&](const json& hyper) {
    json spec = {{"trainer", "autoencoder"}, {"hyper", hyper}};
    auto r = train::make_autoencoder_trainer(spec, ds);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == errc::bad_request);
    return r.error().message;
  };
  CHECK_THAT(gan_err({{"n_critic", 0}}), Catch::Contains("n_critic"));
  CHECK_THAT(gan_err({{"n_critic", 1.5}}), Catch::Contains("n_critic"));
  CHECK_THAT(gan_err({{"mode", "vanilla"}}), Catch::Contains("mode"));
  CHECK_THAT(gan_err({{"gp_lambda", -1}}), Catch::Contains("gp_lambda"));
  CHECK_THAT(gan_err({{"lr_g", 0}}), Catch::Contains("lr_g"));
  CHECK_THAT(gan_err({{"beta1", 1.0}}), Catch::Contains("beta1"));
  CHECK_THAT(gan_err({{"label_smoothing", 0.5}}), Catch::Contains("label_smoothing"));
  CHECK_THAT(gan_err({{"image_size", 30}}), Catch::Contains("image_size"));
  CHECK_THAT(gan_err({{"batch_size", "big"}}), Catch::Contains("batch_size")); // parse_hyper's
  CHECK_THAT(ae_err({{"beta", -0.5}}), Catch::Contains("beta"));
  CHECK_THAT(ae_err({{"variant", "gan"}}), Catch::Contains("variant"));
  CHECK_THAT(ae_err({{"latent_dim", 0}}), Catch::Contains("latent_dim"));
  CHECK_THAT(ae_err({{"loss", "l1"}}), Catch::Contains("loss"));
  {
    json spec = {{"trainer", "gan"}, {"hyper", json::array()}};
    CHECK(train::make_gan_trainer(spec, ds).error().code == errc::bad_request);
  }
  // Good specs pass without loading anything.
  CHECK(train::make_gan_trainer({{"trainer", "gan"}}, ds).ok());
  CHECK(train::make_autoencoder_trainer({{"trainer", "autoencoder"}, {"hyper", {{"variant", "vae"}}}}, ds).ok());

  data::dataset_info text = ds;
  text.name = "fortunes";
  text.kind = "text_classification";
  auto r = train::make_gan_trainer({{"trainer", "gan"}}, text);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == errc::bad_request);
  CHECK(train::make_autoencoder_trainer({{"trainer", "autoencoder"}}, text).error().code
        == errc::bad_request);
}

namespace {

// Saves every module and optimizer of `t` into one archive (as a checkpoint would).
void save_state(train::Trainer& t, const std::string& path) {
  torch::serialize::OutputArchive root;
  for (auto& [name, m] : t.modules()) {
    torch::serialize::OutputArchive a;
    m->save(a);
    root.write("module." + name, a);
  }
  for (auto& [name, o] : t.optimizers()) {
    torch::serialize::OutputArchive a;
    o->save(a);
    root.write("optimizer." + name, a);
  }
  root.save_to(path);
}

void load_state(train::Trainer& t, const std::string& path) {
  torch::serialize::InputArchive root;
  root.load_from(path);
  for (auto& [name, m] : t.modules()) {
    torch::serialize::InputArchive a;
    REQUIRE(root.try_read("module." + name, a));
    m->load(a);
  }
  for (auto& [name, o] : t.optimizers()) {
    torch::serialize::InputArchive a;
    REQUIRE(root.try_read("optimizer." + name, a));
    o->load(a);
  }
}

} // namespace

TEST_CASE("gan and autoencoder trainers: modules() and optimizers() hold the whole run state", "[trainers]") {
  temp_dir tmp("rookery_gan_ckpt_");
  auto ds = fashion_mnist(tmp.path);
  std::vector<json> specs = {
    {{"trainer", "gan"},
     {"hyper",
      {{"mode", "dcgan"}, {"batch_size", 16}, {"limit_train", 128}, {"limit_test", 32}, {"width", 8},
       {"latent_dim", 8}, {"seed", 6}}}},
    {{"trainer", "gan"},
     {"hyper",
      {{"mode", "wgan-gp"}, {"batch_size", 16}, {"limit_train", 128}, {"limit_test", 32}, {"width", 8},
       {"latent_dim", 8}, {"n_critic", 2}, {"seed", 6}}}},
    {{"trainer", "autoencoder"},
     {"hyper", {{"variant", "vae"}, {"batch_size", 16}, {"limit_train", 128}, {"limit_test", 32}, {"seed", 6}}}}};
  for (auto& spec : specs) {
    INFO(spec.dump());
    const auto path = (tmp.path / "state.pt").string();
    // Run A: 3 steps, checkpoint, 3 more (crossing into the next epoch).
    torch::manual_seed(1);
    auto a = make(spec, ds);
    REQUIRE(a->setup().ok());
    const int64_t spe = a->steps_per_epoch();
    auto step = [spe](train::Trainer& t, int64_t s) {
      if (s % spe == 0)
        t.train_mode();
      return t.train_step(s / spe, s % spe);
    };
    for (int64_t s = 0; s < 3; ++s)
      step(*a, s);
    save_state(*a, path);
    std::vector<train::metrics> ma;
    for (int64_t s = 3; s < spe + 2; ++s)
      ma.push_back(step(*a, s));

    // Run B: other initial weights and fixed noise, then the checkpoint, then the same steps.
    torch::manual_seed(2);
    json other = spec;
    other["hyper"]["seed"] = 99;
    auto b0 = make(other, ds);
    REQUIRE(b0->setup().ok());
    // b0 has the other seed's batches: only its state is wanted; B proper uses spec's seed.
    torch::manual_seed(2);
    auto b = make(spec, ds);
    REQUIRE(b->setup().ok());
    for (auto& [name, m] : b->modules()) {
      auto src = b0->modules()[name]->named_buffers();
      torch::NoGradGuard ng;
      for (auto& kv : m->named_buffers())
        if (src.contains(kv.key()))
          kv.value().copy_(src[kv.key()]); // e.g. the other seed's fixed noise
    }
    auto sample = [](train::Trainer& t) {
      auto mods = t.modules();
      auto state = mods["state"]->named_buffers();
      return state[state.keys().back()].clone();
    };
    REQUIRE_FALSE(torch::equal(sample(*a), sample(*b)));
    load_state(*b, path);
    CHECK(torch::equal(sample(*a), sample(*b)));
    std::vector<train::metrics> mb;
    for (int64_t s = 3; s < spe + 2; ++s)
      mb.push_back(step(*b, s));
    CHECK(ma == mb);
    auto pa = a->modules(), pb = b->modules();
    for (auto& [name, m] : pa) {
      auto x = m->parameters(), y = pb[name]->parameters();
      REQUIRE(x.size() == y.size());
      for (size_t i = 0; i < x.size(); ++i)
        CHECK(torch::equal(x[i], y[i]));
    }
  }
}

TEST_CASE("gan trainer under fit(): artifacts, and a resumed run ends where an uninterrupted one does", "[trainers]") {
  temp_dir tmp("rookery_gan_fit_");
  auto ds = fashion_mnist(tmp.path);
  json spec = {{"trainer", "gan"},
               {"dataset", "fashion-mnist"},
               {"hyper",
                {{"mode", "wgan-gp"}, {"epochs", 2}, {"batch_size", 16}, {"limit_train", 96},
                 {"limit_test", 32}, {"width", 8}, {"latent_dim", 8}, {"n_critic", 2},
                 {"schedule", "step"}, {"gamma", 0.5}, {"lr_g", 2e-4}, {"seed", 13}}}};
  auto params_of = [](train::Trainer& t) {
    std::vector<torch::Tensor> out;
    for (auto& [name, m] : t.modules())
      for (auto& p : m->parameters())
        out.push_back(p.detach().clone());
    return out;
  };

  // Uninterrupted: 2 epochs of 3 steps.
  auto whole = make(spec, ds);
  train::run_context ctx;
  ctx.dir = (tmp.path / "whole").string();
  auto a = train::fit(*whole, ctx);
  INFO((a.ok() ? std::string() : a.error().message));
  REQUIRE(a.ok());
  CHECK(a->outcome == "completed");
  CHECK(a->steps == 6);
  CHECK_FALSE(a->model.has_value()); // nothing servable
  auto has = [](const std::vector<std::string>& v, const std::string& s) {
    return std::find(v.begin(), v.end(), s) != v.end();
  };
  CHECK(has(a->artifacts, "artifacts/samples_epoch1.png"));
  CHECK(has(a->artifacts, "artifacts/samples_epoch2.png"));
  CHECK(has(a->artifacts, "artifacts/generator.pt"));
  CHECK(has(a->artifacts, "model/generator.pt"));
  CHECK_FALSE(cv::imread((tmp.path / "whole" / "artifacts" / "samples_epoch2.png").string()).empty());
  CHECK(a->final_metrics.count("gp"));
  CHECK(a->final_metrics.count("val_loss"));
  // The step schedule halved each optimizer's own rate for epoch 2.
  auto opts = whole->optimizers();
  CHECK(opts["generator"]->param_groups()[0].options().get_lr() == Approx(1e-4));
  CHECK(opts["discriminator"]->param_groups()[0].options().get_lr() == Approx(5e-5));

  // Interrupted after epoch 1 (epochs = 1), then resumed with epochs = 2 in the same directory.
  json first = spec;
  first["hyper"]["epochs"] = 1;
  auto t1 = make(first, ds);
  ctx.dir = (tmp.path / "resumed").string();
  auto b1 = train::fit(*t1, ctx);
  REQUIRE(b1.ok());
  CHECK(b1->steps == 3);
  auto t2 = make(spec, ds);
  auto b2 = train::fit(*t2, ctx);
  INFO((b2.ok() ? std::string() : b2.error().message));
  REQUIRE(b2.ok());
  CHECK(b2->resumed);
  CHECK(b2->resumed_from_step == 3);
  CHECK(b2->steps == 6);
  auto pa = params_of(*whole), pb = params_of(*t2);
  REQUIRE(pa.size() == pb.size());
  bool same = true;
  for (size_t i = 0; i < pa.size(); ++i)
    same = same && torch::equal(pa[i], pb[i]);
  CHECK(same);
  CHECK(torch::equal(dynamic_cast<train::GanTrainer&>(*whole).fixed_noise(),
                     dynamic_cast<train::GanTrainer&>(*t2).fixed_noise()));
}

TEST_CASE("autoencoder trainer under fit(): make_trainer dispatch, exported model, curves", "[trainers]") {
  temp_dir tmp("rookery_ae_fit_");
  data::dataset_paths paths;
  paths.data_dir = tmp.path.string();
  json spec = {{"trainer", "autoencoder"},
               {"dataset", "fashion-mnist"},
               {"hyper",
                {{"variant", "vae"}, {"epochs", 1}, {"batch_size", 32}, {"limit_train", 128},
                 {"limit_test", 64}, {"latent_dim", 4}, {"seed", 14}}}};
  auto t = train::make_trainer(spec, paths, 0, false);
  INFO((t.ok() ? std::string() : t.error().message));
  REQUIRE(t.ok());
  CHECK(t.value()->kind() == "autoencoder");
  train::run_context ctx;
  ctx.dir = tmp.path.string();
  auto r = train::fit(*t.value(), ctx);
  INFO((r.ok() ? std::string() : r.error().message));
  REQUIRE(r.ok());
  REQUIRE(r->model.has_value());
  CHECK(r->model->arch == "conv_vae");
  CHECK(r->model->dim == 4);
  CHECK(fs::exists(r->model->weights_path));
  CHECK(std::find(r->artifacts.begin(), r->artifacts.end(), "artifacts/reconstructions_epoch1.png")
        != r->artifacts.end());
  CHECK(std::find(r->artifacts.begin(), r->artifacts.end(), "artifacts/samples_epoch1.png")
        != r->artifacts.end());
  CHECK(r->final_metrics.count("val_kl"));

  auto bad = spec;
  bad["hyper"]["beta"] = -1;
  auto e = train::make_trainer(bad, paths, 0, false);
  REQUIRE_FALSE(e.ok());
  CHECK(e.error().code == errc::bad_request);
  bad = spec;
  bad["trainer"] = "gan";
  bad["hyper"] = {{"mode", "lsgan"}};
  CHECK(train::make_trainer(bad, paths, 0, false).error().code == errc::bad_request);
}

#include "trainers/gan_trainer.hpp"

#include <filesystem>

#include "datasets/datasets.hpp"
#include "models/state_dict.hpp"
#include "trainers/generative_common.hpp"

namespace rookery::train {

namespace fs = std::filesystem;
namespace nn = torch::nn;
namespace F = torch::nn::functional;

namespace {

constexpr int64_t fixed_noise_count = 64; // samples grid: 8 x 8
constexpr int64_t val_real_limit = 1024;
constexpr uint64_t salt_step = 0x47414e01;
constexpr uint64_t salt_fixed = 0x47414e02;

std::string first_line(std::string s) {
  auto nl = s.find('\n');
  if (nl != std::string::npos)
    s.resize(nl);
  return s;
}

// DCGAN's initialisation: conv weights N(0, 0.02), norm scales N(1, 0.02), biases 0.
void dcgan_init(nn::Module& m) {
  torch::NoGradGuard no_grad;
  for (auto& mod : m.modules(/*include_self=*/false)) {
    if (auto* c = mod->as<nn::Conv2d>()) {
      c->weight.normal_(0.0, 0.02);
      if (c->bias.defined())
        c->bias.zero_();
    } else if (auto* t = mod->as<nn::ConvTranspose2d>()) {
      t->weight.normal_(0.0, 0.02);
      if (t->bias.defined())
        t->bias.zero_();
    } else if (auto* l = mod->as<nn::Linear>()) {
      l->weight.normal_(0.0, 0.02);
      l->bias.zero_();
    } else if (auto* b = mod->as<nn::BatchNorm2d>()) {
      b->weight.normal_(1.0, 0.02);
      b->bias.zero_();
    } else if (auto* i = mod->as<nn::InstanceNorm2d>()) {
      if (i->weight.defined()) {
        i->weight.normal_(1.0, 0.02);
        i->bias.zero_();
      }
    }
  }
}

} // namespace

// --- models ----------------------------------------------------------------------

DCGANGeneratorImpl::DCGANGeneratorImpl(int64_t nz, int64_t channels, int64_t image_size, int64_t w)
    : latent_dim(nz) {
  TORCH_CHECK(image_size >= 8 && image_size % 4 == 0, "image_size must be a multiple of 4 >= 8");
  const int64_t s0 = image_size / 4;
  main = register_module(
      "main", nn::Sequential(
                  nn::ConvTranspose2d(nn::ConvTranspose2dOptions(nz, 2 * w, s0).bias(false)),
                  nn::BatchNorm2d(2 * w), nn::ReLU(),
                  nn::ConvTranspose2d(
                      nn::ConvTranspose2dOptions(2 * w, w, 4).stride(2).padding(1).bias(false)),
                  nn::BatchNorm2d(w), nn::ReLU(),
                  nn::ConvTranspose2d(
                      nn::ConvTranspose2dOptions(w, channels, 4).stride(2).padding(1).bias(false)),
                  nn::Tanh()));
}

torch::Tensor DCGANGeneratorImpl::forward(const torch::Tensor& z) {
  TORCH_CHECK(z.dim() == 2 && z.size(1) == latent_dim, "expected noise (N, ", latent_dim, "), got ",
              z.sizes());
  return main->forward(z.view({z.size(0), latent_dim, 1, 1}));
}

DCGANDiscriminatorImpl::DCGANDiscriminatorImpl(int64_t channels, int64_t image_size, int64_t w,
                                               bool instance_norm) {
  TORCH_CHECK(image_size >= 8 && image_size % 4 == 0, "image_size must be a multiple of 4 >= 8");
  const int64_t s0 = image_size / 4;
  auto leaky = [] { return nn::LeakyReLU(nn::LeakyReLUOptions().negative_slope(0.2)); };
  nn::Sequential f(nn::Conv2d(nn::Conv2dOptions(channels, w, 4).stride(2).padding(1).bias(false)),
                   leaky(),
                   nn::Conv2d(nn::Conv2dOptions(w, 2 * w, 4).stride(2).padding(1).bias(false)));
  if (instance_norm)
    f->push_back(nn::InstanceNorm2d(nn::InstanceNorm2dOptions(2 * w).affine(true)));
  else
    f->push_back(nn::BatchNorm2d(2 * w));
  f->push_back(leaky());
  f->push_back(nn::Flatten());
  features = register_module("features", f);
  classifier = register_module("classifier", nn::Linear(2 * w * s0 * s0, 1));
}

torch::Tensor DCGANDiscriminatorImpl::features_of(const torch::Tensor& x) {
  return features->forward(x);
}

torch::Tensor DCGANDiscriminatorImpl::forward(const torch::Tensor& x) {
  return classifier(features->forward(x)).view({-1});
}

// --- configuration -----------------------------------------------------------------

result<gan_config> parse_gan_config(const nlohmann::json& hyper) {
  gan_config c;
  spec_reader r(hyper, "hyper");
  r.choice("mode", c.mode, {"dcgan", "wgan-gp"});
  if (auto st = r.done(); !st)
    return st.error();
  const bool wgan = c.mode == "wgan-gp";
  double lr = wgan ? 1e-4 : 2e-4;
  r.number("lr", lr, 0, 10, /*lo_open=*/true);
  c.lr_g = c.lr_d = lr;
  c.n_critic = wgan ? 5 : 1;
  r.number("lr_g", c.lr_g, 0, 10, true);
  r.number("lr_d", c.lr_d, 0, 10, true);
  r.number("beta1", c.beta1, 0, 1);
  r.number("beta2", c.beta2, 0, 1);
  r.integer("n_critic", c.n_critic, 1, 100);
  r.number("gp_lambda", c.gp_lambda, 0, 1e6);
  r.number("label_smoothing", c.label_smoothing, 0, 0.4999);
  r.integer("latent_dim", c.latent_dim, 1, 1024);
  r.integer("width", c.width, 4, 512);
  r.integer("image_size", c.image_size, 0, 256);
  if (auto st = r.done(); !st)
    return st.error();
  if (c.beta1 >= 1 || c.beta2 >= 1)
    return fail(errc::bad_request,
                std::string("hyper.") + (c.beta1 >= 1 ? "beta1" : "beta2") + " must be < 1");
  if (c.image_size != 0 && (c.image_size < 8 || c.image_size % 4 != 0))
    return fail(errc::bad_request,
                "hyper.image_size must be 0 or a multiple of 4 in [8, 256], got " +
                    std::to_string(c.image_size));
  return c;
}

result<std::unique_ptr<Trainer>> make_gan_trainer(const nlohmann::json& spec,
                                                  const data::dataset_info& ds) {
  return gen::make_image_trainer<GanTrainer>(
      spec, ds, "gan", [](const nlohmann::json& h) { return parse_gan_config(h); });
}

// --- the trainer --------------------------------------------------------------------

GanTrainer::GanTrainer(hyper_params h, const nlohmann::json& spec, gan_config cfg,
                       data::dataset_info ds)
    : Trainer(std::move(h), spec), cfg_(std::move(cfg)), ds_(std::move(ds)) {}

GanTrainer::~GanTrainer() = default;

torch::Tensor GanTrainer::fixed_noise() const {
  return state_ ? state_->named_buffers()["fixed_noise"] : torch::Tensor();
}

status GanTrainer::setup() {
  try {
    auto data = gen::load_image_data(ds_, hyper_, "gan", cfg_.image_size);
    if (!data)
      return data.error();
    train_images_ = data->train;
    test_images_ = data->test;
    channels_ = data->channels;
    size_ = data->size;

    g_ = DCGANGenerator(cfg_.latent_dim, channels_, size_, cfg_.width);
    d_ = DCGANDiscriminator(channels_, size_, cfg_.width, cfg_.mode == "wgan-gp");
    dcgan_init(*g_);
    dcgan_init(*d_);
    state_ = std::make_shared<nn::Module>("GanState");
    auto g = gen::step_generator(hyper_.seed, -1, -1, salt_fixed);
    state_->register_buffer("fixed_noise",
                            torch::randn({fixed_noise_count, cfg_.latent_dim}, g, torch::kFloat));
    opt_g_ = gen::make_optimizer(g_->parameters(), hyper_, cfg_.lr_g, cfg_.beta1, cfg_.beta2);
    opt_d_ = gen::make_optimizer(d_->parameters(), hyper_, cfg_.lr_d, cfg_.beta1, cfg_.beta2);
    return {};
  } catch (const c10::Error& e) {
    return fail(errc::internal, "gan setup failed: " + first_line(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return fail(errc::internal, std::string("gan setup failed: ") + e.what());
  }
}

int64_t GanTrainer::steps_per_epoch() const {
  if (!train_images_.defined())
    return 0;
  return std::max<int64_t>(1, train_images_.size(0) / (hyper_.batch_size * cfg_.n_critic));
}

void GanTrainer::train_mode() {
  if (g_)
    g_->train();
  if (d_)
    d_->train();
}

torch::Tensor GanTrainer::d_loss(const torch::Tensor& real_out,
                                 const torch::Tensor& fake_out) const {
  if (cfg_.mode == "wgan-gp")
    return fake_out.mean() - real_out.mean();
  return F::binary_cross_entropy_with_logits(
             real_out, torch::full_like(real_out, 1.0 - cfg_.label_smoothing)) +
         F::binary_cross_entropy_with_logits(fake_out, torch::zeros_like(fake_out));
}

torch::Tensor GanTrainer::gradient_penalty(const torch::Tensor& real, const torch::Tensor& fake,
                                           at::Generator& gen) {
  const int64_t b = real.size(0);
  auto eps = torch::rand({b, 1, 1, 1}, gen, torch::kFloat);
  auto mixed = (eps * real + (1 - eps) * fake.detach()).requires_grad_(true);
  auto out = d_->forward(mixed);
  auto grads = torch::autograd::grad({out}, {mixed}, {torch::ones_like(out)},
                                     /*retain_graph=*/true, /*create_graph=*/true)[0];
  auto norm = (grads.reshape({b, -1}).pow(2).sum(1) + 1e-12).sqrt();
  return (norm - 1).pow(2).mean();
}

metrics GanTrainer::train_step(int64_t epoch, int64_t index) {
  if (perm_epoch_ != epoch || !perm_.defined()) {
    perm_ = epoch_permutation(train_images_.size(0), epoch);
    perm_epoch_ = epoch;
  }
  const bool wgan = cfg_.mode == "wgan-gp";
  auto gen = gen::step_generator(hyper_.seed, epoch, index, salt_step);
  const int64_t bs = hyper_.batch_size;
  double loss_d = 0, d_real = 0, d_fake = 0, gp_sum = 0;
  auto mean_out = [wgan](const torch::Tensor& out) {
    return (wgan ? out : torch::sigmoid(out)).mean().item<double>();
  };

  for (int64_t k = 0; k < cfg_.n_critic; ++k) {
    auto idx = gen::batch_indices(perm_, index * cfg_.n_critic + k, bs);
    auto real = gen::image_batch(train_images_, idx, size_) * 2 - 1;
    auto z = torch::randn({real.size(0), cfg_.latent_dim}, gen, torch::kFloat);
    torch::Tensor fake;
    {
      torch::NoGradGuard no_grad;
      fake = g_->forward(z);
    }
    opt_d_->zero_grad();
    auto out_real = d_->forward(real);
    auto out_fake = d_->forward(fake);
    auto loss = d_loss(out_real, out_fake);
    loss_d += loss.item<double>();
    if (wgan) {
      auto gp = gradient_penalty(real, fake, gen);
      gp_sum += gp.item<double>();
      loss = loss + cfg_.gp_lambda * gp;
    }
    loss.backward();
    clip_and_step(*opt_d_, d_->parameters());
    d_real += mean_out(out_real.detach());
    d_fake += mean_out(out_fake.detach());
  }

  auto z = torch::randn({bs, cfg_.latent_dim}, gen, torch::kFloat);
  opt_g_->zero_grad();
  auto out = d_->forward(g_->forward(z));
  auto loss_g =
      wgan ? -out.mean() : F::binary_cross_entropy_with_logits(out, torch::ones_like(out));
  loss_g.backward();
  clip_and_step(*opt_g_, g_->parameters());

  const double n = static_cast<double>(cfg_.n_critic);
  const double lg = loss_g.item<double>();
  metrics m{{"loss", lg},
            {"loss_g", lg},
            {"loss_d", loss_d / n},
            {"d_real", d_real / n},
            {"d_fake", d_fake / n}};
  if (wgan)
    m["gp"] = gp_sum / n;
  return m;
}

metrics GanTrainer::validate() {
  torch::NoGradGuard no_grad;
  g_->eval();
  d_->eval();
  const bool wgan = cfg_.mode == "wgan-gp";
  const int64_t n = std::min<int64_t>(test_images_.size(0), val_real_limit);
  std::vector<torch::Tensor> outs;
  for (int64_t start = 0; start < n && !cancel_requested(); start += 256) {
    auto idx = torch::arange(start, std::min(n, start + 256), torch::kLong);
    outs.push_back(d_->forward(gen::image_batch(test_images_, idx, size_) * 2 - 1));
  }
  if (outs.empty())
    return {}; // cancelled
  auto out_real = torch::cat(outs);
  auto out_fake = d_->forward(g_->forward(fixed_noise()));
  auto mean_out = [wgan](const torch::Tensor& out) {
    return (wgan ? out : torch::sigmoid(out)).mean().item<double>();
  };
  return {{"val_loss", d_loss(out_real, out_fake).item<double>()},
          {"val_d_real", mean_out(out_real)},
          {"val_d_fake", mean_out(out_fake)}};
}

std::vector<std::string> GanTrainer::epoch_artifacts(int64_t epoch, const std::string& dir) {
  std::vector<std::string> out;
  try {
    torch::NoGradGuard no_grad;
    g_->eval();
    auto samples = (g_->forward(fixed_noise()) + 1) / 2;
    const auto name = "samples_epoch" + std::to_string(epoch) + ".png";
    if (save_image_grid(samples.clamp(0, 1), (fs::path(dir) / name).string(), 8))
      out.push_back(name);
    if (save_module_weights(*g_, (fs::path(dir) / "generator.pt").string()))
      out.push_back("generator.pt");
  } catch (const std::exception&) {
    // Artifacts are best effort: a failed grid leaves the run alone.
  }
  return out;
}

std::map<std::string, std::shared_ptr<nn::Module>> GanTrainer::modules() {
  return {{"generator", g_.ptr()}, {"discriminator", d_.ptr()}, {"state", state_}};
}

std::map<std::string, torch::optim::Optimizer*> GanTrainer::optimizers() {
  return {{"generator", opt_g_.get()}, {"discriminator", opt_d_.get()}};
}

result<exported_model> GanTrainer::export_model(const std::string& dir) {
  // Nothing servable, but the generator's final weights stay with the run
  // (fit() lists every file left in the model directory as an artifact).
  if (g_) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (auto st = save_module_weights(*g_, (fs::path(dir) / "generator.pt").string()); !st)
      return st.error();
  }
  return fail(errc::unprocessable, "a GAN's generator is not an embedding model "
                                   "(its weights are saved as generator.pt)");
}

} // namespace rookery::train

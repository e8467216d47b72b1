#include "trainers/autoencoder_trainer.hpp"

#include <filesystem>

#include "datasets/datasets.hpp"
#include "models/state_dict.hpp"
#include "models/zoo/autoencoder.hpp"
#include "models/zoo/zoo.hpp"
#include "trainers/generative_common.hpp"

namespace rookery::train {

namespace fs = std::filesystem;
namespace F = torch::nn::functional;

namespace {

constexpr int64_t fixed_image_count = 8; // reconstructions grid: one row of originals
constexpr int64_t fixed_code_count = 32; // samples grid: 4 rows of 8
constexpr uint64_t salt_noise = 0x41450001;
constexpr uint64_t salt_fixed = 0x41450002;

std::string first_line(std::string s) {
  auto nl = s.find('\n');
  if (nl != std::string::npos)
    s.resize(nl);
  return s;
}

} // namespace

struct AutoencoderTrainer::loss_terms {
  torch::Tensor loss, recon, kl; // kl undefined for the plain AE
  torch::Tensor reconstruction;  // images in [0, 1]
};

result<autoencoder_config> parse_autoencoder_config(const nlohmann::json& hyper) {
  autoencoder_config c;
  spec_reader r(hyper, "hyper");
  r.choice("variant", c.variant, {"ae", "vae"});
  r.integer("latent_dim", c.latent_dim, 1, 4096);
  r.number("beta", c.beta, 0, 1e6);
  r.choice("loss", c.loss, {"bce", "mse"});
  r.integer("image_size", c.image_size, 0, 256);
  r.number("width_mult", c.width_mult, 0, 8, /*lo_open=*/true);
  if (auto st = r.done(); !st)
    return st.error();
  if (c.image_size != 0 && (c.image_size < 8 || c.image_size % 4 != 0))
    return fail(errc::bad_request,
                "hyper.image_size must be 0 or a multiple of 4 in [8, 256], got " +
                    std::to_string(c.image_size));
  return c;
}

result<std::unique_ptr<Trainer>> make_autoencoder_trainer(const nlohmann::json& spec,
                                                          const data::dataset_info& ds) {
  return gen::make_image_trainer<AutoencoderTrainer>(
      spec, ds, "autoencoder", [](const nlohmann::json& h) { return parse_autoencoder_config(h); });
}

AutoencoderTrainer::AutoencoderTrainer(hyper_params h, const nlohmann::json& spec,
                                       autoencoder_config cfg, data::dataset_info ds)
    : Trainer(std::move(h), spec), cfg_(std::move(cfg)), ds_(std::move(ds)) {}

AutoencoderTrainer::~AutoencoderTrainer() = default;

status AutoencoderTrainer::setup() {
  try {
    auto data = gen::load_image_data(ds_, hyper_, "autoencoder", cfg_.image_size);
    if (!data)
      return data.error();
    train_images_ = data->train;
    test_images_ = data->test;
    channels_ = data->channels;
    size_ = data->size;

    zoo::model_options o;
    o.in_channels = channels_;
    o.image_size = size_;
    o.latent_dim = cfg_.latent_dim;
    o.width_mult = cfg_.width_mult;
    auto net = zoo::create_model(cfg_.variant == "vae" ? "conv_vae" : "conv_ae", o);
    if (!net)
      return net.error();
    model_ = std::dynamic_pointer_cast<zoo::ConvAutoencoderImpl>(net.value());
    if (!model_)
      return fail(errc::internal, "the zoo's autoencoder is not a ConvAutoencoderImpl");

    // Fixed images and prior codes for the artifacts, chosen once from the seed.
    state_ = std::make_shared<torch::nn::Module>("AutoencoderState");
    const int64_t k = std::min<int64_t>(fixed_image_count, test_images_.size(0));
    state_->register_buffer("fixed_images",
                            gen::image_batch(test_images_, torch::arange(k, torch::kLong), size_));
    auto g = gen::step_generator(hyper_.seed, -1, -1, salt_fixed);
    state_->register_buffer("fixed_codes",
                            torch::randn({fixed_code_count, cfg_.latent_dim}, g, torch::kFloat));

    opt_ = gen::make_optimizer(model_->parameters(), hyper_, hyper_.lr, 0.9, 0.999);
    return {};
  } catch (const c10::Error& e) {
    return fail(errc::internal,
                "autoencoder setup failed: " + first_line(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return fail(errc::internal, std::string("autoencoder setup failed: ") + e.what());
  }
}

int64_t AutoencoderTrainer::steps_per_epoch() const {
  if (!train_images_.defined())
    return 0;
  return std::max<int64_t>(1, train_images_.size(0) / hyper_.batch_size);
}

void AutoencoderTrainer::train_mode() {
  if (model_)
    model_->train();
}

AutoencoderTrainer::loss_terms AutoencoderTrainer::losses(const torch::Tensor& x,
                                                          const torch::Tensor& eps) {
  loss_terms t;
  auto [mu, logvar] = model_->encode(x);
  auto z = (model_->variational() && eps.defined()) ? model_->reparameterize(mu, logvar, eps) : mu;
  auto logits = model_->decode_logits(z);
  t.reconstruction = torch::sigmoid(logits);
  if (cfg_.loss == "bce")
    t.recon = gen::per_item_mean(F::binary_cross_entropy_with_logits(
        logits, x, F::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kNone)));
  else
    t.recon = gen::per_item_mean((t.reconstruction - x).pow(2));
  t.loss = t.recon;
  if (model_->variational()) {
    t.kl = gen::per_item_mean(-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()));
    t.loss = t.recon + cfg_.beta * t.kl;
  }
  return t;
}

metrics AutoencoderTrainer::train_step(int64_t epoch, int64_t index) {
  if (perm_epoch_ != epoch || !perm_.defined()) {
    perm_ = epoch_permutation(train_images_.size(0), epoch);
    perm_epoch_ = epoch;
  }
  auto idx = gen::batch_indices(perm_, index, hyper_.batch_size);
  auto x = gen::image_batch(train_images_, idx, size_);
  torch::Tensor eps;
  if (model_->variational()) {
    auto g = gen::step_generator(hyper_.seed, epoch, index, salt_noise);
    eps = torch::randn({x.size(0), cfg_.latent_dim}, g, torch::kFloat);
  }
  opt_->zero_grad();
  auto t = losses(x, eps);
  t.loss.backward();
  clip_and_step(*opt_, model_->parameters());
  metrics m{{"loss", t.loss.item<double>()}, {"recon", t.recon.item<double>()}};
  if (t.kl.defined())
    m["kl"] = t.kl.item<double>();
  return m;
}

metrics AutoencoderTrainer::validate() {
  torch::NoGradGuard no_grad;
  model_->eval();
  const int64_t n = test_images_.size(0);
  const int64_t bs = std::max<int64_t>(hyper_.batch_size, 256);
  double loss = 0, kl = 0, sq = 0;
  int64_t seen = 0;
  for (int64_t start = 0; start < n && !cancel_requested(); start += bs) {
    const int64_t end = std::min(n, start + bs);
    auto x = gen::image_batch(test_images_, torch::arange(start, end, torch::kLong), size_);
    auto t = losses(x, torch::Tensor());
    const double b = static_cast<double>(end - start);
    loss += t.loss.item<double>() * b;
    if (t.kl.defined())
      kl += t.kl.item<double>() * b;
    sq += (t.reconstruction - x).pow(2).sum().item<double>();
    seen = end;
  }
  if (seen == 0)
    return {}; // cancelled before the first batch
  const double pixels = static_cast<double>(seen) * channels_ * size_ * size_;
  metrics m{{"val_loss", loss / static_cast<double>(seen)}, {"val_recon", sq / pixels}};
  if (model_->variational())
    m["val_kl"] = kl / static_cast<double>(seen);
  return m;
}

std::vector<std::string> AutoencoderTrainer::epoch_artifacts(int64_t epoch,
                                                             const std::string& dir) {
  std::vector<std::string> out;
  try {
    torch::NoGradGuard no_grad;
    model_->eval();
    auto fixed = state_->named_buffers()["fixed_images"];
    auto rec = model_->decode(model_->encode(fixed).first);
    const auto name = "reconstructions_epoch" + std::to_string(epoch) + ".png";
    if (save_image_grid(torch::cat({fixed, rec}), (fs::path(dir) / name).string(), fixed.size(0)))
      out.push_back(name);
    if (model_->variational()) {
      auto samples = model_->decode(state_->named_buffers()["fixed_codes"]);
      const auto sname = "samples_epoch" + std::to_string(epoch) + ".png";
      if (save_image_grid(samples, (fs::path(dir) / sname).string(), 8))
        out.push_back(sname);
    }
  } catch (const std::exception&) {
    // Artifacts are best effort: a failed grid leaves the run alone.
  }
  return out;
}

std::map<std::string, std::shared_ptr<torch::nn::Module>> AutoencoderTrainer::modules() {
  return {{"model", model_}, {"state", state_}};
}

std::map<std::string, torch::optim::Optimizer*> AutoencoderTrainer::optimizers() {
  return {{"model", opt_.get()}};
}

result<exported_model> AutoencoderTrainer::export_model(const std::string& dir) {
  if (!model_)
    return fail(errc::internal, "export_model before setup");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    return fail(errc::internal, "cannot create " + dir + ": " + ec.message());
  exported_model e;
  e.arch = cfg_.variant == "vae" ? "conv_vae" : "conv_ae";
  e.weights_path = (fs::path(dir) / "weights.pt").string();
  if (auto st = save_module_weights(*model_, e.weights_path); !st)
    return st.error();
  nlohmann::json options{{"in_channels", channels_},
                         {"image_size", size_},
                         {"latent_dim", cfg_.latent_dim},
                         {"width_mult", cfg_.width_mult}};
  e.options_json = options.dump();
  nlohmann::json pre{{"size", size_},
                     {"channels", channels_},
                     {"mean", std::vector<double>(static_cast<size_t>(channels_), 0.0)},
                     {"std", std::vector<double>(static_cast<size_t>(channels_), 1.0)}};
  e.preprocess_json = pre.dump();
  e.dim = static_cast<uint32_t>(cfg_.latent_dim);
  return e;
}

} // namespace rookery::train

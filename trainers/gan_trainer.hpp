// The GAN trainer (spec "trainer": "gan"): a DCGAN generator and
// discriminator for small square images (28x28 Fashion-MNIST, 32x32, any
// multiple of 4 in [8, 256]), 1 or 3 channels, images scaled to [-1, 1].
//
//   generator      main: ConvT(nz, 2w, S/4) BN ReLU  ConvT(2w, w, 4, s2) BN ReLU
//                        ConvT(w, C, 4, s2) Tanh          (z: N x nz, reshaped to N x nz x 1 x 1)
//   discriminator  features: Conv(C, w, 4, s2) LeakyReLU(0.2)
//                            Conv(w, 2w, 4, s2) Norm LeakyReLU(0.2) Flatten
//                  classifier: Linear(2w * (S/4)^2, 1)      (a logit / critic score)
//
// with Norm = BatchNorm2d for "dcgan" and InstanceNorm2d(affine) for
// "wgan-gp" (a critic with a gradient penalty must not mix the samples of a
// batch). Weights start from N(0, 0.02) (norm scales N(1, 0.02)), as in DCGAN.
//
// Hyper-parameters beyond the common ones:
//   mode             "dcgan" (default: BCE on logits) | "wgan-gp" (Wasserstein
//                    critic with gradient penalty)
//   lr_g, lr_d       learning rates (default: hyper.lr when given, else 2e-4
//                    for dcgan and 1e-4 for wgan-gp)
//   beta1, beta2     Adam's betas (default 0.5, 0.999)
//   n_critic         discriminator steps per generator step, 1..100
//                    (default 1 for dcgan, 5 for wgan-gp)
//   gp_lambda        gradient penalty weight (wgan-gp), >= 0 (default 10)
//   label_smoothing  dcgan: real targets are 1 - label_smoothing, in [0, 0.5)
//   latent_dim       size of the noise vector nz, 1..1024 (default 64)
//   width            w above, 4..512 (default 64)
//   image_size       as for the autoencoder (0: the data's own size)
//
// One train_step is n_critic discriminator steps, each on its own real batch
// of the epoch permutation, then one generator step; all noise comes from a
// generator seeded by (seed, epoch, index), so a step is reproducible.
// Metrics: loss (= loss_g), loss_g, loss_d, d_real, d_fake (mean sigmoid
// outputs for dcgan, mean critic scores for wgan-gp; averaged over the
// critic steps), gp (wgan-gp). validate(): the discriminator on (up to 1024)
// test images against a batch generated from the fixed noise, both in eval
// mode: val_loss (the discriminator's loss, without the penalty), val_d_real,
// val_d_fake.
//
// Artifacts per epoch: samples_epoch<N>.png (64 samples from a fixed noise
// batch drawn once from the seed and kept as the buffer "fixed_noise" of the
// "state" module, so checkpoints carry it) and generator.pt (the generator's
// weights in torch.save state_dict format, overwritten every epoch).
//
// export_model: a generator is not an embedding model, so it fails with
// unprocessable after writing <dir>/generator.pt, the run's downloadable result.
#pragma once
#include <memory>
#include <string>

#include <nlohmann/json_fwd.hpp>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include "trainers/trainer.hpp"

namespace rookery::train {

struct gan_config {
  std::string mode = "dcgan"; // dcgan | wgan-gp
  double lr_g = 2e-4, lr_d = 2e-4;
  double beta1 = 0.5, beta2 = 0.999;
  int64_t n_critic = 1;
  double gp_lambda = 10;
  double label_smoothing = 0;
  int64_t latent_dim = 64;
  int64_t width = 64;
  int64_t image_size = 0;
};

/// Reads the GAN keys of a "hyper" object (bad_request naming the key);
/// defaults that depend on the mode are resolved here.
result<gan_config> parse_gan_config(const nlohmann::json& hyper);

/// The GAN trainer for `spec` on `ds`: checks the hyper-parameters and the
/// data set kind; loads nothing (setup() does).
result<std::unique_ptr<Trainer>> make_gan_trainer(const nlohmann::json& spec,
                                                  const data::dataset_info& ds);

struct DCGANGeneratorImpl : torch::nn::Module {
  DCGANGeneratorImpl(int64_t latent_dim, int64_t channels, int64_t image_size, int64_t width);
  /// Images (N, C, S, S) in [-1, 1] from noise (N, latent_dim).
  torch::Tensor forward(const torch::Tensor& z);
  int64_t latent_dim;
  torch::nn::Sequential main{nullptr};
};
TORCH_MODULE(DCGANGenerator);

struct DCGANDiscriminatorImpl : torch::nn::Module {
  /// instance_norm: InstanceNorm2d (wgan-gp) instead of BatchNorm2d.
  DCGANDiscriminatorImpl(int64_t channels, int64_t image_size, int64_t width, bool instance_norm);
  /// Logits / critic scores (N).
  torch::Tensor forward(const torch::Tensor& x);
  /// The penultimate features (N, 2w * (S/4)^2).
  torch::Tensor features_of(const torch::Tensor& x);
  torch::nn::Sequential features{nullptr};
  torch::nn::Linear classifier{nullptr};
};
TORCH_MODULE(DCGANDiscriminator);

class GanTrainer : public Trainer {
public:
  GanTrainer(hyper_params h, const nlohmann::json& spec, gan_config cfg, data::dataset_info ds);
  ~GanTrainer() override;

  std::string kind() const override { return "gan"; }
  status setup() override;
  int64_t steps_per_epoch() const override;
  void train_mode() override;
  metrics train_step(int64_t epoch, int64_t index) override;
  metrics validate() override;
  std::vector<std::string> epoch_artifacts(int64_t epoch, const std::string& dir) override;
  std::map<std::string, std::shared_ptr<torch::nn::Module>> modules() override;
  std::map<std::string, torch::optim::Optimizer*> optimizers() override;
  result<exported_model> export_model(const std::string& dir) override;

  const gan_config& config() const { return cfg_; }
  DCGANGenerator generator() const { return g_; }
  DCGANDiscriminator discriminator() const { return d_; }
  /// The fixed noise of the sample grids (after setup()).
  torch::Tensor fixed_noise() const;

private:
  // The discriminator's loss on real and fake logits (no penalty).
  torch::Tensor d_loss(const torch::Tensor& real_out, const torch::Tensor& fake_out) const;
  torch::Tensor gradient_penalty(const torch::Tensor& real, const torch::Tensor& fake,
                                 at::Generator& gen);

  gan_config cfg_;
  data::dataset_info ds_;
  torch::Tensor train_images_, test_images_; // uint8 N x C x H x W
  int64_t size_ = 0, channels_ = 0;
  DCGANGenerator g_{nullptr};
  DCGANDiscriminator d_{nullptr};
  std::shared_ptr<torch::nn::Module> state_; // buffer fixed_noise
  std::unique_ptr<torch::optim::Optimizer> opt_g_, opt_d_;
  torch::Tensor perm_;
  int64_t perm_epoch_ = -1;
};

} // namespace rookery::train

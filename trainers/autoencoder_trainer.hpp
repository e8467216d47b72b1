// The autoencoder trainer (spec "trainer": "autoencoder"): a convolutional
// autoencoder (zoo conv_ae) or variational autoencoder (zoo conv_vae) on an
// image data set, images fed as floats in [0, 1] (no normalisation).
//
// Hyper-parameters beyond the common ones (trainers/trainer.hpp):
//   variant     "ae" (default) | "vae"
//   latent_dim  size of the code, 1..4096 (default 32): the embedding dimension
//   beta        weight of the KL term (VAE), >= 0 (default 1)
//   loss        reconstruction loss: "bce" (default, on the decoder's logits) | "mse"
//   image_size  side the images are resized to (0: the data's own size, which
//               must then be square and a multiple of 4 in [8, 256])
//   width_mult  channel width multiplier of the model (default 1: 32 and 64 channels)
//
// Losses are summed over the pixels (and latent dimensions) of an image and
// averaged over the batch: loss = recon + beta * kl, the negative ELBO for a
// VAE with BCE. Metrics per step: loss, recon, kl (VAE). validate() on the
// test split: val_loss (the same formula, with the mean code), val_recon
// (per-pixel MSE of the mean reconstruction, comparable across losses),
// val_kl (VAE).
//
// Artifacts per epoch: reconstructions_epoch<N>.png (top row 8 fixed test
// images, bottom row their reconstructions) and, for a VAE,
// samples_epoch<N>.png (decoded from 32 fixed prior codes). The fixed codes
// are a buffer of the "state" module, so checkpoints keep them.
//
// export_model writes <dir>/weights.pt (save_module_weights: torch.save
// format, zoo names) for zoo arch conv_ae / conv_vae with options_json
// {"in_channels","image_size","latent_dim","width_mult"} and preprocess_json
// {"size","channels","mean":[0..],"std":[1..]}; dim = latent_dim.
#pragma once
#include <memory>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "trainers/trainer.hpp"

namespace rookery::zoo {
class ConvAutoencoderImpl;
}

namespace rookery::train {

struct autoencoder_config {
  std::string variant = "ae"; // ae | vae
  int64_t latent_dim = 32;
  double beta = 1.0;
  std::string loss = "bce";   // bce | mse
  int64_t image_size = 0;     // 0: the data's size
  double width_mult = 1.0;
};

/// Reads the autoencoder keys of a "hyper" object (bad_request naming the key).
result<autoencoder_config> parse_autoencoder_config(const nlohmann::json& hyper);

/// The autoencoder trainer for `spec` on `ds`: checks the hyper-parameters
/// and the data set kind; loads nothing (setup() does).
result<std::unique_ptr<Trainer>> make_autoencoder_trainer(const nlohmann::json& spec,
                                                          const data::dataset_info& ds);

class AutoencoderTrainer : public Trainer {
public:
  AutoencoderTrainer(hyper_params h, const nlohmann::json& spec, autoencoder_config cfg,
                     data::dataset_info ds);
  ~AutoencoderTrainer() override;

  std::string kind() const override { return "autoencoder"; }
  status setup() override;
  int64_t steps_per_epoch() const override;
  void train_mode() override;
  metrics train_step(int64_t epoch, int64_t index) override;
  metrics validate() override;
  std::vector<std::string> epoch_artifacts(int64_t epoch, const std::string& dir) override;
  std::map<std::string, std::shared_ptr<torch::nn::Module>> modules() override;
  std::map<std::string, torch::optim::Optimizer*> optimizers() override;
  result<exported_model> export_model(const std::string& dir) override;

  const autoencoder_config& config() const { return cfg_; }
  /// The model (after setup()).
  std::shared_ptr<zoo::ConvAutoencoderImpl> model() const { return model_; }

private:
  struct loss_terms;
  // eps: the VAE's noise (undefined: decode the mean code).
  loss_terms losses(const torch::Tensor& x, const torch::Tensor& eps);

  autoencoder_config cfg_;
  data::dataset_info ds_;
  torch::Tensor train_images_, test_images_; // uint8 N x C x H x W
  int64_t size_ = 0, channels_ = 0;
  std::shared_ptr<zoo::ConvAutoencoderImpl> model_;
  std::shared_ptr<torch::nn::Module> state_; // buffers: fixed_images, fixed_codes
  std::unique_ptr<torch::optim::Optimizer> opt_;
  torch::Tensor perm_; // the permutation of epoch perm_epoch_
  int64_t perm_epoch_ = -1;
};

} // namespace rookery::train

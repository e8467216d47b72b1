// Convolutional autoencoders, Rookery's own architectures (custom zoo entries,
// built by the autoencoder trainer, servable as embedding models):
//
//   conv_ae   encoder: Conv(C,w,4,s2) ReLU Conv(w,2w,4,s2) ReLU Flatten Linear(2w*(S/4)^2, L)
//   conv_vae  encoder: the same without the Linear; fc_mu, fc_logvar: Linear(2w*(S/4)^2, L)
//   decoder (both): Linear(L, 2w*(S/4)^2) ReLU Unflatten ConvT(2w,w,4,s2) ReLU ConvT(w,C,4,s2)
//
// with C = model_options::in_channels, S = model_options::image_size (0: 28;
// any multiple of 4 from 8 to 256, so 28 and 32 both work),
// L = model_options::latent_dim (0: 32) and w = round(32 * width_mult).
// The decoder yields logits; decode() applies the sigmoid, so reconstructions
// are images in [0, 1] like the input the trainer feeds (no normalisation).
//
// As a ZooModelImpl: forward_features(x) is the latent mean (the embedding,
// num_features() = L), forward(x) the reconstruction of the mean code
// flattened to (N, C*S*S); there is no classifier (reset_classifier accepts
// any count and changes nothing). backbone() is the encoder (and fc_mu), head()
// the decoder. Module names: encoder.{0,2,5}, fc_mu, fc_logvar,
// decoder.{0,3,5}.
#pragma once
#include <utility>

#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>
#include <torch/types.h>

#include "models/zoo/zoo.hpp"

namespace rookery::zoo {

struct ConvAutoencoderOptions {
  int64_t in_channels = 1;
  int64_t image_size = 28;
  int64_t latent_dim = 32;
  int64_t width = 32; // channels of the first conv; the second has twice as many
  bool variational = false;
};

class ConvAutoencoderImpl : public ZooModelImpl {
public:
  explicit ConvAutoencoderImpl(const ConvAutoencoderOptions& o = {});

  /// Reconstruction of the mean code, flattened: (N, C*S*S) in [0, 1].
  torch::Tensor forward(torch::Tensor x) override;
  /// The latent mean (N, latent_dim).
  torch::Tensor forward_features(torch::Tensor x) override;
  /// The encoder's conv maps after each ReLU (strides 2 and 4).
  std::vector<torch::Tensor> forward_stages(torch::Tensor x) override;
  int64_t num_features() const override { return opt_.latent_dim; }
  void reset_classifier(int64_t num_classes) override;
  std::vector<std::shared_ptr<torch::nn::Module>> backbone() override;
  std::shared_ptr<torch::nn::Module> head() override;

  /// (mu, logvar); logvar is undefined for the plain autoencoder.
  std::pair<torch::Tensor, torch::Tensor> encode(const torch::Tensor& x);
  /// mu + eps * exp(logvar / 2) with eps ~ N(0, I) from the global generator.
  torch::Tensor reparameterize(const torch::Tensor& mu, const torch::Tensor& logvar);
  /// The same with the caller's noise (same shape as mu): reproducible steps.
  torch::Tensor reparameterize(const torch::Tensor& mu, const torch::Tensor& logvar,
                               const torch::Tensor& eps);
  /// Images (N, C, S, S) in [0, 1] from codes (N, latent_dim).
  torch::Tensor decode(const torch::Tensor& z);
  /// The decoder's logits (what a BCE-with-logits loss wants).
  torch::Tensor decode_logits(const torch::Tensor& z);

  const ConvAutoencoderOptions& options() const { return opt_; }
  bool variational() const { return opt_.variational; }

  torch::nn::Sequential encoder{nullptr};
  torch::nn::Linear fc_mu{nullptr}, fc_logvar{nullptr}; // conv_vae only
  torch::nn::Sequential decoder{nullptr};

private:
  ConvAutoencoderOptions opt_;
};
TORCH_MODULE(ConvAutoencoder);

} // namespace rookery::zoo

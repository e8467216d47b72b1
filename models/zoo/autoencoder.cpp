#include "models/zoo/autoencoder.hpp"

#include <cmath>

#include "models/zoo/families.hpp"

namespace rookery::zoo {

namespace nn = torch::nn;

namespace {

nn::Conv2d down(int64_t in, int64_t out) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, 4).stride(2).padding(1));
}

nn::ConvTranspose2d up(int64_t in, int64_t out) {
  return nn::ConvTranspose2d(nn::ConvTranspose2dOptions(in, out, 4).stride(2).padding(1));
}

} // namespace

ConvAutoencoderImpl::ConvAutoencoderImpl(const ConvAutoencoderOptions& o) : opt_(o) {
  TORCH_CHECK(o.in_channels > 0 && o.in_channels <= 4, "in_channels must be 1..4, got ",
              o.in_channels);
  TORCH_CHECK(o.image_size >= 8 && o.image_size <= 256 && o.image_size % 4 == 0,
              "image_size must be a multiple of 4 in [8, 256], got ", o.image_size);
  TORCH_CHECK(o.latent_dim > 0 && o.latent_dim <= 4096, "latent_dim must be 1..4096, got ",
              o.latent_dim);
  TORCH_CHECK(o.width > 0 && o.width <= 1024, "width must be 1..1024, got ", o.width);
  const int64_t w = o.width, s = o.image_size / 4, flat = 2 * w * s * s;
  auto enc = nn::Sequential(down(o.in_channels, w), nn::ReLU(), down(w, 2 * w), nn::ReLU(),
                            nn::Flatten());
  if (!o.variational)
    enc->push_back(nn::Linear(flat, o.latent_dim));
  encoder = register_module("encoder", enc);
  if (o.variational) {
    fc_mu = register_module("fc_mu", nn::Linear(flat, o.latent_dim));
    fc_logvar = register_module("fc_logvar", nn::Linear(flat, o.latent_dim));
  }
  decoder = register_module(
    "decoder", nn::Sequential(nn::Linear(o.latent_dim, flat), nn::ReLU(),
                              nn::Unflatten(nn::UnflattenOptions(1, {2 * w, s, s})),
                              up(2 * w, w), nn::ReLU(), up(w, o.in_channels)));
}

std::pair<torch::Tensor, torch::Tensor> ConvAutoencoderImpl::encode(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == opt_.in_channels && x.size(2) == opt_.image_size
                && x.size(3) == opt_.image_size,
              "expected input (N, ", opt_.in_channels, ", ", opt_.image_size, ", ",
              opt_.image_size, "), got ", x.sizes());
  auto h = encoder->forward(x);
  if (!opt_.variational)
    return {h, torch::Tensor()};
  return {fc_mu(h), fc_logvar(h)};
}

torch::Tensor ConvAutoencoderImpl::reparameterize(const torch::Tensor& mu,
                                                  const torch::Tensor& logvar) {
  return reparameterize(mu, logvar, torch::randn_like(mu));
}

torch::Tensor ConvAutoencoderImpl::reparameterize(const torch::Tensor& mu,
                                                  const torch::Tensor& logvar,
                                                  const torch::Tensor& eps) {
  TORCH_CHECK(logvar.defined(), "reparameterize needs a log-variance (conv_vae)");
  TORCH_CHECK(eps.sizes() == mu.sizes(), "noise of shape ", eps.sizes(), " for codes of shape ",
              mu.sizes());
  return mu + eps * torch::exp(0.5 * logvar);
}

torch::Tensor ConvAutoencoderImpl::decode_logits(const torch::Tensor& z) {
  TORCH_CHECK(z.dim() == 2 && z.size(1) == opt_.latent_dim, "expected codes (N, ",
              opt_.latent_dim, "), got ", z.sizes());
  return decoder->forward(z);
}

torch::Tensor ConvAutoencoderImpl::decode(const torch::Tensor& z) {
  return torch::sigmoid(decode_logits(z));
}

torch::Tensor ConvAutoencoderImpl::forward_features(torch::Tensor x) {
  return encode(x).first;
}

torch::Tensor ConvAutoencoderImpl::forward(torch::Tensor x) {
  return torch::flatten(decode(forward_features(x)), 1);
}

std::vector<torch::Tensor> ConvAutoencoderImpl::forward_stages(torch::Tensor x) {
  std::vector<torch::Tensor> out;
  for (size_t i : {0, 2}) {
    x = torch::relu(encoder->ptr<nn::Conv2dImpl>(i)->forward(x));
    out.push_back(x);
  }
  return out;
}

void ConvAutoencoderImpl::reset_classifier(int64_t num_classes) {
  TORCH_CHECK(num_classes >= 0, "num_classes must be >= 0");
  // An autoencoder has no classifier: forward() stays the reconstruction.
}

std::vector<std::shared_ptr<nn::Module>> ConvAutoencoderImpl::backbone() {
  if (opt_.variational)
    return {encoder.ptr(), fc_mu.ptr()};
  return {encoder.ptr()};
}

std::shared_ptr<nn::Module> ConvAutoencoderImpl::head() {
  return decoder.ptr();
}

void register_autoencoder_models() {
  for (bool variational : {false, true}) {
    model_entry e;
    e.name = variational ? "conv_vae" : "conv_ae";
    e.family = "autoencoder";
    e.default_size = 28;
    e.custom = true;
    e.make = [variational](const model_options& o) -> std::shared_ptr<ZooModelImpl> {
      TORCH_CHECK(o.dropout < 0, "autoencoders have no dropout");
      TORCH_CHECK(o.drop_path == 0, "autoencoders have no stochastic depth (drop_path)");
      TORCH_CHECK(o.width_mult > 0, "width_mult must be positive, got ", o.width_mult);
      TORCH_CHECK(o.latent_dim >= 0, "latent_dim must be >= 0, got ", o.latent_dim);
      ConvAutoencoderOptions a;
      a.in_channels = o.in_channels;
      a.image_size = o.image_size > 0 ? o.image_size : 28;
      a.latent_dim = o.latent_dim > 0 ? o.latent_dim : 32;
      a.width = std::max<int64_t>(1, std::llround(32 * o.width_mult));
      a.variational = variational;
      return ConvAutoencoder(a).ptr();
    };
    register_model(std::move(e));
  }
}

} // namespace rookery::zoo

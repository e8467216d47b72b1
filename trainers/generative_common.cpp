#include "trainers/generative_common.hpp"

#include "datasets/datasets.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>

namespace rookery::train::gen {

status check_image_dataset(const data::dataset_info& ds, const std::string& trainer) {
  if (ds.kind != "image_classification")
    return fail(errc::bad_request, "the " + trainer + " trainer needs an image data set; "
                                     + ds.name + " is " + (ds.kind.empty() ? "of unknown kind" : ds.kind));
  if (!ds.available)
    return fail(errc::not_found, "data set " + ds.name + " is not available"
                                   + (ds.status.empty() ? std::string() : ": " + ds.status));
  if (ds.item_shape.size() == 3 && ds.item_shape[0] != 1 && ds.item_shape[0] != 3)
    return fail(errc::bad_request, "the " + trainer + " trainer needs 1- or 3-channel images; "
                                     + ds.name + " has " + std::to_string(ds.item_shape[0]));
  return {};
}

result<int64_t> resolve_image_size(int64_t requested, int64_t h, int64_t w) {
  auto fits = [](int64_t s) { return s >= 8 && s <= 256 && s % 4 == 0; };
  if (requested > 0) {
    if (!fits(requested))
      return fail(errc::bad_request, "hyper.image_size must be a multiple of 4 in [8, 256], got "
                                       + std::to_string(requested));
    return requested;
  }
  if (h == w && fits(h))
    return h;
  return fail(errc::bad_request, "images of " + std::to_string(h) + "x" + std::to_string(w)
                                   + " need hyper.image_size (a multiple of 4 in [8, 256])");
}

torch::Tensor batch_indices(const torch::Tensor& perm, int64_t j, int64_t batch) {
  const int64_t n = perm.size(0);
  auto pos = torch::arange(j * batch, (j + 1) * batch, torch::kLong).remainder(n);
  return perm.index_select(0, pos);
}

torch::Tensor image_batch(const torch::Tensor& images, const torch::Tensor& idx, int64_t size) {
  auto x = images.index_select(0, idx).to(torch::kFloat).div_(255.0);
  if (x.size(2) != size || x.size(3) != size)
    x = torch::nn::functional::interpolate(
          x, torch::nn::functional::InterpolateFuncOptions()
               .size(std::vector<int64_t>{size, size})
               .mode(torch::kBilinear)
               .align_corners(false)
               .antialias(true))
          .clamp_(0.0, 1.0);
  return x;
}

at::Generator step_generator(uint64_t seed, int64_t epoch, int64_t index, uint64_t salt) {
  // splitmix64 over the fields: nearby (epoch, index) pairs get unrelated streams.
  auto mix = [](uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  uint64_t s = mix(seed);
  s = mix(s ^ static_cast<uint64_t>(epoch));
  s = mix(s ^ static_cast<uint64_t>(index));
  s = mix(s ^ salt);
  return at::make_generator<at::CPUGeneratorImpl>(s);
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::vector<torch::Tensor>& params,
                                                        const hyper_params& h, double lr,
                                                        double beta1, double beta2) {
  if (h.optimizer == "sgd")
    return std::make_unique<torch::optim::SGD>(
      params, torch::optim::SGDOptions(lr).momentum(h.momentum).weight_decay(h.weight_decay));
  if (h.optimizer == "adamw")
    return std::make_unique<torch::optim::AdamW>(
      params, torch::optim::AdamWOptions(lr).betas({beta1, beta2}).weight_decay(h.weight_decay));
  return std::make_unique<torch::optim::Adam>(
    params, torch::optim::AdamOptions(lr).betas({beta1, beta2}).weight_decay(h.weight_decay));
}

torch::Tensor per_item_mean(const torch::Tensor& per_element) {
  return per_element.reshape({per_element.size(0), -1}).sum(1).mean();
}

result<image_data> load_image_data(const data::dataset_info& ds, const hyper_params& h,
                                   const std::string& trainer, int64_t requested_size) {
  auto splits = data::load_images(ds, {h.limit_train, h.limit_test, h.seed});
  if (!splits)
    return splits.error();
  image_data out;
  out.train = splits->train.images;
  out.test = splits->test.images;
  if (!out.train.defined() || out.train.size(0) == 0)
    return fail(errc::bad_request, "data set " + ds.name + " has no training images");
  if (!out.test.defined() || out.test.size(0) == 0)
    return fail(errc::bad_request, "data set " + ds.name + " has no test images");
  if (out.train.dim() != 4 || out.train.scalar_type() != torch::kByte)
    return fail(errc::internal, "data set " + ds.name + " did not load as uint8 N x C x H x W");
  out.channels = out.train.size(1);
  if (out.channels != 1 && out.channels != 3)
    return fail(errc::bad_request, "the " + trainer + " trainer needs 1- or 3-channel images, got "
                                     + std::to_string(out.channels));
  auto size = resolve_image_size(requested_size, out.train.size(2), out.train.size(3));
  if (!size)
    return size.error();
  out.size = size.value();
  return out;
}

} // namespace rookery::train::gen

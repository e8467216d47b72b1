// Helpers shared by the generative trainers (GanTrainer, AutoencoderTrainer):
// reading their own hyper-parameter keys with bad_request naming the key,
// image batches from the uint8 data set, per-step random generators, and
// optimizer construction. Internal to trainers/.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Generator.h>
#include <nlohmann/json_fwd.hpp>
#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include "common/result.hpp"
#include "datasets/registry.hpp"
#include "trainers/spec.hpp"
#include "trainers/trainer.hpp"

namespace rookery::train::gen {

/// bad_request unless `ds` is an available image_classification data set of
/// 1- or 3-channel images.
status check_image_dataset(const data::dataset_info& ds, const std::string& trainer);

/// The square side the model trains on: `requested` (> 0) or the data's own
/// size when square and a multiple of 4 in [8, 256]; bad_request otherwise.
result<int64_t> resolve_image_size(int64_t requested, int64_t h, int64_t w);

/// The factory both generative trainers share: the common hyper-parameters,
/// the trainer's own (`parse(hyper) -> result<Config>`), an image data set
/// whose size fits, then `TrainerT(hyper_params, spec, Config, ds)`.
template <class TrainerT, class Parse>
result<std::unique_ptr<Trainer>> make_image_trainer(const nlohmann::json& spec,
                                                    const data::dataset_info& ds,
                                                    const std::string& name, Parse parse) {
  auto hyper = spec_object(spec, "hyper");
  if (!hyper)
    return hyper.error();
  auto h = parse_hyper(*hyper.value());
  if (!h)
    return h.error();
  auto cfg = parse(*hyper.value());
  if (!cfg)
    return cfg.error();
  if (auto st = check_image_dataset(ds, name); !st)
    return st.error();
  if (ds.item_shape.size() == 3) {
    auto size = resolve_image_size(cfg->image_size, ds.item_shape[1], ds.item_shape[2]);
    if (!size)
      return size.error();
  }
  return std::unique_ptr<Trainer>(std::make_unique<TrainerT>(h.value(), spec, cfg.value(), ds));
}

/// The images a generative trainer trains on: both splits as uint8
/// N x C x H x W, their channel count (1 or 3) and the square side to train at.
struct image_data {
  torch::Tensor train, test;
  int64_t channels = 0, size = 0;
};

/// Loads `ds` with the run's limits and checks it suits `trainer`: non-empty
/// splits, 1 or 3 channels, a size resolve_image_size() accepts for
/// `requested_size`. bad_request / the loader's errors otherwise.
result<image_data> load_image_data(const data::dataset_info& ds, const hyper_params& h,
                                   const std::string& trainer, int64_t requested_size);

/// B indices of the epoch permutation `perm`, from position j * B on,
/// wrapping around when the data set is smaller than the batches need.
torch::Tensor batch_indices(const torch::Tensor& perm, int64_t j, int64_t batch);

/// Float images (B, C, size, size) in [0, 1] of `images` (uint8 N x C x H x W)
/// at `idx`, resized (bilinear, antialiased) when the data's size differs.
torch::Tensor image_batch(const torch::Tensor& images, const torch::Tensor& idx, int64_t size);

/// A CPU generator seeded by (seed, epoch, index, salt): the noise of one step
/// as a pure function of its position in the run.
at::Generator step_generator(uint64_t seed, int64_t epoch, int64_t index, uint64_t salt);

/// The optimizer named by hyper.optimizer (adam | adamw | sgd) at `lr`, with
/// hyper.weight_decay and hyper.momentum; Adam's betas from the arguments.
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::vector<torch::Tensor>& params,
                                                        const hyper_params& h, double lr,
                                                        double beta1, double beta2);

/// Sum over the non-batch dimensions, mean over the batch.
torch::Tensor per_item_mean(const torch::Tensor& per_element);

} // namespace rookery::train::gen

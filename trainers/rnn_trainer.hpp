// The RNN trainer ("trainer": "rnn") on text data sets (fortunes): a
// character-level (byte) embedding -> LSTM or GRU -> linear head, for two tasks
// chosen by hyper.task:
//
//  - "classify": a text's class (a fortune's category) from its bytes. Texts
//    are truncated to hyper.max_len bytes, batched in the seeded epoch order,
//    padded and packed (the true lengths), and the last layer's final hidden
//    state (both directions when bidirectional) feeds the head.
//  - "lm": a byte-level language model trained with truncated BPTT. The
//    training texts (in a seeded order per epoch, each followed by the fortune
//    delimiter "%\n") form one byte stream, split into batch_size parallel
//    streams; step i reads bytes [i*bptt, (i+1)*bptt] of every stream. The
//    hidden state is carried from step to step, detached between chunks, and
//    reset at the start of each epoch (one epoch = one pass over the stream).
//    It is part of the training state: modules() returns it as the buffers of
//    a small module ("state"), so checkpoints hold it and a resume continues
//    with the identical state.
//
// Extra hyper keys (common ones: trainers/trainer.hpp):
//   task "lm" | "classify" (default "lm"), cell "lstm" | "gru" ("lstm"),
//   hidden (128), layers (1), embed_dim (64), dropout (0, in [0,1)),
//   bidirectional (false; classify only), max_len (256, classify),
//   bptt (64, lm; >= 2), classes ([] = all; a subset of category names),
//   sample_chars (400), sample_prefix ("" = start of a fortune),
//   sample_temperature (0.8): the per-epoch sample of the lm task.
// clip_grad_norm defaults to 1.0 for this trainer when the job does not set
// it (RNN gradients explode without clipping); set 0 to switch clipping off.
//
// Runs on the CPU. There is nothing to serve from an RNN in an image embedding
// pipeline: export_model() writes model.pt (the CharRnn weights, torch::save)
// and rnn.json (architecture, vocabulary, classes) for download, and then
// returns unprocessable.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>
#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/rnn.h>
#include <torch/nn/pimpl.h>
#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include "common/result.hpp"
#include "datasets/datasets.hpp"
#include "datasets/registry.hpp"
#include "trainers/trainer.hpp"

namespace rookery::train {

struct CharRnnOptions {
  TORCH_ARG(int64_t, vocab) = 256;      // input bytes
  TORCH_ARG(int64_t, embed_dim) = 64;
  TORCH_ARG(std::string, cell) = "lstm"; // lstm | gru
  TORCH_ARG(int64_t, hidden) = 128;
  TORCH_ARG(int64_t, layers) = 1;
  TORCH_ARG(double, dropout) = 0;       // between RNN layers and before the head
  TORCH_ARG(bool, bidirectional) = false;
  TORCH_ARG(int64_t, outputs) = 256;    // head outputs: vocab (lm) or classes (classify)
};

/// The recurrent state: h (layers*directions x B x hidden), and c for LSTMs
/// (undefined for GRUs).
struct CharRnnState {
  torch::Tensor h, c;
  CharRnnState detach() const;
};

/// Byte embedding ("embed") -> LSTM/GRU, batch first ("rnn") -> dropout ->
/// linear ("head").
class CharRnnImpl : public torch::nn::Module {
public:
  explicit CharRnnImpl(CharRnnOptions options = {});

  /// Zero state for a batch of `batch` sequences.
  CharRnnState initial_state(int64_t batch) const;
  /// x: int64 B x T byte codes; returns the head's logits for every position
  /// (B x T x outputs) and the state after the last position.
  std::pair<torch::Tensor, CharRnnState> forward(const torch::Tensor& x, const CharRnnState& state);
  /// x: int64 B x T, padded; lengths: int64 B (each >= 1). Logits B x outputs
  /// from the last layer's final hidden state of each sequence (packed, so the
  /// padding never enters the RNN).
  torch::Tensor classify(const torch::Tensor& x, const torch::Tensor& lengths);

  const CharRnnOptions& options() const { return options_; }

private:
  std::pair<torch::Tensor, CharRnnState> run_rnn(const torch::Tensor& emb,
                                                 const CharRnnState& state);

  CharRnnOptions options_;
  torch::nn::Embedding embed_{nullptr};
  torch::nn::LSTM lstm_{nullptr};
  torch::nn::GRU gru_{nullptr};
  torch::nn::Dropout drop_{nullptr};
  torch::nn::Linear head_{nullptr};
};
TORCH_MODULE(CharRnn);

/// Generates `n_chars` bytes after `prefix` (not included in the result):
/// softmax(logits / temperature) sampled with a generator seeded by `seed`
/// (temperature <= 0: greedy). An empty prefix starts like a new fortune
/// (after the delimiter "%\n"). Leaves the model's train/eval mode as it was.
result<std::string> sample_text(CharRnn& model, const std::string& prefix, int64_t n_chars,
                                double temperature, uint64_t seed);

/// The carried LM state, as buffers so that checkpoints hold it: h, c (zeros
/// of shape {0} for GRUs), and next = {epoch, index} of the step the state is
/// for ({-1, -1}: none).
struct CarriedStateImpl : torch::nn::Module {
  CarriedStateImpl();
  torch::Tensor h, c, next;
};
TORCH_MODULE(CarriedState);

/// The RNN trainer's own hyper-parameters (see the top of this file).
struct rnn_config {
  std::string task = "lm";
  std::string cell = "lstm";
  int64_t hidden = 128;
  int64_t layers = 1;
  int64_t embed_dim = 64;
  double dropout = 0;
  bool bidirectional = false;
  int64_t max_len = 256;
  int64_t bptt = 64;
  std::vector<std::string> classes;
  int64_t sample_chars = 400;
  std::string sample_prefix;
  double sample_temperature = 0.8;
};

/// Reads rnn_config from a "hyper" object (absent keys keep defaults);
/// bad_request naming the key on a wrong type or value.
result<rnn_config> parse_rnn_config(const nlohmann::json& hyper);

class RnnTrainer : public Trainer {
public:
  RnnTrainer(hyper_params h, const nlohmann::json& spec, data::dataset_info ds, rnn_config cfg);

  std::string kind() const override { return "rnn"; }
  status setup() override;
  int64_t steps_per_epoch() const override;
  void train_mode() override;
  metrics train_step(int64_t epoch, int64_t index) override;
  metrics validate() override;
  std::vector<std::string> epoch_artifacts(int64_t epoch, const std::string& dir) override;
  std::map<std::string, std::shared_ptr<torch::nn::Module>> modules() override;
  std::map<std::string, torch::optim::Optimizer*> optimizers() override;
  result<exported_model> export_model(const std::string& dir) override;

  const rnn_config& config() const { return cfg_; }
  /// The model (after setup()).
  CharRnn& model() { return model_; }
  /// Class names of the classify task (after setup()).
  const std::vector<std::string>& classes() const { return classes_; }
  /// Generates text with the current model (see sample_text).
  result<std::string> sample(const std::string& prefix, int64_t n_chars, double temperature,
                             uint64_t seed);
  /// The carried LM state (what the next train_step starts from when it is
  /// the step after the last one).
  CharRnnState carried_state() const;
  /// Forgets the carried LM state: the next step starts from zeros.
  void reset_state();
  /// Bytes in each of the batch_size training streams (lm).
  int64_t stream_len() const { return stream_len_; }

private:
  metrics lm_step(int64_t epoch, int64_t index);
  metrics classify_step(int64_t epoch, int64_t index);
  metrics lm_validate();
  metrics classify_validate();
  void build_train_stream(int64_t epoch);
  std::pair<torch::Tensor, torch::Tensor> encode_batch(const std::vector<std::string>& texts,
                                                       const std::vector<int64_t>& idx,
                                                       int64_t begin, int64_t end) const;

  data::dataset_info ds_;
  rnn_config cfg_;
  data::text_splits data_;
  std::vector<std::string> classes_;
  CharRnn model_{nullptr};
  CarriedState state_{nullptr};
  std::unique_ptr<torch::optim::Optimizer> opt_;
  std::vector<torch::Tensor> params_;
  // lm: the epoch's training streams (uint8 B x stream_len_) and the test text.
  torch::Tensor train_stream_;
  int64_t stream_epoch_ = -1;
  int64_t train_bytes_ = 0;
  int64_t stream_len_ = 0;
  std::string test_text_;
  // classify: the epoch's order.
  torch::Tensor order_;
  int64_t order_epoch_ = -1;
};

/// The RNN trainer for `spec` on `ds`: checks the hyper-parameters and the
/// data set kind without loading data. Errors: bad_request naming the key
/// (unknown task or cell, hidden <= 0, bptt <= 1, unknown class, wrong
/// dataset kind, ...).
result<std::unique_ptr<Trainer>> make_rnn_trainer(const nlohmann::json& spec,
                                                  const data::dataset_info& ds);

} // namespace rookery::train

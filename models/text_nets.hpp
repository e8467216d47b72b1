// Text models for the ULMFiT recipe (Howard and Ruder 2018, "Universal
// Language Model Fine-tuning for Text Classification"):
//
//   subword_tokenizer  byte-level BPE (Sennrich et al. 2016) trained on a
//                      corpus; ids 0 pad, 1 unk (unused: every byte has an
//                      id), 2 bos, 3 eos, 4..259 the bytes, then the merges.
//                      Our own, not SentencePiece: Debian's libsentencepiece0
//                      exports the protobuf-lite it bundles, which interposes
//                      on LibTorch's libprotobuf and crashes the process at
//                      load (docs/ARCHITECTURE.md).
//   AwdLstm            Merity et al. 2017's AWD-LSTM encoder, with fastai's
//                      module names: an embedding ("encoder") with embedding
//                      dropout (whole words dropped), variational dropout on
//                      its output and between layers (one mask per sequence,
//                      the same at every step), and `layers` single-layer
//                      LSTMs ("rnns.<i>") whose hidden-to-hidden matrix is
//                      weight-dropped (DropConnect: "weight_hh_l0_raw" is
//                      what is learnt, a dropped copy is what runs). The last
//                      layer's width is the embedding's, so the LM decoder can
//                      tie its weights to the embedding.
//   LanguageModel      AwdLstm + a decoder tied to the embedding (only its
//                      bias is its own), predicting the next token.
//   TextClassifier     AwdLstm + fastai's pooling head: [last, max, mean]
//                      over the real tokens -> batch norm, dropout,
//                      linear(3 x F, 50), ReLU, batch norm, dropout,
//                      linear(50, classes). Unlike ULMFiT, which pools the
//                      last layer only, F is every layer's outputs side by
//                      side (ELMo's lesson: lower layers carry more of the
//                      text's content): the last layer of an LM with a tied
//                      decoder saturates towards +-1 to make its logits
//                      peak, and its max-pool alone is nearly the same for
//                      every text (docs/text-lm.md).
//
// A text model on disk (what a text job exports and the `text_model`
// operator serves): text_model.json {arch, task "lm" | "classify", options,
// input (the text block), classes, dim, weights}, tokenizer.bpe (the tokenizer)
// and model.pt (the task's module, torch::save). Pulls in torch headers (no
// torch/torch.h).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include "common/result.hpp"

namespace torch::nn {
class EmbeddingImpl;
class LinearImpl;
class BatchNorm1dImpl;
} // namespace torch::nn

namespace rookery::text {

constexpr int64_t pad_id = 0, unk_id = 1, bos_id = 2, eos_id = 3;

class subword_tokenizer {
public:
  subword_tokenizer();
  ~subword_tokenizer();
  subword_tokenizer(subword_tokenizer&&) noexcept;
  subword_tokenizer& operator=(subword_tokenizer&&) noexcept;

  /// Learns merges until `vocab` pieces on `texts` (deterministic: the same
  /// corpus gives the same merges). A corpus too small for `vocab` gets
  /// fewer pieces. bad_request when the corpus is empty or vocab is outside
  /// [260, 64000].
  static result<subword_tokenizer> train(const std::vector<std::string>& texts, int64_t vocab);
  /// From its serialized form (tokenizer.bpe's bytes).
  static result<subword_tokenizer> from_bytes(const std::string& proto);
  static result<subword_tokenizer> load(const std::string& path);
  status save(const std::string& path) const;
  const std::string& bytes() const;

  /// Token ids of `text` (any bytes), without bos/eos. Thread-safe.
  std::vector<int64_t> encode(std::string_view text) const;
  std::string decode(const std::vector<int64_t>& ids) const;
  int64_t vocab_size() const;
  bool loaded() const;

private:
  struct impl;
  std::unique_ptr<impl> p_;
};

struct awd_options {
  int64_t vocab = 4000;
  int64_t emb = 128;    // embedding width, and the last layer's
  int64_t hidden = 384; // the other layers' width
  int64_t layers = 2;
  double embed_p = 0.02, input_p = 0.25, weight_p = 0.2, hidden_p = 0.15, output_p = 0.1;

  std::string to_json() const;
  /// Keys as above, each optional (defaults kept); bad_request naming
  /// "model.options.<key>" otherwise.
  static result<awd_options> from_json(const nlohmann::json& j);
  /// Every dropout multiplied by m (fastai's drop_mult).
  awd_options scaled(double m) const;
};

/// One LSTM layer's state: h and c, each 1 x B x width.
using layer_state = std::pair<torch::Tensor, torch::Tensor>;

class AwdLstmImpl : public torch::nn::Module {
public:
  explicit AwdLstmImpl(awd_options o = {});
  /// x: int64 B x T token ids; state: one per layer (empty: zeros). Returns
  /// the last layer's outputs (B x T x emb) and the state after the last
  /// step. Dropouts apply in training mode only.
  std::pair<torch::Tensor, std::vector<layer_state>> forward(const torch::Tensor& x,
                                                             const std::vector<layer_state>& state = {});
  /// Every layer's outputs, concatenated: B x T x feature_width() (the
  /// classifier's and the served embedding's input; see TextClassifier).
  torch::Tensor all_layers(const torch::Tensor& x);
  /// hidden x (layers - 1) + emb.
  int64_t feature_width() const { return o_.hidden * (o_.layers - 1) + o_.emb; }
  std::vector<layer_state> initial_state(int64_t batch) const;
  /// The embedding matrix (vocab x emb), which the LM decoder ties to.
  torch::Tensor embedding_weight() const;
  /// Parameter groups from the bottom: {embedding}, {rnns.0}, ..., {rnns.L-1}.
  std::vector<std::vector<torch::Tensor>> layer_groups() const;
  const awd_options& options() const { return o_; }

private:
  std::pair<torch::Tensor, std::vector<layer_state>> run(const torch::Tensor& x,
                                                         const std::vector<layer_state>& state,
                                                         std::vector<torch::Tensor>* outs);
  awd_options o_;
  std::shared_ptr<torch::nn::EmbeddingImpl> encoder_;
  std::vector<std::shared_ptr<torch::nn::Module>> rnns_;
};
TORCH_MODULE(AwdLstm);

class LanguageModelImpl : public torch::nn::Module {
public:
  explicit LanguageModelImpl(awd_options o = {});
  /// Logits B x T x vocab for the next token at every position.
  std::pair<torch::Tensor, std::vector<layer_state>> forward(const torch::Tensor& x,
                                                             const std::vector<layer_state>& state = {});
  AwdLstm encoder{nullptr};
  torch::Tensor decoder_bias;
};
TORCH_MODULE(LanguageModel);

/// Masked pooling of the last layer's outputs `h` (B x T x D) over each
/// sequence's `lengths` (int64 B, each >= 1; padding comes after the real
/// tokens): [last, max, mean] (B x 3D) or, with `with_last` false, [max, mean].
torch::Tensor concat_pool(const torch::Tensor& h, const torch::Tensor& lengths, bool with_last = true);

class TextClassifierImpl : public torch::nn::Module {
public:
  TextClassifierImpl(awd_options o, int64_t classes, double head_p = 0.1);
  /// Logits B x classes of padded token ids x (B x T) with their lengths.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& lengths);
  /// The pooled features the head reads (B x 3 F).
  torch::Tensor features(const torch::Tensor& x, const torch::Tensor& lengths);
  std::vector<torch::Tensor> head_parameters() const;
  /// Forgets the head's batch-norm statistics (when the encoder under it
  /// starts to change: the old features' statistics no longer hold).
  void reset_head_statistics();
  /// The head's batch norms keep a cumulative mean of the batches since the
  /// last reset (true) or the usual exponential average, momentum 0.1.
  void set_cumulative_statistics(bool cumulative);
  AwdLstm encoder{nullptr};

private:
  std::shared_ptr<torch::nn::BatchNorm1dImpl> bn1_, bn2_;
  std::shared_ptr<torch::nn::LinearImpl> fc1_, fc2_;
  double head_p_;
};
TORCH_MODULE(TextClassifier);

/// A text model loaded from its directory for serving or fine-tuning.
struct text_model {
  std::string task;                // "lm" | "classify"
  awd_options options;
  subword_tokenizer tokenizer;
  int64_t max_len = 512;           // tokens read per text (the input block's)
  std::vector<std::string> classes;
  LanguageModel lm{nullptr};       // task lm
  TextClassifier classifier{nullptr}; // task classify
  AwdLstm encoder() const { return lm ? lm->encoder : classifier->encoder; }
  /// The served embedding's width: [max, mean] of every layer's outputs.
  int64_t dim() const { return 2 * (options.hidden * (options.layers - 1) + options.emb); }
};

/// Where the built-in text model `name` (the shipped "text-lm") is: under
/// $ROOKERY_TEXT_MODELS when set, else the `builtin_models` directory when it
/// holds it, else builtin-models/ next to the executable (or ../build/'s, for
/// other build directories), as the faces models are found. "" when none
/// holds a text_model.json. Like the faces, it does not depend on the
/// `builtin_models` setting, which names the zoo's weights.
std::string builtin_text_model_dir(const std::string& name);

/// Loads <dir>/text_model.json, tokenizer.bpe and the weights. not_found when
/// the directory holds no text model, unprocessable when it is damaged.
result<std::shared_ptr<text_model>> load_text_model(const std::string& dir);

/// The served embedding of one text: tokens (at most max_len, at least one:
/// an empty text reads as eos) through the encoder in eval mode, then
/// [max, mean] of every layer's outputs: dim() floats. Not thread-safe per model.
std::vector<float> embed_text(text_model& m, std::string_view text);

} // namespace rookery::text

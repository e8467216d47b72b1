// The RNN trainer: byte-level LSTM/GRU text classification and language
// modelling with truncated BPTT (see rnn_trainer.hpp).
#include "trainers/rnn_trainer.hpp"
#include "trainers/spec.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <utility>

#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

namespace rookery::train {

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

// Follows every training/held-out text in the LM stream: the fortune files'
// own separator, so samples read like a fortune file.
const char* const delimiter = "%\n";

failure bad_key(const std::string& key, const std::string& what) {
  return fail(errc::bad_request, "hyper." + key + " " + what);
}

// Bytes as int64 codes (0..255).
torch::Tensor bytes_tensor(const std::string& s) {
  auto t = torch::empty({static_cast<int64_t>(s.size())}, torch::kLong);
  auto* p = t.data_ptr<int64_t>();
  for (size_t i = 0; i < s.size(); ++i)
    p[i] = static_cast<unsigned char>(s[i]);
  return t;
}

// A text as it appears in the LM stream: the text, a newline if it lacks one,
// the delimiter.
void append_document(std::string& out, const std::string& text) {
  out += text;
  if (text.empty() || text.back() != '\n')
    out += '\n';
  out += delimiter;
}

int64_t document_size(const std::string& text) {
  return static_cast<int64_t>(text.size() + (text.empty() || text.back() != '\n' ? 1 : 0) +
                              std::char_traits<char>::length(delimiter));
}

// Keeps the items of `wanted` classes (relabelled in `wanted` order) and then,
// when limit > 0, the first `limit` of a shuffle seeded by `seed`.
status select_classes(data::text_set& set, const std::vector<std::string>& wanted, int64_t limit,
                      uint64_t seed) {
  std::vector<int64_t> remap(set.classes.size(), -1);
  for (size_t w = 0; w < wanted.size(); ++w) {
    auto it = std::find(set.classes.begin(), set.classes.end(), wanted[w]);
    if (it == set.classes.end())
      return bad_key("classes", "names an unknown class '" + wanted[w] + "'");
    remap[static_cast<size_t>(it - set.classes.begin())] = static_cast<int64_t>(w);
  }
  std::vector<size_t> keep;
  for (size_t i = 0; i < set.texts.size(); ++i) {
    const auto l = set.labels[i];
    if (l >= 0 && static_cast<size_t>(l) < remap.size() && remap[static_cast<size_t>(l)] >= 0)
      keep.push_back(i);
  }
  if (limit > 0 && static_cast<int64_t>(keep.size()) > limit) {
    // Fisher-Yates with mt19937_64 (the same on every standard library).
    std::mt19937_64 rng(seed);
    for (size_t i = keep.size() - 1; i > 0; --i)
      std::swap(keep[i], keep[rng() % (i + 1)]);
    keep.resize(static_cast<size_t>(limit));
    std::sort(keep.begin(), keep.end());
  }
  data::text_set out;
  out.classes = wanted;
  for (auto i : keep) {
    out.texts.push_back(std::move(set.texts[i]));
    out.labels.push_back(remap[static_cast<size_t>(set.labels[i])]);
  }
  set = std::move(out);
  return {};
}

} // namespace

// --- CharRnn -----------------------------------------------------------------

CharRnnState CharRnnState::detach() const {
  CharRnnState s;
  if (h.defined())
    s.h = h.detach();
  if (c.defined())
    s.c = c.detach();
  return s;
}

CharRnnImpl::CharRnnImpl(CharRnnOptions options) : options_(std::move(options)) {
  embed_ = register_module("embed", torch::nn::Embedding(options_.vocab(), options_.embed_dim()));
  // LibTorch warns when inter-layer dropout is set on a one-layer RNN.
  const double rnn_dropout = options_.layers() > 1 ? options_.dropout() : 0.0;
  if (options_.cell() == "gru") {
    gru_ = register_module("rnn", torch::nn::GRU(torch::nn::GRUOptions(options_.embed_dim(),
                                                                        options_.hidden())
                                                      .num_layers(options_.layers())
                                                      .dropout(rnn_dropout)
                                                      .bidirectional(options_.bidirectional())
                                                      .batch_first(true)));
  } else {
    lstm_ = register_module("rnn", torch::nn::LSTM(torch::nn::LSTMOptions(options_.embed_dim(),
                                                                           options_.hidden())
                                                        .num_layers(options_.layers())
                                                        .dropout(rnn_dropout)
                                                        .bidirectional(options_.bidirectional())
                                                        .batch_first(true)));
  }
  drop_ = register_module("drop", torch::nn::Dropout(options_.dropout()));
  const int64_t dirs = options_.bidirectional() ? 2 : 1;
  head_ = register_module("head", torch::nn::Linear(options_.hidden() * dirs, options_.outputs()));
}

CharRnnState CharRnnImpl::initial_state(int64_t batch) const {
  const int64_t dirs = options_.bidirectional() ? 2 : 1;
  const auto dev = head_->weight.device();
  CharRnnState s;
  s.h = torch::zeros({options_.layers() * dirs, batch, options_.hidden()}, dev);
  if (lstm_)
    s.c = torch::zeros_like(s.h);
  return s;
}

std::pair<torch::Tensor, CharRnnState> CharRnnImpl::run_rnn(const torch::Tensor& emb,
                                                            const CharRnnState& state) {
  CharRnnState next;
  torch::Tensor out;
  if (lstm_) {
    torch::optional<std::tuple<torch::Tensor, torch::Tensor>> hx;
    if (state.h.defined() && state.c.defined())
      hx = std::make_tuple(state.h, state.c);
    auto r = lstm_->forward(emb, hx);
    out = std::get<0>(r);
    next.h = std::get<0>(std::get<1>(r));
    next.c = std::get<1>(std::get<1>(r));
  } else {
    auto r = gru_->forward(emb, state.h.defined() ? state.h : torch::Tensor());
    out = std::get<0>(r);
    next.h = std::get<1>(r);
  }
  return {out, next};
}

std::pair<torch::Tensor, CharRnnState> CharRnnImpl::forward(const torch::Tensor& x,
                                                            const CharRnnState& state) {
  auto r = run_rnn(embed_(x), state);
  return {head_(drop_(r.first)), std::move(r.second)};
}

torch::Tensor CharRnnImpl::classify(const torch::Tensor& x, const torch::Tensor& lengths) {
  namespace rnn = torch::nn::utils::rnn;
  auto packed = rnn::pack_padded_sequence(embed_(x), lengths.to(torch::kCPU), /*batch_first=*/true,
                                          /*enforce_sorted=*/false);
  // h_n: (layers * directions) x B x hidden, in the batch's own order.
  torch::Tensor h;
  if (lstm_)
    h = std::get<0>(std::get<1>(lstm_->forward_with_packed_input(packed)));
  else
    h = std::get<1>(gru_->forward_with_packed_input(packed));
  const int64_t dirs = options_.bidirectional() ? 2 : 1;
  const int64_t batch = x.size(0);
  auto last = h.view({options_.layers(), dirs, batch, options_.hidden()})
                  .select(0, options_.layers() - 1); // dirs x B x hidden
  auto features = last.permute({1, 0, 2}).reshape({batch, dirs * options_.hidden()});
  return head_(drop_(features));
}

result<std::string> sample_text(CharRnn& model, const std::string& prefix, int64_t n_chars,
                                double temperature, uint64_t seed) {
  if (!model)
    return fail(errc::bad_request, "sample: no model");
  if (n_chars < 0)
    return fail(errc::bad_request, "sample: n_chars must be >= 0");
  if (model->options().outputs() != model->options().vocab() || model->options().bidirectional())
    return fail(errc::unprocessable, "sample: the model is not a language model");
  const bool was_training = model->is_training();
  try {
    torch::NoGradGuard no_grad;
    model->eval();
    auto gen = at::detail::createCPUGenerator(seed);
    const std::string start = prefix.empty() ? std::string(delimiter) : prefix;
    auto x = bytes_tensor(start).unsqueeze(0);
    auto r = model->forward(x, model->initial_state(1));
    auto logits = r.first.select(1, r.first.size(1) - 1).squeeze(0).to(torch::kCPU);
    CharRnnState state = std::move(r.second);
    std::string out;
    out.reserve(static_cast<size_t>(n_chars));
    for (int64_t i = 0; i < n_chars; ++i) {
      int64_t code = 0;
      if (temperature <= 0) {
        code = logits.argmax().item<int64_t>();
      } else {
        auto probs = torch::softmax(logits.to(torch::kDouble) / temperature, -1);
        code = torch::multinomial(probs, 1, false, gen).item<int64_t>();
      }
      out.push_back(static_cast<char>(static_cast<unsigned char>(code)));
      if (i + 1 < n_chars) {
        auto step = torch::full({1, 1}, code, torch::kLong);
        auto s = model->forward(step, state);
        logits = s.first.select(1, 0).squeeze(0).to(torch::kCPU);
        state = std::move(s.second);
      }
    }
    model->train(was_training);
    return out;
  } catch (const std::exception& e) {
    model->train(was_training);
    return fail(errc::internal, std::string("sample: ") + e.what());
  }
}

CarriedStateImpl::CarriedStateImpl() {
  h = register_buffer("h", torch::zeros({0}));
  c = register_buffer("c", torch::zeros({0}));
  next = register_buffer("next", torch::full({2}, -1, torch::kLong));
}

// --- configuration -------------------------------------------------------------

result<rnn_config> parse_rnn_config(const json& h) {
  rnn_config c;
  if (h.is_null())
    return c;
  if (!h.is_object())
    return fail(errc::bad_request, "hyper must be an object");
  spec_reader r(h, "hyper");
  r.choice("task", c.task, {"lm", "classify"})
    .choice("cell", c.cell, {"lstm", "gru"})
    .integer("hidden", c.hidden, 1, 8192)
    .integer("layers", c.layers, 1, 16)
    .integer("embed_dim", c.embed_dim, 1, 4096)
    .number("dropout", c.dropout, 0, 1, false, /*hi_open=*/true)
    .boolean("bidirectional", c.bidirectional)
    .integer("max_len", c.max_len, 1, 1 << 20)
    .integer("bptt", c.bptt, 2, 1 << 20)
    .integer("sample_chars", c.sample_chars, 0, 1 << 20)
    .number("sample_temperature", c.sample_temperature, 0, 100)
    .string("sample_prefix", c.sample_prefix)
    .strings("classes", c.classes);
  if (auto st = r.done(); !st)
    return st.error();
  if (c.task == "lm" && c.bidirectional)
    return bad_key("bidirectional", "is not possible with task lm (the model would see the "
                                    "bytes it predicts)");
  if (c.task == "classify" && c.classes.size() == 1)
    return bad_key("classes", "needs at least 2 classes to classify");
  return c;
}

result<std::unique_ptr<Trainer>> make_rnn_trainer(const json& spec, const data::dataset_info& ds) {
  try {
    auto hyper = spec_object(spec, "hyper");
    if (!hyper)
      return hyper.error();
    const json& hj = **hyper;
    auto cfg = parse_rnn_config(hj);
    if (!cfg)
      return cfg.error();
    auto hp = parse_hyper(hj);
    if (!hp)
      return hp.error();
    if (ds.kind != "text_classification")
      return fail(errc::bad_request, "dataset '" + ds.name + "' is a " + ds.kind +
                                         " data set; the rnn trainer needs text_classification");
    if (!ds.available)
      return fail(errc::unavailable, "dataset '" + ds.name + "' is not available: " + ds.status);
    if (!ds.classes.empty()) {
      for (const auto& name : cfg->classes)
        if (std::find(ds.classes.begin(), ds.classes.end(), name) == ds.classes.end())
          return bad_key("classes", "names an unknown class '" + name + "' of dataset '" +
                                        ds.name + "'");
    }
    hyper_params h = hp.value();
    // RNN gradients explode without clipping: 1.0 unless the job says otherwise
    // (0 switches clipping off).
    if (!hj.contains("clip_grad_norm"))
      h.clip_grad_norm = 1.0;
    return std::unique_ptr<Trainer>(new RnnTrainer(h, spec, ds, std::move(cfg.value())));
  } catch (const std::exception& e) {
    return fail(errc::internal, std::string("rnn trainer: ") + e.what());
  }
}

// --- RnnTrainer ------------------------------------------------------------------

RnnTrainer::RnnTrainer(hyper_params h, const json& spec, data::dataset_info ds, rnn_config cfg)
    : Trainer(std::move(h), spec), ds_(std::move(ds)), cfg_(std::move(cfg)) {}

status RnnTrainer::setup() {
  try {
    const bool subset = !cfg_.classes.empty();
    data::load_options lo;
    // A class subset is chosen before the limits apply (else a limit would
    // leave few texts of the wanted classes).
    lo.limit_train = subset ? 0 : hyper_.limit_train;
    lo.limit_test = subset ? 0 : hyper_.limit_test;
    lo.seed = hyper_.seed;
    auto loaded = data::load_texts(ds_, lo);
    if (!loaded)
      return loaded.error();
    data_ = std::move(loaded.value());
    if (subset) {
      if (auto st = select_classes(data_.train, cfg_.classes, hyper_.limit_train, hyper_.seed); !st)
        return st;
      if (auto st = select_classes(data_.test, cfg_.classes, hyper_.limit_test, hyper_.seed + 1);
          !st)
        return st;
    }
    classes_ = data_.train.classes;
    if (data_.train.texts.empty())
      return fail(errc::bad_request, "dataset '" + ds_.name + "': no training texts");
    if (data_.test.texts.empty())
      return fail(errc::bad_request, "dataset '" + ds_.name + "': no held-out texts");
    const bool lm = cfg_.task == "lm";
    if (!lm && classes_.size() < 2)
      return fail(errc::bad_request, "classify needs at least 2 classes");

    const int64_t batch = hyper_.batch_size;
    if (lm) {
      train_bytes_ = 0;
      for (const auto& t : data_.train.texts)
        train_bytes_ += document_size(t);
      stream_len_ = train_bytes_ / batch;
      if (stream_len_ < 2 || (stream_len_ - 1) / cfg_.bptt < 1)
        return fail(errc::bad_request,
                    "the training text (" + std::to_string(train_bytes_) +
                        " bytes) is too short for hyper.batch_size " + std::to_string(batch) +
                        " streams of hyper.bptt " + std::to_string(cfg_.bptt) + " bytes");
      test_text_.clear();
      for (const auto& t : data_.test.texts)
        append_document(test_text_, t);
    }

    CharRnnOptions o;
    o.vocab(256)
      .embed_dim(cfg_.embed_dim)
      .cell(cfg_.cell)
      .hidden(cfg_.hidden)
      .layers(cfg_.layers)
      .dropout(cfg_.dropout)
      .bidirectional(cfg_.bidirectional)
      .outputs(lm ? 256 : static_cast<int64_t>(classes_.size()));
    model_ = CharRnn(o);
    params_ = model_->parameters();
    state_ = CarriedState();
    if (lm) {
      // Shaped like the real state from the start, so that a checkpoint of
      // any moment loads into a fresh trainer.
      auto zero = model_->initial_state(batch);
      torch::NoGradGuard no_grad;
      state_->h.set_(zero.h);
      state_->c.set_(zero.c.defined() ? zero.c : torch::zeros({0}));
    }

    opt_ = make_optimizer(params_, hyper_);
    stream_epoch_ = -1;
    order_epoch_ = -1;
    return {};
  } catch (const std::exception& e) {
    return fail(errc::internal, std::string("rnn trainer setup: ") + e.what());
  }
}

int64_t RnnTrainer::steps_per_epoch() const {
  if (cfg_.task == "lm")
    return stream_len_ > 1 ? (stream_len_ - 1) / cfg_.bptt : 0;
  const auto n = static_cast<int64_t>(data_.train.texts.size());
  return (n + hyper_.batch_size - 1) / hyper_.batch_size;
}

void RnnTrainer::train_mode() {
  if (model_)
    model_->train();
}

metrics RnnTrainer::train_step(int64_t epoch, int64_t index) {
  return cfg_.task == "lm" ? lm_step(epoch, index) : classify_step(epoch, index);
}

metrics RnnTrainer::validate() {
  return cfg_.task == "lm" ? lm_validate() : classify_validate();
}

void RnnTrainer::build_train_stream(int64_t epoch) {
  const auto n = static_cast<int64_t>(data_.train.texts.size());
  auto order = epoch_permutation(n, epoch).to(torch::kLong).contiguous();
  const auto* idx = order.data_ptr<int64_t>();
  std::string all;
  all.reserve(static_cast<size_t>(train_bytes_));
  for (int64_t i = 0; i < n; ++i)
    append_document(all, data_.train.texts[static_cast<size_t>(idx[i])]);
  const int64_t batch = hyper_.batch_size;
  // Stream b is bytes [b * L, (b + 1) * L) of the epoch's text; the tail
  // (< batch bytes) is dropped.
  train_stream_ = torch::from_blob(all.data(), {batch * stream_len_}, torch::kUInt8)
                    .clone()
                    .view({batch, stream_len_});
  stream_epoch_ = epoch;
}

metrics RnnTrainer::lm_step(int64_t epoch, int64_t index) {
  if (stream_epoch_ != epoch)
    build_train_stream(epoch);
  const int64_t steps = steps_per_epoch();
  const int64_t chunk = index % steps; // an epoch is one pass over the streams
  const int64_t batch = hyper_.batch_size;

  // The carried state continues only the step right before this one; the
  // first chunk of a pass starts from zeros.
  const auto next = state_->next;
  const bool continues = chunk > 0 && next[0].item<int64_t>() == epoch &&
                         next[1].item<int64_t>() == index;
  CharRnnState start = continues ? carried_state() : model_->initial_state(batch);

  const int64_t begin = chunk * cfg_.bptt;
  const int64_t len = std::min(cfg_.bptt, stream_len_ - 1 - begin);
  auto x = train_stream_.narrow(1, begin, len).to(torch::kLong);
  auto y = train_stream_.narrow(1, begin + 1, len).to(torch::kLong);

  auto out = model_->forward(x, start);
  auto loss = torch::nn::functional::cross_entropy(out.first.reshape({-1, out.first.size(-1)}),
                                                   y.reshape({-1}));
  opt_->zero_grad();
  loss.backward();
  const double grad_norm = clip_and_step(*opt_, params_);

  {
    torch::NoGradGuard no_grad;
    auto carried = out.second.detach();
    state_->h.set_(carried.h.clone());
    if (carried.c.defined())
      state_->c.set_(carried.c.clone());
    state_->next.copy_(torch::tensor({epoch, index + 1}, torch::kLong));
  }
  const double l = loss.item<double>();
  metrics m{{"loss", l}, {"ppl", std::exp(l)}};
  if (hyper_.clip_grad_norm > 0)
    m["grad_norm"] = grad_norm;
  return m;
}

std::pair<torch::Tensor, torch::Tensor>
RnnTrainer::encode_batch(const std::vector<std::string>& texts, const std::vector<int64_t>& idx,
                         int64_t begin, int64_t end) const {
  const int64_t n = end - begin;
  auto lengths = torch::empty({n}, torch::kLong);
  auto* lp = lengths.data_ptr<int64_t>();
  int64_t longest = 1;
  for (int64_t i = 0; i < n; ++i) {
    const auto& t = texts[static_cast<size_t>(idx[static_cast<size_t>(begin + i)])];
    lp[i] = std::max<int64_t>(1, std::min<int64_t>(static_cast<int64_t>(t.size()), cfg_.max_len));
    longest = std::max(longest, lp[i]);
  }
  auto x = torch::zeros({n, longest}, torch::kLong); // 0-padded
  auto xa = x.accessor<int64_t, 2>();
  for (int64_t i = 0; i < n; ++i) {
    const auto& t = texts[static_cast<size_t>(idx[static_cast<size_t>(begin + i)])];
    const auto m = std::min<int64_t>(static_cast<int64_t>(t.size()), cfg_.max_len);
    for (int64_t j = 0; j < m; ++j)
      xa[i][j] = static_cast<unsigned char>(t[static_cast<size_t>(j)]);
    if (m == 0)
      xa[i][0] = '\n'; // an empty text reads as a lone newline
  }
  return {x, lengths};
}

metrics RnnTrainer::classify_step(int64_t epoch, int64_t index) {
  const auto n = static_cast<int64_t>(data_.train.texts.size());
  if (order_epoch_ != epoch) {
    order_ = epoch_permutation(n, epoch).to(torch::kLong).contiguous();
    order_epoch_ = epoch;
  }
  const int64_t steps = steps_per_epoch();
  const int64_t begin = (index % steps) * hyper_.batch_size;
  const int64_t end = std::min(n, begin + hyper_.batch_size);
  std::vector<int64_t> idx(order_.data_ptr<int64_t>(), order_.data_ptr<int64_t>() + n);
  auto [x, lengths] = encode_batch(data_.train.texts, idx, begin, end);
  auto y = torch::empty({end - begin}, torch::kLong);
  for (int64_t i = begin; i < end; ++i)
    y[i - begin] = data_.train.labels[static_cast<size_t>(idx[static_cast<size_t>(i)])];

  auto logits = model_->classify(x, lengths);
  auto loss = torch::nn::functional::cross_entropy(logits, y);
  opt_->zero_grad();
  loss.backward();
  const double grad_norm = clip_and_step(*opt_, params_);
  const double acc = logits.argmax(1).eq(y).to(torch::kDouble).mean().item<double>();
  metrics m{{"loss", loss.item<double>()}, {"acc", acc}};
  if (hyper_.clip_grad_norm > 0)
    m["grad_norm"] = grad_norm;
  return m;
}

metrics RnnTrainer::lm_validate() {
  torch::NoGradGuard no_grad;
  const bool was_training = model_->is_training();
  model_->eval();
  const auto total = static_cast<int64_t>(test_text_.size());
  // As many streams as the held-out text allows (each at least bptt bytes),
  // up to batch_size.
  const int64_t streams =
    std::max<int64_t>(1, std::min<int64_t>(hyper_.batch_size, (total - 1) / cfg_.bptt));
  const int64_t len = total / streams;
  auto stream = bytes_tensor(test_text_).narrow(0, 0, streams * len).view({streams, len});
  CharRnnState state = model_->initial_state(streams);
  double sum = 0;
  int64_t count = 0;
  for (int64_t begin = 0; begin < len - 1 && !cancel_requested(); begin += cfg_.bptt) {
    const int64_t n = std::min(cfg_.bptt, len - 1 - begin);
    auto x = stream.narrow(1, begin, n);
    auto y = stream.narrow(1, begin + 1, n);
    auto out = model_->forward(x, state);
    state = std::move(out.second);
    sum += torch::nn::functional::cross_entropy(
             out.first.reshape({-1, out.first.size(-1)}), y.reshape({-1}),
             torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
             .item<double>();
    count += streams * n;
  }
  model_->train(was_training);
  const double l = count > 0 ? sum / static_cast<double>(count) : std::nan("");
  return {{"val_loss", l}, {"val_ppl", std::exp(l)}};
}

metrics RnnTrainer::classify_validate() {
  torch::NoGradGuard no_grad;
  const bool was_training = model_->is_training();
  model_->eval();
  const auto n = static_cast<int64_t>(data_.test.texts.size());
  std::vector<int64_t> idx(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    idx[static_cast<size_t>(i)] = i;
  double sum = 0;
  int64_t correct = 0, seen = 0;
  for (int64_t begin = 0; begin < n && !cancel_requested(); begin += hyper_.batch_size) {
    const int64_t end = std::min(n, begin + hyper_.batch_size);
    auto [x, lengths] = encode_batch(data_.test.texts, idx, begin, end);
    auto y = torch::tensor(std::vector<int64_t>(data_.test.labels.begin() + begin,
                                                data_.test.labels.begin() + end),
                           torch::kLong);
    auto logits = model_->classify(x, lengths);
    sum += torch::nn::functional::cross_entropy(
             logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
             .item<double>();
    correct += logits.argmax(1).eq(y).sum().item<int64_t>();
    seen += end - begin;
  }
  model_->train(was_training);
  const auto denom = static_cast<double>(std::max<int64_t>(1, seen));
  return {{"val_loss", sum / denom}, {"val_acc", static_cast<double>(correct) / denom}};
}

result<std::string> RnnTrainer::sample(const std::string& prefix, int64_t n_chars,
                                       double temperature, uint64_t seed) {
  if (cfg_.task != "lm")
    return fail(errc::unprocessable, "sample: the model of task " + cfg_.task +
                                         " is not a language model");
  return sample_text(model_, prefix, n_chars, temperature, seed);
}

std::vector<std::string> RnnTrainer::epoch_artifacts(int64_t epoch, const std::string& dir) {
  if (cfg_.task != "lm" || cfg_.sample_chars == 0)
    return {};
  // The same seed and prefix every epoch: the samples show how the model
  // changes, not the sampler's luck.
  auto text = sample(cfg_.sample_prefix, cfg_.sample_chars, cfg_.sample_temperature, hyper_.seed);
  if (!text)
    return {};
  // fit() numbers the epochs from 1 here.
  const std::string name = "sample_epoch" + std::to_string(epoch) + ".txt";
  std::error_code ec;
  fs::create_directories(dir, ec);
  std::ofstream out(fs::path(dir) / name, std::ios::binary);
  out << cfg_.sample_prefix << text.value();
  out.close();
  if (!out)
    return {};
  return {name};
}

std::map<std::string, std::shared_ptr<torch::nn::Module>> RnnTrainer::modules() {
  std::map<std::string, std::shared_ptr<torch::nn::Module>> m;
  if (model_)
    m["model"] = model_.ptr();
  if (state_ && cfg_.task == "lm")
    m["state"] = state_.ptr();
  return m;
}

std::map<std::string, torch::optim::Optimizer*> RnnTrainer::optimizers() {
  if (!opt_)
    return {};
  return {{"optimizer", opt_.get()}};
}

CharRnnState RnnTrainer::carried_state() const {
  CharRnnState s;
  if (!state_)
    return s;
  s.h = state_->h.clone();
  if (cfg_.cell == "lstm")
    s.c = state_->c.clone();
  return s;
}

void RnnTrainer::reset_state() {
  if (!state_)
    return;
  torch::NoGradGuard no_grad;
  state_->h.zero_();
  state_->c.zero_();
  state_->next.fill_(-1);
}

result<exported_model> RnnTrainer::export_model(const std::string& dir) {
  if (!model_)
    return fail(errc::internal, "rnn trainer: export before setup");
  try {
    fs::create_directories(dir);
    torch::save(model_, (fs::path(dir) / "model.pt").string());
    const auto& o = model_->options();
    json cfg = {
      {"trainer", "rnn"},
      {"task", cfg_.task},
      {"module", "CharRnn"},
      {"cell", o.cell()},
      {"embed_dim", o.embed_dim()},
      {"hidden", o.hidden()},
      {"layers", o.layers()},
      {"dropout", o.dropout()},
      {"bidirectional", o.bidirectional()},
      {"outputs", o.outputs()},
      {"vocab", {{"kind", "bytes"}, {"size", o.vocab()}}},
      {"weights", "model.pt"},
    };
    if (cfg_.task == "lm") {
      cfg["delimiter"] = delimiter;
      cfg["bptt"] = cfg_.bptt;
    } else {
      cfg["classes"] = classes_;
      cfg["max_len"] = cfg_.max_len;
    }
    std::ofstream out(fs::path(dir) / "rnn.json");
    out << cfg.dump(2) << '\n';
    out.close();
    if (!out)
      return fail(errc::internal, "rnn trainer: cannot write rnn.json in " + dir);
  } catch (const std::exception& e) {
    return fail(errc::internal, std::string("rnn trainer export: ") + e.what());
  }
  return fail(errc::unprocessable,
              "the rnn trainer's model (a byte-level " + cfg_.cell + " " +
                (cfg_.task == "lm" ? "language model" : "text classifier") +
                ") is not an image embedding model and cannot back an embedding pipeline; its "
                "weights are in model.pt and its configuration in rnn.json");
}

} // namespace rookery::train

#include "trainers/text_trainer.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "datasets/datasets.hpp"
#include "models/repository.hpp"
#include "models/text_nets.hpp"
#include "trainers/blocks.hpp"
#include "trainers/spec.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace rookery::train {

result<std::string> find_text_model_dir(const data::dataset_paths& paths, const std::string& name) {
  if (!valid_model_name(name))
    return fail(errc::bad_request, "model.pretrained: '" + name + "' is not a model name");
  std::error_code ec;
  if (!paths.data_dir.empty()) {
    auto own = fs::path(paths.data_dir) / "text-models" / name;
    if (fs::exists(own / "text_model.json", ec))
      return own.string();
  }
  if (auto builtin = text::builtin_text_model_dir(name); !builtin.empty())
    return builtin;
  return fail(errc::not_found, "model.pretrained: no text model '" + name
                                 + "' (the built-in one is 'text-lm'; a finished text job "
                                   "registers others)");
}

namespace {

struct text_config {
  text::awd_options options;
  std::string pretrained_dir;
  int64_t bptt = 70;
  double drop_mult = 1.0;
  std::string unfreeze = "gradual";
  double lr_decay = 2.6;
};

/// Padded ids (B x T, T the longest) and lengths of texts[idx[b..e)].
std::pair<torch::Tensor, torch::Tensor> pad_batch(const std::vector<std::vector<int64_t>>& docs,
                                                  const std::vector<int64_t>& idx, size_t b, size_t e) {
  int64_t T = 1;
  for (size_t i = b; i < e; ++i)
    T = std::max<int64_t>(T, static_cast<int64_t>(docs[static_cast<size_t>(idx[i])].size()));
  auto x = torch::full({static_cast<int64_t>(e - b), T}, text::pad_id, torch::kLong);
  auto len = torch::empty({static_cast<int64_t>(e - b)}, torch::kLong);
  auto* px = x.data_ptr<int64_t>();
  for (size_t i = b; i < e; ++i) {
    const auto& d = docs[static_cast<size_t>(idx[i])];
    std::copy(d.begin(), d.end(), px + static_cast<int64_t>(i - b) * T);
    len[static_cast<int64_t>(i - b)] = static_cast<int64_t>(d.size());
  }
  return {x, len};
}

/// The carried LM state as buffers, so that checkpoints hold it: h<i>, c<i>
/// per layer, and next = {epoch, index} of the step it is for.
struct CarriedImpl : torch::nn::Module {
  CarriedImpl(const std::vector<text::layer_state>& zero) {
    for (size_t i = 0; i < zero.size(); ++i) {
      h.push_back(register_buffer("h" + std::to_string(i), zero[i].first.clone()));
      c.push_back(register_buffer("c" + std::to_string(i), zero[i].second.clone()));
    }
    next = register_buffer("next", torch::tensor({int64_t{-1}, int64_t{-1}}));
  }
  std::vector<torch::Tensor> h, c;
  torch::Tensor next;
};
TORCH_MODULE(Carried);

class TextTrainer : public Trainer {
public:
  TextTrainer(hyper_params h, const json& spec, data::dataset_info ds, text_task task, text_config cfg)
    : Trainer(std::move(h), spec), ds_(std::move(ds)), task_(std::move(task)), cfg_(std::move(cfg)) {}

  std::string kind() const override { return "text"; }
  bool lm() const { return task_.target == "lm"; }

  status setup() override {
    auto splits = data::load_texts(ds_, {hyper_.limit_train, hyper_.limit_test, hyper_.seed});
    if (!splits)
      return splits.error();
    if (splits->train.texts.size() < 2 || splits->test.texts.empty())
      return fail(errc::bad_request, "data set '" + ds_.name + "' needs at least 2 training and 1 test text");
    std::shared_ptr<text::text_model> pre;
    if (!cfg_.pretrained_dir.empty()) {
      auto m = text::load_text_model(cfg_.pretrained_dir);
      if (!m)
        return m.error();
      pre = *m;
      tok_ = std::move(pre->tokenizer);
      auto o = pre->options.scaled(cfg_.drop_mult);
      cfg_.options = o;
    } else {
      auto t = text::subword_tokenizer::train(splits->train.texts, task_.input.vocab);
      if (!t)
        return t.error();
      tok_ = std::move(*t);
      cfg_.options.vocab = std::max<int64_t>(tok_.vocab_size(), 8);
      cfg_.options = cfg_.options.scaled(cfg_.drop_mult);
    }
    const int64_t max_len = lm() ? 0 : task_.input.max_len;
    auto encode = [&](const std::vector<std::string>& texts) {
      std::vector<std::vector<int64_t>> out;
      out.reserve(texts.size());
      for (auto& s : texts) {
        auto ids = tok_.encode(s);
        if (max_len > 0 && static_cast<int64_t>(ids.size()) > max_len - 1)
          ids.resize(static_cast<size_t>(max_len - 1));
        ids.insert(ids.begin(), text::bos_id);
        out.push_back(std::move(ids));
      }
      return out;
    };
    train_docs_ = encode(splits->train.texts);
    test_docs_ = encode(splits->test.texts);
    train_y_ = splits->train.labels;
    test_y_ = splits->test.labels;
    int64_t tokens = 0;
    for (auto& d : train_docs_)
      tokens += static_cast<int64_t>(d.size());
    train_tokens_ = tokens;

    if (lm()) {
      lm_ = text::LanguageModel(cfg_.options);
      if (pre) {
        torch::NoGradGuard g;
        auto src = pre->lm ? pre->lm->named_parameters() : pre->classifier->encoder->named_parameters();
        for (auto& item : lm_->named_parameters()) {
          const std::string key = pre->lm ? item.key() : item.key().substr(std::string("encoder.").size());
          if (auto* v = src.find(key))
            item.value().copy_(*v);
        }
      }
      if (pre)
        pretrained_from_ = fs::path(cfg_.pretrained_dir).filename().string();
      stream_len_ = tokens / hyper_.batch_size;
      if (stream_len_ < 2)
        return fail(errc::bad_request, "data set '" + ds_.name + "' has too few tokens ("
                                         + std::to_string(tokens) + ") for hyper.batch_size "
                                         + std::to_string(hyper_.batch_size));
      carried_ = Carried(lm_->encoder->initial_state(hyper_.batch_size));
      lm_->to(device());
      carried_->to(device());
      opt_ = make_optimizer(lm_->parameters(), hyper_);
      return {};
    }
    const auto classes = static_cast<int64_t>(task_.classes.size());
    clf_ = text::TextClassifier(cfg_.options, classes);
    if (pre) {
      torch::NoGradGuard g;
      auto src = (pre->lm ? pre->lm->encoder : pre->classifier->encoder)->named_parameters();
      for (auto& item : clf_->encoder->named_parameters())
        if (auto* v = src.find(item.key()))
          item.value().copy_(*v);
      pretrained_from_ = fs::path(cfg_.pretrained_dir).filename().string();
    }
    clf_->to(device());
    // Parameter groups from the top: the head, the last LSTM, ..., the
    // embedding; discriminative LRs when fine-tuning a pretrained encoder.
    groups_.push_back(clf_->head_parameters());
    auto layers = clf_->encoder->layer_groups();
    for (auto it = layers.rbegin(); it != layers.rend(); ++it)
      groups_.push_back(*it);
    const double decay = pre ? cfg_.lr_decay : 1.0;
    opt_ = make_optimizer(groups_[0], hyper_);
    for (size_t g = 1; g < groups_.size(); ++g) {
      auto o = opt_->defaults().clone();
      o->set_lr(hyper_.lr / std::pow(decay, static_cast<double>(g)));
      opt_->add_param_group(torch::optim::OptimizerParamGroup(groups_[g], std::move(o)));
    }
    gradual_ = pre && cfg_.unfreeze == "gradual";
    return {};
  }

  int64_t steps_per_epoch() const override {
    if (lm())
      return std::max<int64_t>(1, (stream_len_ - 1) / cfg_.bptt);
    auto n = static_cast<int64_t>(train_docs_.size()), bs = hyper_.batch_size;
    return n / bs + (n % bs >= 2 ? 1 : 0); // a last batch of one would upset batch norm
  }

  void train_mode() override {
    if (lm_)
      lm_->train();
    if (clf_)
      clf_->train();
  }

  metrics train_step(int64_t epoch, int64_t index) override {
    return lm() ? lm_step(epoch, index) : classify_step(epoch, index);
  }

  metrics validate() override { return lm() ? lm_validate() : classify_validate(); }

  std::map<std::string, std::shared_ptr<torch::nn::Module>> modules() override {
    if (lm())
      return {{"model", lm_.ptr()}, {"state", carried_.ptr()}};
    return {{"model", clf_.ptr()}};
  }
  std::map<std::string, torch::optim::Optimizer*> optimizers() override { return {{"opt", opt_.get()}}; }

  std::string result_extra() const override {
    json out{{"tokenizer", {{"pieces", tok_.vocab_size()}, {"train_tokens", train_tokens_}}}};
    if (!pretrained_from_.empty())
      out["fine_tuned_from"] = pretrained_from_;
    if (lm() && last_ppl_ > 0)
      out["perplexity"] = last_ppl_;
    return out.dump();
  }

  result<exported_model> export_model(const std::string& dir) override {
    exported_model e;
    e.what = serves::text_embedding;
    e.arch = "awd_lstm";
    e.weights_path = (fs::path(dir) / "model.pt").string();
    if (lm()) {
      lm_->eval();
      torch::save(lm_, e.weights_path);
    } else {
      clf_->eval();
      torch::save(clf_, e.weights_path);
    }
    if (auto st = tok_.save((fs::path(dir) / "tokenizer.bpe").string()); !st)
      return st.error();
    e.dim = static_cast<uint32_t>(2 * (cfg_.options.hidden * (cfg_.options.layers - 1) + cfg_.options.emb));
    e.options_json = cfg_.options.to_json();
    e.preprocess_json = task_.input.to_json();
    json cfg{{"arch", "awd_lstm"},
             {"task", lm() ? "lm" : "classify"},
             {"options", json::parse(e.options_json)},
             {"input", json::parse(e.preprocess_json)},
             {"dim", e.dim},
             {"tokenizer", "tokenizer.bpe"},
             {"weights", "model.pt"},
             {"dataset", ds_.name}};
    if (!lm())
      cfg["classes"] = task_.classes;
    if (!pretrained_from_.empty())
      cfg["fine_tuned_from"] = pretrained_from_;
    std::ofstream(fs::path(dir) / "text_model.json") << cfg.dump(2) << '\n';
    return e;
  }

private:
  // --- language model ---

  void build_stream(int64_t epoch) {
    auto perm = epoch_permutation(static_cast<int64_t>(train_docs_.size()), epoch);
    std::vector<int64_t> flat;
    flat.reserve(static_cast<size_t>(train_tokens_));
    auto* p = perm.data_ptr<int64_t>();
    for (int64_t i = 0; i < perm.numel(); ++i) {
      auto& d = train_docs_[static_cast<size_t>(p[i])];
      flat.insert(flat.end(), d.begin(), d.end());
    }
    const int64_t B = hyper_.batch_size;
    flat.resize(static_cast<size_t>(B * stream_len_));
    stream_ = torch::tensor(flat, torch::kLong).view({B, stream_len_}).to(device());
    stream_epoch_ = epoch;
  }

  metrics lm_step(int64_t epoch, int64_t index) {
    if (epoch != stream_epoch_)
      build_stream(epoch);
    std::vector<text::layer_state> state;
    auto next = carried_->next.to(torch::kCPU);
    if (next[0].item<int64_t>() == epoch && next[1].item<int64_t>() == index)
      for (size_t i = 0; i < carried_->h.size(); ++i)
        state.emplace_back(carried_->h[i], carried_->c[i]);
    const int64_t start = index * cfg_.bptt;
    const int64_t len = std::min(cfg_.bptt, stream_len_ - 1 - start);
    auto x = stream_.slice(1, start, start + len);
    auto y = stream_.slice(1, start + 1, start + 1 + len);
    opt_->zero_grad();
    auto [logits, out_state] = lm_->forward(x, state);
    auto loss = torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(2)}), y.reshape({-1}));
    loss.backward();
    double gn = clip_and_step(*opt_, lm_->parameters());
    {
      torch::NoGradGuard g;
      for (size_t i = 0; i < out_state.size(); ++i) {
        carried_->h[i].copy_(out_state[i].first.detach());
        carried_->c[i].copy_(out_state[i].second.detach());
      }
      carried_->next.copy_(torch::tensor({epoch, index + 1}));
    }
    metrics m{{"loss", loss.item<double>()}};
    if (hyper_.clip_grad_norm > 0)
      m["grad_norm"] = gn;
    return m;
  }

  metrics lm_validate() {
    lm_->eval();
    if (!test_stream_.defined()) { // the test texts as B streams, built at the first validation
      std::vector<int64_t> flat;
      for (auto& d : test_docs_)
        flat.insert(flat.end(), d.begin(), d.end());
      const int64_t B = std::max<int64_t>(1, std::min<int64_t>(hyper_.batch_size, static_cast<int64_t>(flat.size()) / 16));
      const int64_t L0 = static_cast<int64_t>(flat.size()) / B;
      flat.resize(static_cast<size_t>(B * L0));
      test_stream_ = torch::tensor(flat, torch::kLong).view({B, L0}).to(device());
    }
    const auto& s = test_stream_;
    const int64_t L = s.size(1);
    if (L < 2)
      return {};
    torch::NoGradGuard g;
    std::vector<text::layer_state> state;
    double loss_sum = 0, correct = 0, n = 0;
    for (int64_t start = 0; start + 1 < L; start += cfg_.bptt) {
      if (cancel_requested())
        return {};
      const int64_t len = std::min(cfg_.bptt, L - 1 - start);
      auto x = s.slice(1, start, start + len);
      auto y = s.slice(1, start + 1, start + 1 + len).reshape({-1});
      auto [logits, st] = lm_->forward(x, state);
      state = st;
      auto flat_logits = logits.reshape({-1, logits.size(2)});
      loss_sum += torch::nn::functional::cross_entropy(
                    flat_logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                    .item<double>();
      correct += flat_logits.argmax(1).eq(y).sum().item<double>();
      n += static_cast<double>(y.numel());
    }
    const double loss = loss_sum / std::max(1.0, n);
    last_ppl_ = std::exp(loss);
    return {{"val_loss", loss}, {"val_perplexity", last_ppl_}, {"val_acc", correct / std::max(1.0, n)}};
  }

  // --- classifier ---

  /// The epoch's batches: a seeded order, sorted by length within chunks of
  /// 50 batches (fastai's sortish sampler), the chunks' batches in order.
  void build_batches(int64_t epoch) {
    auto perm = epoch_permutation(static_cast<int64_t>(train_docs_.size()), epoch);
    order_.assign(perm.data_ptr<int64_t>(), perm.data_ptr<int64_t>() + perm.numel());
    const size_t chunk = static_cast<size_t>(hyper_.batch_size) * 50;
    for (size_t b = 0; b < order_.size(); b += chunk) {
      auto e = std::min(order_.size(), b + chunk);
      std::stable_sort(order_.begin() + static_cast<std::ptrdiff_t>(b), order_.begin() + static_cast<std::ptrdiff_t>(e),
                       [&](int64_t a, int64_t c) {
                         return train_docs_[static_cast<size_t>(a)].size() > train_docs_[static_cast<size_t>(c)].size();
                       });
    }
    order_epoch_ = epoch;
  }

  /// Gradual unfreezing: in epoch k (0-based) the top k + 1 groups train.
  /// The head's batch-norm statistics: an exponential average (momentum
  /// 0.1) needs more batches than a small data set has in an epoch (after
  /// a few dozen it is still mostly its initial 0 / 1). When fine-tuning
  /// gradually on fewer than 50 batches an epoch, they are a cumulative
  /// mean restarted every epoch: exact while the encoder is frozen, and the
  /// encoder moves slowly under discriminative LRs. From scratch the
  /// encoder moves fast from the first step, and the usual average wins.
  /// `index`: the step within the epoch (a resumed run starts mid-epoch and
  /// keeps the checkpoint's statistics).
  void at_epoch_start(int64_t epoch, int64_t index) {
    for (size_t g = 0; g < groups_.size(); ++g) {
      const bool on = !gradual_ || static_cast<int64_t>(g) <= epoch;
      for (auto& p : groups_[g])
        p.set_requires_grad(on);
    }
    const bool small = gradual_ && steps_per_epoch() < 50;
    clf_->set_cumulative_statistics(small);
    if (small && index == 0)
      clf_->reset_head_statistics();
  }

  metrics classify_step(int64_t epoch, int64_t index) {
    if (epoch != order_epoch_) {
      build_batches(epoch);
      at_epoch_start(epoch, index);
    }
    const auto bs = static_cast<size_t>(hyper_.batch_size);
    const size_t b = static_cast<size_t>(index) * bs, e = std::min(order_.size(), b + bs);
    auto [x, len] = pad_batch(train_docs_, order_, b, e);
    std::vector<int64_t> ys;
    for (size_t i = b; i < e; ++i)
      ys.push_back(train_y_[static_cast<size_t>(order_[i])]);
    auto y = torch::tensor(ys, torch::kLong).to(device());
    opt_->zero_grad();
    auto out = clf_->forward(x.to(device()), len.to(device()));
    auto loss = torch::nn::functional::cross_entropy(out, y);
    loss.backward();
    double gn = clip_and_step(*opt_, clf_->parameters());
    metrics m{{"loss", loss.item<double>()},
              {"acc", out.argmax(1).eq(y).to(torch::kFloat64).mean().item<double>()}};
    if (hyper_.clip_grad_norm > 0)
      m["grad_norm"] = gn;
    return m;
  }

  metrics classify_validate() {
    clf_->eval();
    std::vector<int64_t> idx(test_docs_.size());
    for (size_t i = 0; i < idx.size(); ++i)
      idx[i] = static_cast<int64_t>(i);
    std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t c) {
      return test_docs_[static_cast<size_t>(a)].size() > test_docs_[static_cast<size_t>(c)].size();
    });
    torch::NoGradGuard g;
    double loss_sum = 0, correct = 0;
    for (size_t b = 0; b < idx.size(); b += 128) {
      if (cancel_requested())
        return {};
      auto e = std::min(idx.size(), b + 128);
      auto [x, len] = pad_batch(test_docs_, idx, b, e);
      std::vector<int64_t> ys;
      for (size_t i = b; i < e; ++i)
        ys.push_back(test_y_[static_cast<size_t>(idx[i])]);
      auto y = torch::tensor(ys, torch::kLong).to(device());
      auto out = clf_->forward(x.to(device()), len.to(device()));
      loss_sum += torch::nn::functional::cross_entropy(
                    out, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                    .item<double>();
      correct += out.argmax(1).eq(y).sum().item<double>();
    }
    const double n = static_cast<double>(idx.size());
    return {{"val_loss", loss_sum / n}, {"val_acc", correct / n}};
  }

  data::dataset_info ds_;
  text_task task_;
  text_config cfg_;
  text::subword_tokenizer tok_;
  std::vector<std::vector<int64_t>> train_docs_, test_docs_;
  std::vector<int64_t> train_y_, test_y_;
  int64_t train_tokens_ = 0;
  std::string pretrained_from_;
  std::unique_ptr<torch::optim::Optimizer> opt_;
  // lm
  text::LanguageModel lm_{nullptr};
  Carried carried_{nullptr};
  torch::Tensor stream_, test_stream_;
  int64_t stream_len_ = 0, stream_epoch_ = -1;
  double last_ppl_ = -1;
  // classify
  text::TextClassifier clf_{nullptr};
  std::vector<std::vector<torch::Tensor>> groups_;
  bool gradual_ = false;
  std::vector<int64_t> order_;
  int64_t order_epoch_ = -1;
};

} // namespace

result<std::unique_ptr<Trainer>> make_text_trainer(const json& spec, const data::dataset_info& ds,
                                                   const data::dataset_paths& paths) {
  auto task = parse_text_task(spec, ds);
  if (!task)
    return task.error();
  auto hyper = spec_object(spec, "hyper");
  if (!hyper)
    return hyper.error();
  auto h = parse_hyper(**hyper);
  if (!h)
    return h.error();
  if (!(*hyper)->contains("clip_grad_norm"))
    h->clip_grad_norm = 0.5; // LSTM gradients explode without clipping; 0 switches it off
  text_config cfg;
  spec_reader r(**hyper, "hyper");
  r.integer("bptt", cfg.bptt, 2, 4096)
    .number("drop_mult", cfg.drop_mult, 0, 5)
    .choice("unfreeze", cfg.unfreeze, {"gradual", "none"})
    .number("lr_decay", cfg.lr_decay, 1, 100);
  if (auto st = r.done(); !st)
    return st.error();
  std::string arch = "awd_lstm", pretrained;
  json options = json::object();
  if (auto st = read_model_choice(spec, arch, options, pretrained); !st)
    return st.error();
  if (arch != "awd_lstm")
    return fail(errc::bad_request, "model '" + arch + "' is not a text model; the text trainer has 'awd_lstm'");
  auto o = text::awd_options::from_json(options);
  if (!o)
    return o.error();
  cfg.options = *o;
  if (!pretrained.empty()) {
    auto dir = find_text_model_dir(paths, pretrained);
    if (!dir)
      return dir.error();
    if (!options.empty())
      return fail(errc::bad_request, "model.options: a pretrained model keeps its own sizes and "
                                     "dropouts; scale the dropouts with hyper.drop_mult");
    cfg.pretrained_dir = *dir;
  }
  return std::unique_ptr<Trainer>(
    std::make_unique<TextTrainer>(std::move(*h), spec, ds, std::move(*task), std::move(cfg)));
}

} // namespace rookery::train

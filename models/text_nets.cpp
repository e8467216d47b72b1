#include "models/text_nets.hpp"

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <sstream>
#include <unordered_map>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "models/repository.hpp"
#include "trainers/spec.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;
namespace F = torch::nn::functional;

namespace rookery::text {

// --- tokenizer ------------------------------------------------------------------
//
// Byte-level BPE (Sennrich et al. 2016, on bytes as GPT-2 does): a text is
// cut into words (a run of letters -- bytes >= 0x80 count as letters, so a
// UTF-8 character never splits --, a run of digits, or a run of other
// non-space bytes, each with the one space before it), every word starts
// as its bytes (ids 4..259), and the learnt merges join adjacent pieces in
// the order they were learnt. Any byte string encodes, so there is no unk.
// Training counts the words once, then repeatedly merges the most frequent
// adjacent pair (ties: the smaller pair of ids), updating the counts of the
// words that hold it, until `vocab` pieces or no pair occurs twice.
// Serialized as text: "rookery-bpe 1\n", then one merge per line, "a b".

namespace {

constexpr int64_t kByteBase = 4; // ids 0..3 are pad, unk, bos, eos

int char_class(unsigned char c) {
  if (c >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
    return 1;
  if (c >= '0' && c <= '9')
    return 2;
  if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f')
    return 0;
  return 3;
}

/// The words of a text: runs of one class with the single space before them
/// (other whitespace is normalised to one space); digits one at a time.
std::vector<std::string> words_of(std::string_view text) {
  std::vector<std::string> out;
  size_t i = 0;
  const size_t n = text.size();
  while (i < n) {
    bool space = false;
    while (i < n && char_class(static_cast<unsigned char>(text[i])) == 0) {
      space = true;
      ++i;
    }
    if (i >= n)
      break;
    const int cls = char_class(static_cast<unsigned char>(text[i]));
    size_t j = i + 1;
    if (cls != 2)
      while (j < n && char_class(static_cast<unsigned char>(text[j])) == cls && j - i < 64)
        ++j;
    std::string w = space && !out.empty() ? " " : "";
    w.append(text.substr(i, j - i));
    out.push_back(std::move(w));
    i = j;
  }
  return out;
}

using pair_key = uint64_t;
pair_key key_of(int64_t a, int64_t b) { return (static_cast<uint64_t>(a) << 32) | static_cast<uint64_t>(b); }

} // namespace

struct subword_tokenizer::impl {
  std::vector<std::pair<int64_t, int64_t>> merges; // merge r makes id 260 + r
  std::unordered_map<pair_key, int64_t> rank;       // pair -> merge index
  std::vector<std::string> pieces;                  // bytes of every id
  std::string serialized;
  mutable std::mutex cache_mu;
  mutable std::unordered_map<std::string, std::vector<int64_t>> cache; // word -> ids

  void index() {
    rank.clear();
    pieces.assign(static_cast<size_t>(kByteBase + 256 + static_cast<int64_t>(merges.size())), "");
    for (int b = 0; b < 256; ++b)
      pieces[static_cast<size_t>(kByteBase + b)] = std::string(1, static_cast<char>(b));
    std::string out = "rookery-bpe 1\n";
    for (size_t r = 0; r < merges.size(); ++r) {
      auto [a, b] = merges[r];
      rank[key_of(a, b)] = static_cast<int64_t>(r);
      pieces[static_cast<size_t>(kByteBase + 256) + r] = pieces[static_cast<size_t>(a)] + pieces[static_cast<size_t>(b)];
      out += std::to_string(a) + " " + std::to_string(b) + "\n";
    }
    serialized = std::move(out);
  }

  std::vector<int64_t> encode_word(const std::string& w) const {
    std::vector<int64_t> ids;
    ids.reserve(w.size());
    for (unsigned char c : w)
      ids.push_back(kByteBase + c);
    while (ids.size() > 1) {
      int64_t best = std::numeric_limits<int64_t>::max();
      size_t at = 0;
      for (size_t i = 0; i + 1 < ids.size(); ++i) {
        auto it = rank.find(key_of(ids[i], ids[i + 1]));
        if (it != rank.end() && it->second < best) {
          best = it->second;
          at = i;
        }
      }
      if (best == std::numeric_limits<int64_t>::max())
        break;
      ids[at] = kByteBase + 256 + best;
      ids.erase(ids.begin() + static_cast<std::ptrdiff_t>(at) + 1);
    }
    return ids;
  }
};

subword_tokenizer::subword_tokenizer() = default;
subword_tokenizer::~subword_tokenizer() = default;
subword_tokenizer::subword_tokenizer(subword_tokenizer&&) noexcept = default;
subword_tokenizer& subword_tokenizer::operator=(subword_tokenizer&&) noexcept = default;

result<subword_tokenizer> subword_tokenizer::train(const std::vector<std::string>& texts, int64_t vocab) {
  if (vocab < kByteBase + 256 || vocab > 64000)
    return fail(errc::bad_request, "the tokenizer's vocabulary must hold 260 to 64,000 pieces (4 special "
                                   "tokens, 256 bytes, then merges), not " + std::to_string(vocab));
  std::unordered_map<std::string, int64_t> counts;
  for (auto& t : texts)
    for (auto& w : words_of(t))
      ++counts[w];
  if (counts.empty())
    return fail(errc::bad_request, "there is no text to train the tokenizer on");
  // Unique words in a fixed order (the map's order is not).
  std::vector<std::pair<std::string, int64_t>> uniq(counts.begin(), counts.end());
  std::sort(uniq.begin(), uniq.end());
  std::vector<std::vector<int64_t>> words;
  std::vector<int64_t> freq;
  for (auto& [w, c] : uniq) {
    std::vector<int64_t> ids;
    for (unsigned char ch : w)
      ids.push_back(kByteBase + ch);
    words.push_back(std::move(ids));
    freq.push_back(c);
  }
  std::unordered_map<pair_key, int64_t> pairs;
  std::unordered_map<pair_key, std::vector<int32_t>> where; // pair -> words that held it (may be stale)
  for (size_t w = 0; w < words.size(); ++w)
    for (size_t i = 0; i + 1 < words[w].size(); ++i) {
      auto k = key_of(words[w][i], words[w][i + 1]);
      pairs[k] += freq[w];
      auto& v = where[k];
      if (v.empty() || v.back() != static_cast<int32_t>(w))
        v.push_back(static_cast<int32_t>(w));
    }
  subword_tokenizer t;
  t.p_ = std::make_unique<impl>();
  const int64_t target_merges = vocab - kByteBase - 256;
  while (static_cast<int64_t>(t.p_->merges.size()) < target_merges) {
    pair_key best = 0;
    int64_t best_n = 1;
    for (auto& [k, n] : pairs)
      if (n > best_n || (n == best_n && n > 1 && k < best)) {
        best = k;
        best_n = n;
      }
    if (best_n < 2)
      break;
    const int64_t a = static_cast<int64_t>(best >> 32), b = static_cast<int64_t>(best & 0xffffffffu);
    const int64_t made = kByteBase + 256 + static_cast<int64_t>(t.p_->merges.size());
    t.p_->merges.emplace_back(a, b);
    auto holders = std::move(where[best]);
    where.erase(best);
    for (int32_t w : holders) {
      auto& ids = words[static_cast<size_t>(w)];
      const int64_t f = freq[static_cast<size_t>(w)];
      for (size_t i = 0; i + 1 < ids.size(); ++i) {
        if (ids[i] != a || ids[i + 1] != b)
          continue;
        if (i > 0)
          pairs[key_of(ids[i - 1], a)] -= f;
        if (i + 2 < ids.size())
          pairs[key_of(b, ids[i + 2])] -= f;
        ids[i] = made;
        ids.erase(ids.begin() + static_cast<std::ptrdiff_t>(i) + 1);
        if (i > 0) {
          pairs[key_of(ids[i - 1], made)] += f;
          where[key_of(ids[i - 1], made)].push_back(w);
        }
        if (i + 1 < ids.size()) {
          pairs[key_of(made, ids[i + 1])] += f;
          where[key_of(made, ids[i + 1])].push_back(w);
        }
      }
    }
    pairs.erase(best);
  }
  t.p_->index();
  return t;
}

result<subword_tokenizer> subword_tokenizer::from_bytes(const std::string& text) {
  std::istringstream in(text);
  std::string magic;
  std::getline(in, magic);
  if (magic != "rookery-bpe 1")
    return fail(errc::unprocessable, "not a Rookery BPE tokenizer (no 'rookery-bpe 1' header)");
  subword_tokenizer t;
  t.p_ = std::make_unique<impl>();
  int64_t a = 0, b = 0;
  while (in >> a >> b) {
    const int64_t next = kByteBase + 256 + static_cast<int64_t>(t.p_->merges.size());
    if (a < kByteBase || b < kByteBase || a >= next || b >= next || next >= 64000)
      return fail(errc::unprocessable, "the tokenizer's merge " + std::to_string(t.p_->merges.size() + 1)
                                         + " names a piece that does not exist yet");
    t.p_->merges.emplace_back(a, b);
  }
  if (!in.eof())
    return fail(errc::unprocessable, "the tokenizer's merges are not pairs of numbers");
  t.p_->index();
  return t;
}

result<subword_tokenizer> subword_tokenizer::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return fail(errc::not_found, "no tokenizer at " + fs::path(path).filename().string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return from_bytes(ss.str());
}

status subword_tokenizer::save(const std::string& path) const {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes().data(), static_cast<std::streamsize>(bytes().size()));
  if (!out)
    return fail(errc::internal, "cannot write the tokenizer");
  return {};
}

const std::string& subword_tokenizer::bytes() const {
  static const std::string none;
  return p_ ? p_->serialized : none;
}

bool subword_tokenizer::loaded() const { return p_ != nullptr; }

std::vector<int64_t> subword_tokenizer::encode(std::string_view text) const {
  std::vector<int64_t> out;
  if (!p_)
    return out;
  for (auto& w : words_of(text)) {
    {
      std::lock_guard<std::mutex> lock(p_->cache_mu);
      auto it = p_->cache.find(w);
      if (it != p_->cache.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        continue;
      }
    }
    auto ids = p_->encode_word(w);
    out.insert(out.end(), ids.begin(), ids.end());
    std::lock_guard<std::mutex> lock(p_->cache_mu);
    if (p_->cache.size() < 200000)
      p_->cache.emplace(w, std::move(ids));
  }
  return out;
}

std::string subword_tokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string out;
  if (!p_)
    return out;
  for (auto i : ids)
    if (i >= kByteBase && i < vocab_size())
      out += p_->pieces[static_cast<size_t>(i)];
  return out;
}

int64_t subword_tokenizer::vocab_size() const {
  return p_ ? kByteBase + 256 + static_cast<int64_t>(p_->merges.size()) : 0;
}

// --- options --------------------------------------------------------------------

std::string awd_options::to_json() const {
  return json{{"vocab", vocab}, {"emb", emb}, {"hidden", hidden}, {"layers", layers},
              {"embed_p", embed_p}, {"input_p", input_p}, {"weight_p", weight_p},
              {"hidden_p", hidden_p}, {"output_p", output_p}}
    .dump();
}

result<awd_options> awd_options::from_json(const json& j) {
  awd_options o;
  train::spec_reader r(j, "model.options");
  r.integer("vocab", o.vocab, 8, 64000)
    .integer("emb", o.emb, 4, 2048)
    .integer("hidden", o.hidden, 4, 4096)
    .integer("layers", o.layers, 1, 6);
  for (auto [key, p] : {std::pair<const char*, double*>{"embed_p", &o.embed_p}, {"input_p", &o.input_p},
                        {"weight_p", &o.weight_p}, {"hidden_p", &o.hidden_p}, {"output_p", &o.output_p}})
    r.number(key, *p, 0, 1, false, true);
  for (auto& [k, v] : j.items())
    r.check(k == "vocab" || k == "emb" || k == "hidden" || k == "layers" || k == "embed_p"
              || k == "input_p" || k == "weight_p" || k == "hidden_p" || k == "output_p",
            k, "is not an AWD-LSTM option (vocab, emb, hidden, layers, embed_p, input_p, "
               "weight_p, hidden_p, output_p)");
  if (auto st = r.done(); !st)
    return st.error();
  return o;
}

awd_options awd_options::scaled(double m) const {
  awd_options o = *this;
  for (double* p : {&o.embed_p, &o.input_p, &o.weight_p, &o.hidden_p, &o.output_p})
    *p = std::min(0.95, *p * m);
  return o;
}

// --- AWD-LSTM -------------------------------------------------------------------

namespace {

/// Variational dropout: one mask per sequence and feature, the same at every
/// step (x: B x T x F).
torch::Tensor rnn_dropout(const torch::Tensor& x, double p, bool training) {
  if (!training || p <= 0)
    return x;
  auto mask = torch::empty({x.size(0), 1, x.size(2)}, x.options()).bernoulli_(1 - p).div_(1 - p);
  return x * mask;
}

/// One weight-dropped LSTM layer ("rnns.<i>"): what is learnt is
/// weight_hh_l0_raw; in training a dropped copy of it runs.
class WeightDropLstmImpl : public torch::nn::Module {
public:
  WeightDropLstmImpl(int64_t in, int64_t out, double weight_p) : out_(out), weight_p_(weight_p) {
    const double k = 1.0 / std::sqrt(static_cast<double>(out));
    w_ih_ = register_parameter("weight_ih_l0", torch::empty({4 * out, in}).uniform_(-k, k));
    w_hh_ = register_parameter("weight_hh_l0_raw", torch::empty({4 * out, out}).uniform_(-k, k));
    b_ih_ = register_parameter("bias_ih_l0", torch::empty({4 * out}).uniform_(-k, k));
    b_hh_ = register_parameter("bias_hh_l0", torch::empty({4 * out}).uniform_(-k, k));
  }
  std::pair<torch::Tensor, layer_state> forward(const torch::Tensor& x, const layer_state& s) {
    auto w_hh = is_training() && weight_p_ > 0 ? F::dropout(w_hh_, F::DropoutFuncOptions().p(weight_p_).training(true))
                                               : w_hh_;
    auto r = torch::lstm(x, {s.first, s.second}, {w_ih_, w_hh, b_ih_, b_hh_}, true, 1, 0.0,
                         is_training(), false, true);
    return {std::get<0>(r), {std::get<1>(r), std::get<2>(r)}};
  }
  int64_t width() const { return out_; }

private:
  int64_t out_;
  double weight_p_;
  torch::Tensor w_ih_, w_hh_, b_ih_, b_hh_;
};
TORCH_MODULE(WeightDropLstm);

} // namespace

AwdLstmImpl::AwdLstmImpl(awd_options o) : o_(o) {
  encoder_ = register_module("encoder", torch::nn::Embedding(torch::nn::EmbeddingOptions(o.vocab, o.emb)
                                                               .padding_idx(pad_id)));
  {
    torch::NoGradGuard no_grad;
    encoder_->weight.uniform_(-0.1, 0.1);
    encoder_->weight[pad_id].zero_();
  }
  auto list = register_module("rnns", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.layers; ++i) {
    const int64_t in = i == 0 ? o.emb : o.hidden;
    const int64_t out = i == o.layers - 1 ? o.emb : o.hidden;
    WeightDropLstm layer(in, out, o.weight_p);
    list->push_back(layer);
    rnns_.push_back(layer.ptr());
  }
}

std::vector<layer_state> AwdLstmImpl::initial_state(int64_t batch) const {
  std::vector<layer_state> s;
  auto opts = encoder_->weight.options();
  for (int64_t i = 0; i < o_.layers; ++i) {
    const int64_t w = i == o_.layers - 1 ? o_.emb : o_.hidden;
    s.emplace_back(torch::zeros({1, batch, w}, opts), torch::zeros({1, batch, w}, opts));
  }
  return s;
}

std::pair<torch::Tensor, std::vector<layer_state>> AwdLstmImpl::forward(const torch::Tensor& x,
                                                                        const std::vector<layer_state>& state) {
  return run(x, state, nullptr);
}

torch::Tensor AwdLstmImpl::all_layers(const torch::Tensor& x) {
  std::vector<torch::Tensor> outs;
  run(x, {}, &outs);
  return torch::cat(outs, 2);
}

std::pair<torch::Tensor, std::vector<layer_state>> AwdLstmImpl::run(const torch::Tensor& x,
                                                                    const std::vector<layer_state>& state,
                                                                    std::vector<torch::Tensor>* outs) {
  const bool training = is_training();
  auto w = encoder_->weight;
  if (training && o_.embed_p > 0) {
    // Embedding dropout: a word is dropped everywhere it occurs in the batch.
    auto mask = torch::empty({w.size(0), 1}, w.options()).bernoulli_(1 - o_.embed_p).div_(1 - o_.embed_p);
    w = w * mask;
  }
  auto h = F::embedding(x, w, F::EmbeddingFuncOptions().padding_idx(pad_id));
  h = rnn_dropout(h, o_.input_p, training);
  auto s = state.empty() ? initial_state(x.size(0)) : state;
  std::vector<layer_state> out_state;
  for (size_t i = 0; i < rnns_.size(); ++i) {
    auto r = std::static_pointer_cast<WeightDropLstmImpl>(rnns_[i])->forward(h, s[i]);
    h = r.first;
    out_state.push_back(r.second);
    if (outs)
      outs->push_back(h);
    if (i + 1 < rnns_.size())
      h = rnn_dropout(h, o_.hidden_p, training);
  }
  return {h, out_state};
}

torch::Tensor AwdLstmImpl::embedding_weight() const { return encoder_->weight; }

std::vector<std::vector<torch::Tensor>> AwdLstmImpl::layer_groups() const {
  std::vector<std::vector<torch::Tensor>> g;
  g.push_back(encoder_->parameters());
  for (auto& r : rnns_)
    g.push_back(r->parameters());
  return g;
}

namespace {
/// The tied decoder's own part ("decoder.bias"); its weight is the embedding.
struct DecoderBias : torch::nn::Module {
  explicit DecoderBias(int64_t n) { bias = register_parameter("bias", torch::zeros({n})); }
  torch::Tensor bias;
};
} // namespace

LanguageModelImpl::LanguageModelImpl(awd_options o) {
  encoder = register_module("encoder", AwdLstm(o));
  decoder_bias = register_module("decoder", std::make_shared<DecoderBias>(o.vocab))->bias;
}

std::pair<torch::Tensor, std::vector<layer_state>> LanguageModelImpl::forward(const torch::Tensor& x,
                                                                              const std::vector<layer_state>& state) {
  auto r = encoder->forward(x, state);
  auto h = rnn_dropout(r.first, encoder->options().output_p, is_training());
  return {F::linear(h, encoder->embedding_weight(), decoder_bias), r.second};
}

torch::Tensor concat_pool(const torch::Tensor& h, const torch::Tensor& lengths, bool with_last) {
  const int64_t B = h.size(0), T = h.size(1);
  auto len = lengths.to(h.device(), torch::kLong).clamp(1, T);
  auto mask = torch::arange(T, len.options()).unsqueeze(0).lt(len.unsqueeze(1)); // B x T
  auto m3 = mask.unsqueeze(2);
  auto mx = h.masked_fill(m3.logical_not(), -std::numeric_limits<float>::infinity()).amax(1);
  auto mean = (h * m3.to(h.dtype())).sum(1) / len.to(h.dtype()).unsqueeze(1);
  if (!with_last)
    return torch::cat({mx, mean}, 1);
  auto last = h.index({torch::arange(B, len.options()), len - 1});
  return torch::cat({last, mx, mean}, 1);
}

TextClassifierImpl::TextClassifierImpl(awd_options o, int64_t classes, double head_p) : head_p_(head_p) {
  encoder = register_module("encoder", AwdLstm(o));
  // Running statistics: a cumulative mean (momentum None) by default; the
  // text trainer picks per epoch (see TextTrainer::at_epoch_start).
  auto bn = [](int64_t n) { return torch::nn::BatchNorm1d(torch::nn::BatchNorm1dOptions(n).momentum(c10::nullopt)); };
  const int64_t f = 3 * (o.hidden * (o.layers - 1) + o.emb);
  torch::nn::BatchNorm1d bn1 = bn(f), bn2 = bn(50);
  torch::nn::Linear fc1(f, 50), fc2(50, classes);
  auto head = register_module("head", torch::nn::ModuleList());
  head->push_back(bn1);
  head->push_back(fc1);
  head->push_back(bn2);
  head->push_back(fc2);
  bn1_ = bn1.ptr();
  fc1_ = fc1.ptr();
  bn2_ = bn2.ptr();
  fc2_ = fc2.ptr();
}

torch::Tensor TextClassifierImpl::features(const torch::Tensor& x, const torch::Tensor& lengths) {
  return concat_pool(encoder->all_layers(x), lengths, true);
}

torch::Tensor TextClassifierImpl::forward(const torch::Tensor& x, const torch::Tensor& lengths) {
  const bool tr = is_training();
  auto f = features(x, lengths);
  auto h = F::dropout(bn1_->forward(f), F::DropoutFuncOptions().p(encoder->options().output_p).training(tr));
  h = torch::relu(fc1_->forward(h));
  h = F::dropout(bn2_->forward(h), F::DropoutFuncOptions().p(head_p_).training(tr));
  return fc2_->forward(h);
}

void TextClassifierImpl::set_cumulative_statistics(bool cumulative) {
  for (auto* bn : {bn1_.get(), bn2_.get()})
    bn->options.momentum(cumulative ? c10::optional<double>() : c10::optional<double>(0.1));
}

void TextClassifierImpl::reset_head_statistics() {
  bn1_->reset_running_stats();
  bn2_->reset_running_stats();
}

std::vector<torch::Tensor> TextClassifierImpl::head_parameters() const {
  std::vector<torch::Tensor> out;
  for (auto* m : {static_cast<torch::nn::Module*>(bn1_.get()), static_cast<torch::nn::Module*>(fc1_.get()),
                  static_cast<torch::nn::Module*>(bn2_.get()), static_cast<torch::nn::Module*>(fc2_.get())})
    for (auto& p : m->parameters())
      out.push_back(p);
  return out;
}

// --- on disk ----------------------------------------------------------------------

std::string builtin_text_model_dir(const std::string& name) {
  std::error_code ec;
  auto holds = [&](const fs::path& d) { return fs::exists(d / "text_model.json", ec); };
  if (const char* env = std::getenv("ROOKERY_TEXT_MODELS"); env && *env)
    return holds(fs::path(env) / name) ? (fs::path(env) / name).string() : "";
  if (!builtin_models_dir().empty() && holds(fs::path(builtin_models_dir()) / name))
    return (fs::path(builtin_models_dir()) / name).string();
  const auto exe = fs::read_symlink("/proc/self/exe", ec).parent_path();
  for (const auto& d : {exe / "builtin-models" / name, exe / ".." / "build" / "builtin-models" / name})
    if (holds(d))
      return fs::weakly_canonical(d, ec).string();
  return "";
}

result<std::shared_ptr<text_model>> load_text_model(const std::string& dir_s) {
  const fs::path dir = dir_s;
  const std::string name = dir.filename().string();
  std::ifstream in(dir / "text_model.json");
  if (!in)
    return fail(errc::not_found, "no text model in '" + name + "'");
  auto cfg = json::parse(in, nullptr, false);
  if (!cfg.is_object() || !cfg.contains("options") || !cfg.contains("task"))
    return fail(errc::unprocessable, "text_model.json of '" + name + "' is damaged");
  auto m = std::make_shared<text_model>();
  try {
    auto o = awd_options::from_json(cfg.at("options"));
    if (!o)
      return fail(errc::unprocessable, "text model '" + name + "': " + o.error().message);
    m->options = *o;
    m->task = cfg.at("task").get<std::string>();
    if (cfg.contains("input") && cfg["input"].is_object())
      m->max_len = cfg["input"].value("max_len", int64_t{512});
    m->classes = cfg.value("classes", std::vector<std::string>{});
    auto tok = subword_tokenizer::load((dir / cfg.value("tokenizer", "tokenizer.bpe")).string());
    if (!tok)
      return fail(errc::unprocessable, "text model '" + name + "': " + tok.error().message);
    if (tok->vocab_size() > m->options.vocab)
      return fail(errc::unprocessable, "text model '" + name + "': its tokenizer has more pieces than its embedding");
    m->tokenizer = std::move(*tok);
    const auto weights = (dir / cfg.value("weights", "model.pt")).string();
    if (m->task == "lm") {
      m->lm = LanguageModel(m->options);
      torch::load(m->lm, weights);
      m->lm->eval();
    } else if (m->task == "classify") {
      if (m->classes.empty())
        return fail(errc::unprocessable, "text model '" + name + "' names no classes");
      m->classifier = TextClassifier(m->options, static_cast<int64_t>(m->classes.size()));
      torch::load(m->classifier, weights);
      m->classifier->eval();
    } else {
      return fail(errc::unprocessable, "text model '" + name + "' has an unknown task '" + m->task + "'");
    }
  } catch (const std::exception& e) {
    return fail(errc::unprocessable, "text model '" + name + "' does not load: "
                                       + std::string(e.what()).substr(0, 200));
  }
  return m;
}

std::vector<float> embed_text(text_model& m, std::string_view text) {
  auto ids = m.tokenizer.encode(text);
  if (static_cast<int64_t>(ids.size()) > m.max_len - 1)
    ids.resize(static_cast<size_t>(std::max<int64_t>(0, m.max_len - 1)));
  ids.insert(ids.begin(), bos_id);
  torch::NoGradGuard no_grad;
  auto enc = m.encoder();
  enc->eval();
  auto x = torch::tensor(ids, torch::kLong).unsqueeze(0);
  auto h = enc->all_layers(x);
  auto f = concat_pool(h, torch::tensor({static_cast<int64_t>(ids.size())}), false).contiguous();
  return {f.data_ptr<float>(), f.data_ptr<float>() + f.numel()};
}

} // namespace rookery::text

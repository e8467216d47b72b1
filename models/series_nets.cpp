#include "models/series_nets.hpp"

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "trainers/spec.hpp"

using json = nlohmann::json;
namespace nn = torch::nn;

namespace rookery::series {

namespace {

/// One Inception module: bottleneck, three convolutions, max-pool branch.
class InceptionModuleImpl : public nn::Module {
public:
  InceptionModuleImpl(int64_t ni, int64_t nf, int64_t ks) {
    const bool bottleneck = ni > 1;
    if (bottleneck)
      bottleneck_ = register_module("bottleneck", nn::Conv1d(nn::Conv1dOptions(ni, nf, 1).bias(false)));
    const int64_t in = bottleneck ? nf : ni;
    for (int64_t k : {ks - 1, ks / 2 - 1, ks / 4 - 1}) {
      int64_t kk = k % 2 == 0 ? k + 1 : k; // odd, so "same" padding is symmetric
      convs_.push_back(register_module("conv" + std::to_string(convs_.size()),
                                       nn::Conv1d(nn::Conv1dOptions(in, nf, kk).padding(kk / 2).bias(false))));
    }
    pool_conv_ = register_module("pool_conv", nn::Conv1d(nn::Conv1dOptions(ni, nf, 1).bias(false)));
    bn_ = register_module("bn", nn::BatchNorm1d(4 * nf));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto b = bottleneck_ ? bottleneck_->forward(x) : x;
    std::vector<torch::Tensor> outs;
    for (auto& c : convs_)
      outs.push_back(c->forward(b));
    outs.push_back(pool_conv_->forward(torch::max_pool1d(x, 3, 1, 1)));
    return torch::relu(bn_->forward(torch::cat(outs, 1)));
  }

private:
  nn::Conv1d bottleneck_{nullptr};
  std::vector<nn::Conv1d> convs_;
  nn::Conv1d pool_conv_{nullptr};
  nn::BatchNorm1d bn_{nullptr};
};
TORCH_MODULE(InceptionModule);

class InceptionBody final : public SeriesNetImpl::body {
public:
  explicit InceptionBody(const net_options& o) : residual_(o.residual) {
    int64_t ni = o.in_channels, res_in = o.in_channels;
    for (int64_t d = 0; d < o.depth; ++d) {
      modules_.push_back(register_module("inception" + std::to_string(d),
                                         InceptionModule(ni, o.nf, o.kernel)));
      ni = 4 * o.nf;
      if (residual_ && d % 3 == 2) {
        // The shortcut from the input of this block of three to its output.
        auto seq = nn::Sequential(nn::Conv1d(nn::Conv1dOptions(res_in, ni, 1).bias(false)),
                                  nn::BatchNorm1d(ni));
        shortcuts_.push_back(register_module("shortcut" + std::to_string(shortcuts_.size()), seq));
        res_in = ni;
      }
    }
  }
  torch::Tensor encode(const torch::Tensor& x) override {
    auto h = x, res = x;
    for (size_t d = 0; d < modules_.size(); ++d) {
      h = modules_[d]->forward(h);
      if (residual_ && d % 3 == 2) {
        h = torch::relu(h + shortcuts_[d / 3]->forward(res));
        res = h;
      }
    }
    return h.mean(2); // global average pooling over time
  }

private:
  bool residual_;
  std::vector<InceptionModule> modules_;
  std::vector<nn::Sequential> shortcuts_;
};

class RecurrentBody final : public SeriesNetImpl::body {
public:
  explicit RecurrentBody(const net_options& o) : o_(o) {
    if (o.arch == "lstm")
      lstm_ = register_module("rnn", nn::LSTM(nn::LSTMOptions(o.in_channels, o.hidden)
                                                .num_layers(o.layers).batch_first(true)
                                                .bidirectional(o.bidirectional)
                                                .dropout(o.layers > 1 ? o.dropout : 0)));
    else
      gru_ = register_module("rnn", nn::GRU(nn::GRUOptions(o.in_channels, o.hidden)
                                              .num_layers(o.layers).batch_first(true)
                                              .bidirectional(o.bidirectional)
                                              .dropout(o.layers > 1 ? o.dropout : 0)));
  }
  torch::Tensor encode(const torch::Tensor& x) override {
    auto seq = x.transpose(1, 2).contiguous(); // (B, L, C)
    torch::Tensor h;
    if (lstm_)
      h = std::get<0>(std::get<1>(lstm_->forward(seq)));
    else
      h = std::get<1>(gru_->forward(seq));
    const int64_t dirs = o_.bidirectional ? 2 : 1, b = x.size(0);
    auto last = h.view({o_.layers, dirs, b, o_.hidden}).select(0, o_.layers - 1);
    return last.permute({1, 0, 2}).reshape({b, dirs * o_.hidden});
  }

private:
  net_options o_;
  nn::LSTM lstm_{nullptr};
  nn::GRU gru_{nullptr};
};

} // namespace

int64_t net_options::feature_dim() const {
  const int64_t one = arch == "inception_time" ? 4 * nf : hidden * (bidirectional ? 2 : 1);
  return one * (arch == "inception_time" ? ensemble : 1);
}

std::string net_options::to_json() const {
  return json{{"arch", arch},         {"in_channels", in_channels}, {"outputs", outputs},
              {"nf", nf},             {"depth", depth},             {"kernel", kernel},
              {"residual", residual}, {"ensemble", ensemble},       {"hidden", hidden},
              {"layers", layers},     {"bidirectional", bidirectional}, {"dropout", dropout}}
    .dump();
}

result<net_options> net_options::from_json(const json& j, const std::string& arch) {
  net_options o;
  o.arch = arch;
  train::spec_reader r(j, "model.options");
  r.integer("in_channels", o.in_channels, 1, 64).integer("outputs", o.outputs, 1, 100000);
  if (arch == "inception_time") {
    r.integer("nf", o.nf, 1, 256)
      .integer("depth", o.depth, 1, 24)
      .integer("kernel", o.kernel, 8, 256)
      .boolean("residual", o.residual)
      .integer("ensemble", o.ensemble, 1, 10);
  } else if (arch == "lstm" || arch == "gru") {
    r.integer("hidden", o.hidden, 1, 4096)
      .integer("layers", o.layers, 1, 8)
      .boolean("bidirectional", o.bidirectional)
      .number("dropout", o.dropout, 0, 1, false, true);
  } else {
    return fail(errc::bad_request, "model.arch '" + arch + "' is not a series network "
                                   "(inception_time, lstm, gru)");
  }
  if (auto st = r.done(); !st)
    return st.error();
  return o;
}

SeriesNetImpl::SeriesNetImpl(net_options o) : o_(std::move(o)) {
  const int64_t members = o_.arch == "inception_time" ? o_.ensemble : 1;
  const int64_t dim = o_.feature_dim() / members;
  for (int64_t m = 0; m < members; ++m) {
    std::shared_ptr<body> b;
    if (o_.arch == "inception_time")
      b = std::make_shared<InceptionBody>(o_);
    else
      b = std::make_shared<RecurrentBody>(o_);
    bodies_.push_back(register_module("body" + std::to_string(m), b));
    heads_.push_back(register_module("head" + std::to_string(m), std::make_shared<nn::LinearImpl>(dim, o_.outputs)));
  }
}

torch::Tensor SeriesNetImpl::forward(const torch::Tensor& x) {
  torch::Tensor sum;
  for (size_t m = 0; m < bodies_.size(); ++m) {
    auto y = heads_[m]->forward(bodies_[m]->encode(x));
    sum = sum.defined() ? sum + y : y;
  }
  return bodies_.size() > 1 ? sum / static_cast<double>(bodies_.size()) : sum;
}

torch::Tensor SeriesNetImpl::features(const torch::Tensor& x) {
  std::vector<torch::Tensor> f;
  for (auto& b : bodies_)
    f.push_back(b->encode(x));
  return f.size() == 1 ? f[0] : torch::cat(f, 1);
}

void SeriesNetImpl::freeze_body(bool frozen) {
  for (auto& b : bodies_)
    for (auto& p : b->parameters())
      p.set_requires_grad(!frozen);
}

RocketHeadImpl::RocketHeadImpl(int64_t features, int64_t outputs) {
  mean = register_buffer("mean", torch::zeros({features}));
  std = register_buffer("std", torch::ones({features}));
  head_ = register_module("head", std::make_shared<nn::LinearImpl>(features, outputs));
}

torch::Tensor RocketHeadImpl::standardize(const torch::Tensor& f) {
  return (f - mean) / std;
}

torch::Tensor RocketHeadImpl::forward(const torch::Tensor& f) {
  return head_->forward(f);
}

} // namespace rookery::series

// Networks for series of shape (batch, channels, length):
//
//   inception_time  Fawaz et al. 2020, "InceptionTime: Finding AlexNet for
//                   Time Series Classification": `depth` Inception modules
//                   (a 1x1 bottleneck when the input has more than one
//                   channel, three convolutions of kernel 39, 19 and 9 on it,
//                   a max-pool + 1x1 branch; batch norm and ReLU over the four
//                   concatenated), a residual shortcut (1x1 conv + batch norm)
//                   around every three modules, global average pooling and a
//                   linear head. `ensemble` > 1 trains that many independently
//                   initialised networks side by side and averages their
//                   logits (the paper's ensemble of five); their features
//                   concatenate.
//   lstm, gru       a stacked (optionally bidirectional) recurrent encoder
//                   over time; the features are the last layer's final state.
//
// forward() gives the head's outputs; features() what comes before the head
// (the embedding a served model answers). Pulls in torch headers (no
// torch/torch.h): trainers and pipeline operators include it.
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include "common/result.hpp"

namespace torch::nn {
class LinearImpl;
}

namespace rookery::series {

struct net_options {
  std::string arch = "inception_time"; // inception_time | lstm | gru
  int64_t in_channels = 1;
  int64_t outputs = 2;
  // inception_time
  int64_t nf = 32;        // filters per branch (a module gives 4 x nf channels)
  int64_t depth = 6;      // Inception modules
  int64_t kernel = 40;    // the longest kernel + 1 (39, 19, 9 for 40)
  bool residual = true;   // shortcuts every 3 modules
  int64_t ensemble = 1;   // networks averaged
  // lstm / gru
  int64_t hidden = 64;
  int64_t layers = 2;
  bool bidirectional = false;
  double dropout = 0.1;

  std::string to_json() const;
  /// The architecture's keys of `j` (the job's "model.options"); bad_request
  /// naming "model.options.<key>".
  static result<net_options> from_json(const nlohmann::json& j, const std::string& arch);
  int64_t feature_dim() const;
};

class SeriesNetImpl : public torch::nn::Module {
public:
  explicit SeriesNetImpl(net_options o);
  torch::Tensor forward(const torch::Tensor& x);  // (B, C, L) -> (B, outputs)
  torch::Tensor features(const torch::Tensor& x); // (B, C, L) -> (B, feature_dim)
  /// fine_tune: with frozen, only the head's parameters train.
  void freeze_body(bool frozen);
  const net_options& options() const { return o_; }

  /// An encoder of one ensemble member: (B, C, L) -> (B, D).
  class body : public torch::nn::Module {
  public:
    virtual torch::Tensor encode(const torch::Tensor& x) = 0;
  };

private:
  net_options o_;
  std::vector<std::shared_ptr<body>> bodies_;        // "body0", "body1", ...
  std::vector<std::shared_ptr<torch::nn::LinearImpl>> heads_; // "head0", ...
};
TORCH_MODULE(SeriesNet);

/// MiniRocket's trained part: the features' standardisation (buffers
/// "mean" and "std", fitted on the training split) and a linear head.
class RocketHeadImpl : public torch::nn::Module {
public:
  RocketHeadImpl(int64_t features, int64_t outputs);
  torch::Tensor standardize(const torch::Tensor& f); // (B, F) PPVs -> standardised
  torch::Tensor forward(const torch::Tensor& f);     // standardised (B, F) -> (B, outputs)
  torch::Tensor mean, std;

private:
  std::shared_ptr<torch::nn::LinearImpl> head_;
};
TORCH_MODULE(RocketHead);

} // namespace rookery::series

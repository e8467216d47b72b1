// Blocks in the FastAI sense: a task is an input block and a target block,
// each knowing how to encode what a data set (or a user's upload) holds into
// what a model takes. This file has the series blocks:
//
//   input  "timeseries": channels x length; per-channel standardisation
//          (statistics of the training split), per-series standardisation or
//          none; series of another length padded (zeros after standardising,
//          so the mean), cropped (the last `length` points) or resampled.
//   target "label":      a single class of the data set's classes.
//   target "continuous": regression targets, standardised with the training
//          split's statistics; for forecasting the next `horizon` values of
//          one channel (`column`).
//
//   input  "text":       tokenization (a byte-level BPE subword model trained
//          on the training split, or the pretrained model's own),
//          numericalization with its vocabulary, at most max_len tokens
//          per text (a bos token first), padded per batch with the lengths.
//   target "lm":         the next token (a language model on the texts).
//
// The job spec's "task": {"input": {"block": "timeseries", "length": 60,
// "standardize": "per_channel", "fit": "pad"}, "target": {"block": "label"}}.
// A block that does not suit the data set is a 400 naming both. The fitted
// input block is exported with the model, so serving encodes an upload
// exactly as training encoded the data. Torch-free.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/result.hpp"
#include "datasets/registry.hpp"

namespace rookery::train {

struct series_block {
  int64_t channels = 0;                    // 0 until fitted: the data's
  int64_t length = 0;                      // 0: the data's longest (forecasting: the lookback)
  std::string standardize = "per_channel"; // per_channel | per_series | none
  std::string fit = "pad";                 // pad | crop | resample
  std::vector<double> mean, std;           // per channel (per_channel, once fitted)

  /// Channels x length floats of one series (channels x any length >= 1),
  /// row-major. bad_request when the channel count differs.
  result<std::vector<float>> encode(const std::vector<std::vector<double>>& x) const;
  /// Fits channels, length (when 0) and the per-channel statistics on the
  /// training items.
  void fit_to(const std::vector<std::vector<std::vector<double>>>& train);
  std::string to_json() const;
  static result<series_block> from_json(const nlohmann::json& j);
};

struct target_block {
  std::string block = "label";     // label | continuous
  std::vector<std::string> classes; // label: the data set's
  int64_t horizon = 1;              // continuous (forecasting): steps ahead
  std::string column;               // continuous: the channel forecast ("" = the first)
  bool standardize = true;          // continuous
  double mean = 0, std = 1;         // continuous, fitted on the training split
};

struct series_task {
  series_block input;
  target_block target;
};

struct text_block {
  int64_t vocab = 4000;   // subword pieces (a pretrained model's tokenizer wins)
  int64_t max_len = 256;  // tokens read per text (classification and serving)
  std::string to_json() const;
};

struct text_task {
  text_block input;
  std::string target = "label";      // label | lm
  std::vector<std::string> classes; // label: the data set's
};

/// Reads spec["task"] for the text trainer: a text_classification data set;
/// input {"block": "text", "vocab", "max_len"}, target {"block": "label"}
/// (the default) or {"block": "lm"}. bad_request naming the key, and naming
/// both when a block does not suit the data set.
result<text_task> parse_text_task(const nlohmann::json& spec, const data::dataset_info& ds);

/// Reads spec["task"] against the data set: the default for a
/// series_classification set is {timeseries, label}, for a
/// series_forecasting set {timeseries with length 2 x season (at least 8),
/// continuous with horizon = season}. bad_request naming the key, and when a
/// block does not suit the data set, naming both.
result<series_task> parse_series_task(const nlohmann::json& spec, const data::dataset_info& ds);

} // namespace rookery::train

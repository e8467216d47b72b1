// Loading registered data sets into memory for training. Pulls in torch: only
// trainers/ and tests include it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <torch/data/datasets/base.h>
#include <torch/data/example.h>
#include <torch/types.h>

#include "common/result.hpp"
#include "datasets/registry.hpp"

namespace rookery::data {

/// Images as uint8 N x C x H x W (compact: Fashion-MNIST's train split is
/// 47 MB) with int64 labels N; classes[label] names each label.
struct image_set {
  torch::Tensor images; // uint8, N x C x H x W
  torch::Tensor labels; // int64, N
  std::vector<std::string> classes;
  int64_t size() const { return images.defined() ? images.size(0) : 0; }
};

struct image_splits {
  image_set train, test;
};

/// Texts with class labels (fortunes: one fortune per item, its file as class).
struct text_set {
  std::vector<std::string> texts;
  std::vector<int64_t> labels;
  std::vector<std::string> classes;
};

struct text_splits {
  text_set train, test;
};

/// A numeric table (CSV): columns by name, values as float64 N x D; non-numeric
/// cells are an error at load time.
struct table_set {
  std::vector<std::string> columns;
  torch::Tensor values; // float64, N x D
};

struct load_options {
  int64_t limit_train = 0; // 0: all; else the first n of a fixed seeded shuffle
  int64_t limit_test = 0;
  uint64_t seed = 0;       // for the subset choice
};

/// Loads an image_classification data set (fashion-mnist or an image_folder
/// upload). Errors: not_found, bad_request (wrong kind), unprocessable
/// (malformed files: bad IDX magic, truncated data, counts that disagree).
result<image_splits> load_images(const dataset_info& ds, const load_options& opt = {});

/// Loads a text_classification data set (fortunes). The split is
/// deterministic (a hash of each text), about 10% test.
result<text_splits> load_texts(const dataset_info& ds, const load_options& opt = {});

/// Loads a table data set (csv upload).
result<table_set> load_table(const dataset_info& ds);

/// Reads one IDX file (optionally gzip-compressed, as Debian ships them):
/// uint8 tensor with the file's dimensions. unprocessable on a bad magic,
/// an unsupported element type, or fewer bytes than the header promises.
result<torch::Tensor> read_idx(const std::string& path);

/// A LibTorch dataset over an image_set: float images in [0,1] (optionally
/// normalised by mean/std per channel) and labels.
class ImageTensorDataset : public torch::data::datasets::Dataset<ImageTensorDataset> {
public:
  explicit ImageTensorDataset(image_set set) : set_(std::move(set)) {}
  /// Also normalises: (x - mean[c]) / std[c] per channel (both of size C).
  ImageTensorDataset(image_set set, std::vector<double> mean, std::vector<double> std);
  torch::data::Example<> get(size_t index) override;
  torch::optional<size_t> size() const override { return static_cast<size_t>(set_.size()); }
  const image_set& set() const { return set_; }

private:
  image_set set_;
  torch::Tensor mean_, std_; // C x 1 x 1 when normalising
};

} // namespace rookery::data

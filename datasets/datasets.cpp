// Loading registered data sets into tensors.
#include "datasets/datasets.hpp"

#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "datasets/detail.hpp"

namespace fs = std::filesystem;

namespace rookery::data {

namespace {

using namespace detail;

/// The first n of a seeded shuffle of 0..size-1. Fisher-Yates over
/// mt19937_64 (whose output the standard fixes) so a seed picks the same
/// subset with every standard library.
std::vector<int64_t> seeded_subset(int64_t size, int64_t n, uint64_t seed) {
  std::vector<int64_t> idx(static_cast<size_t>(size));
  std::iota(idx.begin(), idx.end(), 0);
  std::mt19937_64 rng(seed);
  for (int64_t i = size - 1; i > 0; --i)
    std::swap(idx[i], idx[rng() % static_cast<uint64_t>(i + 1)]);
  idx.resize(static_cast<size_t>(n));
  return idx;
}

// Train and test subsets draw from different streams of the same seed.
constexpr uint64_t test_seed_offset = 0x9e3779b97f4a7c15ull;

void limit(image_set& set, int64_t n, uint64_t seed) {
  if (n <= 0 || n >= set.size())
    return;
  auto idx = torch::tensor(seeded_subset(set.size(), n, seed), torch::kInt64);
  set.images = set.images.index_select(0, idx);
  set.labels = set.labels.index_select(0, idx);
}

void limit(text_set& set, int64_t n, uint64_t seed) {
  const auto size = static_cast<int64_t>(set.texts.size());
  if (n <= 0 || n >= size)
    return;
  text_set out;
  out.classes = set.classes;
  for (int64_t i : seeded_subset(size, n, seed)) {
    out.texts.push_back(std::move(set.texts[i]));
    out.labels.push_back(set.labels[i]);
  }
  set = std::move(out);
}

result<image_splits> load_fashion_mnist(const dataset_info& ds) {
  if (!ds.available)
    return fail(errc::not_found, ds.status);
  auto read = [&](const char* base) -> result<torch::Tensor> {
    std::string path = find_idx_file(ds.path, base);
    if (path.empty())
      return fail(errc::not_found, std::string("Fashion-MNIST file ") + base +
                                       " is missing: install the Debian package "
                                       "dataset-fashion-mnist");
    return read_idx(path);
  };
  auto split = [&](const char* images_base, const char* labels_base) -> result<image_set> {
    auto images = read(images_base);
    if (!images)
      return images.error();
    auto labels = read(labels_base);
    if (!labels)
      return labels.error();
    const auto& x = images.value();
    const auto& y = labels.value();
    if (x.dim() != 3 || y.dim() != 1)
      return fail(errc::unprocessable, std::string("Fashion-MNIST ") + images_base +
                                           " must be N x H x W and " + labels_base + " N");
    if (x.size(0) != y.size(0))
      return fail(errc::unprocessable, std::string("Fashion-MNIST ") + images_base + " has " +
                                           std::to_string(x.size(0)) + " images but " +
                                           labels_base + " has " + std::to_string(y.size(0)) +
                                           " labels");
    if (y.numel() > 0 && y.max().item<int64_t>() >= static_cast<int64_t>(ds.classes.size()))
      return fail(errc::unprocessable,
                  std::string("Fashion-MNIST ") + labels_base + " has labels out of range");
    return image_set{x.unsqueeze(1).contiguous(), y.to(torch::kInt64), ds.classes};
  };
  auto train = split("train-images-idx3-ubyte", "train-labels-idx1-ubyte");
  if (!train)
    return train.error();
  auto test = split("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte");
  if (!test)
    return test.error();
  return image_splits{std::move(train.value()), std::move(test.value())};
}

/// Reads a whole file into a fresh tensor of `shape`; unprocessable when its
/// size disagrees.
result<torch::Tensor> read_blob(const fs::path& p, std::vector<int64_t> shape,
                                torch::ScalarType type) {
  auto t = torch::empty(shape, type);
  const auto want = static_cast<uintmax_t>(t.nbytes());
  std::error_code ec;
  auto have = fs::file_size(p, ec);
  if (ec)
    return fail(errc::not_found, "missing " + p.filename().string() + " in the data set");
  if (have != want)
    return fail(errc::unprocessable, p.filename().string() + " has " + std::to_string(have) +
                                         " bytes, expected " + std::to_string(want));
  std::ifstream in(p, std::ios::binary);
  in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(want));
  if (!in)
    return fail(errc::internal, "cannot read " + p.filename().string());
  return t;
}

result<image_splits> load_image_folder(const dataset_info& ds) {
  if (ds.item_shape.size() != 3)
    return fail(errc::unprocessable, "data set '" + ds.name + "' has no item shape");
  const int64_t n = ds.train_size + ds.test_size;
  std::vector<int64_t> shape{n, ds.item_shape[0], ds.item_shape[1], ds.item_shape[2]};
  auto images = read_blob(fs::path(ds.path) / images_file, shape, torch::kUInt8);
  if (!images)
    return images.error();
  auto labels = read_blob(fs::path(ds.path) / labels_file, {n}, torch::kInt64);
  if (!labels)
    return labels.error();
  const auto& y = labels.value();
  if (n > 0 && (y.min().item<int64_t>() < 0 ||
                y.max().item<int64_t>() >= static_cast<int64_t>(ds.classes.size())))
    return fail(errc::unprocessable, "data set '" + ds.name + "' has labels out of range");
  // Stored train first, then test.
  image_splits s;
  s.train = {images->narrow(0, 0, ds.train_size), y.narrow(0, 0, ds.train_size), ds.classes};
  s.test = {images->narrow(0, ds.train_size, ds.test_size), y.narrow(0, ds.train_size, ds.test_size),
            ds.classes};
  return s;
}

} // namespace

result<torch::Tensor> read_idx(const std::string& path) {
  try {
    torch::Tensor t;
    auto dims = read_idx_file(path, [&](const std::vector<int64_t>& d) {
      t = torch::empty(d, torch::kUInt8);
      return t.data_ptr<uint8_t>();
    });
    if (!dims)
      return dims.error();
    return t;
  } catch (const c10::Error& e) {
    return fail(errc::internal, "reading IDX file " + path + ": " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    return fail(errc::internal, "reading IDX file " + path + ": " + e.what());
  }
}

result<image_splits> load_images(const dataset_info& ds, const load_options& opt) {
  if (ds.kind != "image_classification")
    return fail(errc::bad_request, "data set '" + ds.name + "' is a " + ds.kind +
                                       " data set, not image classification");
  try {
    if (ds.format != "idx" && ds.format != "image_folder")
      return fail(errc::bad_request, "cannot load images of format '" + ds.format + "'");
    auto s = ds.format == "idx" ? load_fashion_mnist(ds) : load_image_folder(ds);
    if (!s)
      return s;
    limit(s->train, opt.limit_train, opt.seed);
    limit(s->test, opt.limit_test, opt.seed + test_seed_offset);
    return s;
  } catch (const c10::Error& e) {
    return fail(errc::internal, "loading '" + ds.name + "': " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    return fail(errc::internal, "loading '" + ds.name + "': " + e.what());
  }
}

namespace {

/// An uploaded text_folder: texts.jsonl as import.cpp wrote it.
result<text_splits> load_text_folder(const dataset_info& ds, const load_options& opt) {
  std::ifstream in(fs::path(ds.path) / texts_file, std::ios::binary);
  if (!in)
    return fail(errc::unprocessable, "data set '" + ds.name + "' has lost its texts");
  text_splits s;
  s.train.classes = s.test.classes = ds.classes;
  std::string line;
  const auto n_classes = static_cast<int64_t>(ds.classes.size());
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_object() || !j.contains("text") || !j["text"].is_string() || !j.contains("label")
        || !j["label"].is_number_integer())
      return fail(errc::unprocessable, "data set '" + ds.name + "' has a damaged texts file");
    const auto label = j["label"].get<int64_t>();
    if (label < 0 || label >= n_classes)
      return fail(errc::unprocessable, "data set '" + ds.name + "' has a text of an unknown class");
    text_set& dst = j.value("test", false) ? s.test : s.train;
    dst.texts.push_back(j["text"].get<std::string>());
    dst.labels.push_back(label);
  }
  limit(s.train, opt.limit_train, opt.seed);
  limit(s.test, opt.limit_test, opt.seed + test_seed_offset);
  return s;
}

} // namespace

result<text_splits> load_texts(const dataset_info& ds, const load_options& opt) {
  if (ds.kind != "text_classification")
    return fail(errc::bad_request, "data set '" + ds.name + "' is a " + ds.kind +
                                       " data set, not text classification");
  if (ds.format != "fortune" && ds.format != "wordnet" && ds.format != "text_folder")
    return fail(errc::bad_request, "cannot load texts of format '" + ds.format + "'");
  if (!ds.available)
    return fail(errc::not_found, ds.status);
  if (ds.format == "text_folder")
    return load_text_folder(ds, opt);
  try {
    auto corpus = ds.format == "wordnet" ? read_wordnet(ds.path) : read_fortunes(ds.path);
    if (!corpus)
      return corpus.error();
    if (corpus->classes.empty())
      return fail(errc::not_found, "no fortunes found: install the Debian package fortunes");
    text_splits s;
    s.train.classes = s.test.classes = corpus->classes;
    for (size_t i = 0; i < corpus->texts.size(); ++i) {
      text_set& dst = fortune_is_test(corpus->texts[i]) ? s.test : s.train;
      dst.texts.push_back(std::move(corpus->texts[i]));
      dst.labels.push_back(corpus->labels[i]);
    }
    limit(s.train, opt.limit_train, opt.seed);
    limit(s.test, opt.limit_test, opt.seed + test_seed_offset);
    return s;
  } catch (const std::exception& e) {
    return fail(errc::internal, "loading '" + ds.name + "': " + e.what());
  }
}

result<table_set> load_table(const dataset_info& ds) {
  if (ds.kind != "table" || ds.format != "csv")
    return fail(errc::bad_request, "data set '" + ds.name + "' is a " + ds.kind +
                                       " data set, not a table");
  try {
    auto table = parse_csv((fs::path(ds.path) / csv_file).string());
    if (!table) {
      // It was checked at import: a failure now means the file was damaged.
      if (table.error().code == errc::bad_request)
        return fail(errc::unprocessable, table.error().message);
      return table.error();
    }
    const auto cols = static_cast<int64_t>(table->columns.size());
    table_set out;
    out.columns = std::move(table->columns);
    out.values = torch::tensor(table->values, torch::kFloat64).reshape({table->rows, cols});
    return out;
  } catch (const c10::Error& e) {
    return fail(errc::internal, "loading '" + ds.name + "': " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    return fail(errc::internal, "loading '" + ds.name + "': " + e.what());
  }
}

ImageTensorDataset::ImageTensorDataset(image_set set, std::vector<double> mean,
                                       std::vector<double> std)
    : set_(std::move(set)) {
  if (!mean.empty() && mean.size() == std.size()) {
    const auto c = static_cast<int64_t>(mean.size());
    mean_ = torch::tensor(mean, torch::kFloat32).reshape({c, 1, 1});
    std_ = torch::tensor(std, torch::kFloat32).reshape({c, 1, 1});
  }
}

torch::data::Example<> ImageTensorDataset::get(size_t index) {
  const auto i = static_cast<int64_t>(index);
  torch::Tensor x = set_.images[i].to(torch::kFloat32).div_(255.0);
  if (mean_.defined())
    x = (x - mean_) / std_;
  return {x, set_.labels[i].to(torch::kInt64)};
}

} // namespace rookery::data

// The dataset registry: built-in data sets that Debian ships (Fashion-MNIST,
// fortunes) and data sets users upload (an image folder as a tar/zip archive,
// one sub-folder per class; or a CSV table). Torch-free header: actor and
// HTTP code include it.
//
// On disk, uploads live under <data>/datasets/<name>/ with a dataset.json
// describing them (kind, owner, classes, counts) and their files:
//   image_folder: images.u8 (every image decoded at import, resized, as raw
//                 uint8 C x H x W, RGB for colour; train items first, then
//                 test items, per class in member-path order) and labels.i64
//                 (one little-endian int64 class index per image, same order).
//                 train_size/test_size and item_shape in dataset.json give the
//                 blob's shape. Compact and loaded with two reads.
//   csv:          data.csv (the upload, checked at import)
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace rookery::data {

/// Where the built-in data sets are read from (config keys fashion_mnist_dir,
/// fortunes_dir).
struct dataset_paths {
  std::string data_dir;                                          // <data>
  std::string fashion_mnist_dir = "/usr/share/datasets/fashion-mnist";
  std::string fortunes_dir = "/usr/share/games/fortunes";
  std::string wordnet_dir = "/usr/share/wordnet";                // Debian's wordnet-base
};

struct dataset_info {
  std::string name;   // "fashion-mnist", "fortunes", or an upload's name
  std::string kind;   // "image_classification" | "text_classification" | "table"
  std::string source; // "builtin" | "upload"
  std::string format; // "idx" | "fortune" | "image_folder" | "csv"
  uint64_t owner_id = 0;               // uploads: the user; 0 for built-ins
  std::vector<std::string> classes;    // class names (image/text classification)
  std::vector<std::string> columns;    // table: column names
  int64_t train_size = 0, test_size = 0; // items (table: rows in train_size)
  std::vector<int64_t> item_shape;     // images: {C, H, W} as stored (uploads: after import resize)
  bool available = true;               // built-in whose package is missing: false
  std::string status;                  // why not available, or a short description
  std::string path;                    // directory (never shown to users)
  int64_t created_at = 0;
};

/// Built-ins plus the uploads `user_id` may see (theirs; all when is_admin).
std::vector<dataset_info> list_datasets(const dataset_paths& paths, uint64_t user_id,
                                        bool is_admin);

/// One data set by name, visible to the user (not_found otherwise).
result<dataset_info> find_dataset(const dataset_paths& paths, const std::string& name,
                                  uint64_t user_id, bool is_admin);

struct import_options {
  std::string name;      // 1-64 of letters, digits, '_', '-', '.'; not a built-in's name
  std::string format;    // "image_folder" (tar/zip/tar.gz archive) | "csv"; empty: sniffed
  uint64_t owner_id = 0;
  int64_t image_size = 0;     // image_folder: resize every image to size x size (0: keep
                              // the first image's size; all must then agree)
  int64_t channels = 0;       // image_folder: 1 or 3 (0: 1 if every image is grayscale, else 3)
  double test_fraction = 0.2; // held-out share, split per class deterministically
  uint64_t max_entries = 200000; // archive members
  uint64_t max_bytes = 1ull << 30; // uncompressed total
};

/// Imports an uploaded file (already on disk at `file`) as a new data set.
/// Errors: bad_request (name, format, unreadable archive or CSV with the
/// reason: no class folders, a file that is not an image, ragged rows...),
/// conflict (name taken), payload_too_large (limits), internal (I/O).
/// Nothing is left behind on failure.
result<dataset_info> import_dataset(const dataset_paths& paths, const std::string& file,
                                    const import_options& opt);

/// At start: removes what interrupted imports and removals left behind
/// (`.import-*`, `.removing-*`) and moves data sets of the old flat layout
/// (<data>/datasets/<name>) into their owner's directory. Returns how many
/// leftovers were removed.
std::size_t recover_uploads(const dataset_paths& paths);

/// Removes an upload (not_found / forbidden for built-ins and others' data).
status remove_dataset(const dataset_paths& paths, const std::string& name, uint64_t user_id,
                      bool is_admin);

} // namespace rookery::data

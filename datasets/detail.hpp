// Helpers shared by the registry (torch-free) and the loaders: stable
// hashing, name rules, the IDX reader, the fortune and CSV parsers, and the
// on-disk layout of uploads. Internal to datasets/.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "datasets/registry.hpp"

namespace rookery::data::detail {

// Names of the files in an upload's directory.
inline constexpr const char* info_file = "dataset.json";
inline constexpr const char* images_file = "images.u8";  // image_folder pixels
inline constexpr const char* labels_file = "labels.i64"; // image_folder labels
inline constexpr const char* csv_file = "data.csv";
inline constexpr const char* texts_file = "texts.jsonl"; // text_folder: {"text", "label", "test"} per line

inline constexpr const char* fashion_mnist_name = "fashion-mnist";
inline constexpr const char* fortunes_name = "fortunes";
inline constexpr const char* wordnet_name = "wordnet";

/// FNV-1a (64 bit): stable across platforms and runs, unlike std::hash, so
/// splits chosen from it never move.
inline uint64_t fnv1a(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

bool is_builtin_name(const std::string& name);

/// 1-64 of letters, digits, '_', '-', '.'; not starting with '.'. Also what
/// keeps names from escaping the datasets directory.
bool valid_name(const std::string& name);

/// <data>/datasets
std::string uploads_dir(const dataset_paths& paths);

/// <data>/datasets/u<owner_id>: data-set names are per user, so a name
/// another user holds is neither refused nor revealed.
std::string owner_dir(const dataset_paths& paths, uint64_t owner_id);

/// dataset.json's text for `d` (every field but path).
std::string info_to_json(const dataset_info& d);

// --- limits ------------------------------------------------------------------
// Bounds of the upload decoders; each is also listed in docs/ARCHITECTURE.md
// ("Limits"). The archive's member count and byte total are import_options'
// max_entries and max_bytes (config max_dataset_bytes).

/// Pixels of one image in an image-folder upload, checked on the image's
/// header before it is decoded (cv::imdecode allocates the whole image
/// first): 4096 x 4096, the largest image_size too. 413 when over.
inline constexpr int64_t kMaxImagePixels = int64_t{4096} * 4096;
/// Bytes of one member's path in an archive (PATH_MAX is 4096; no sane
/// data set needs a quarter of it).
inline constexpr std::size_t kMaxMemberPathBytes = 1024;
/// Bytes of a class (folder) name: a file name's limit on common file systems.
inline constexpr std::size_t kMaxClassNameBytes = 255;
/// Class folders of one data set.
inline constexpr std::size_t kMaxClasses = 10000;
/// Data bytes of one IDX file (Fashion-MNIST's largest holds 47 MB). A raw
/// file must hold exactly what its header declares; a compressed one is
/// read in chunks and never allocated past what it decompresses to.
inline constexpr int64_t kMaxIdxBytes = int64_t{1} << 30;

// --- IDX ---------------------------------------------------------------------

/// Path of an IDX file in `dir` by base name: "<base>.gz" if present, else
/// "<base>"; empty when neither exists.
std::string find_idx_file(const std::string& dir, const std::string& base);

/// Reads an IDX file (raw or gzip-compressed). Without `alloc`
/// only the header is read; with it, `alloc(dims)` returns a buffer for the
/// product of dims bytes that is then filled. Returns the dims.
/// Errors: not_found (no file), unprocessable (magic, type, truncation).
using idx_alloc = std::function<uint8_t*(const std::vector<int64_t>& dims)>;
result<std::vector<int64_t>> read_idx_file(const std::string& path, const idx_alloc& alloc);

// --- fortunes ----------------------------------------------------------------

struct fortune_corpus {
  std::vector<std::string> classes; // sorted file names
  std::vector<std::string> texts;
  std::vector<int64_t> labels;
};

/// Category files of a fortunes directory: regular files (not symlinks) with
/// a matching .dat, excluding *.dat and *.u8; no recursion (off/ is skipped).
std::vector<std::string> fortune_categories(const std::string& dir);

/// Every fortune of every category, stripped, empty ones skipped.
result<fortune_corpus> read_fortunes(const std::string& dir);

/// WordNet 3.0's synsets (Debian's wordnet-base: data.noun, data.verb,
/// data.adj, data.adv under `dir`) as texts "lemma, lemma: gloss" (the
/// lemmas with spaces for underscores, the gloss with its examples), labelled
/// by part of speech: classes adj, adv, noun, verb. not_found when none of
/// the files is there.
result<fortune_corpus> read_wordnet(const std::string& dir);

/// About 10% of texts, chosen by a stable hash of the text.
inline bool fortune_is_test(const std::string& text) { return fnv1a(text) % 10 == 0; }

// --- CSV -----------------------------------------------------------------------

/// Bounds of the CSV reader (all 400 when exceeded, but the decoded size,
/// which is 413 against max_bytes).
/// Columns of a table: a classifier over more features than this is not
/// what a CSV upload is for, and a line is split into at most this many cells.
inline constexpr std::size_t kMaxCsvColumns = 4096;
/// Bytes of one field: a column name or a number (a double needs ~25).
inline constexpr std::size_t kMaxCsvFieldBytes = 256;

struct csv_table {
  std::vector<std::string> columns;
  std::vector<double> values; // row-major, rows x columns.size()
  int64_t rows = 0;
};

/// Parses a numeric CSV with a header row. bad_request naming the line (and
/// column) on ragged rows or non-numeric cells; payload_too_large over
/// max_bytes.
result<csv_table> parse_csv(const std::string& path, uint64_t max_bytes = ~0ull);

} // namespace rookery::data::detail

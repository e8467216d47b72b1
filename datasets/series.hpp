// Time-series data sets: the built-ins (the synthetic control chart set,
// generated from its published definitions, and the real series Debian's
// python3-statsmodels ships as CSV) and uploads in the UCR/UEA archive
// formats (.tsv as the UCR 2018 archive writes it; .ts with its @-header).
// Torch-free: the registry and the importer include it.
//
// Kinds: "series_classification" (items of channels x length with a class
// each) and "series_forecasting" (one long series, channels x time, with
// its seasonal period).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "datasets/registry.hpp"

namespace rookery::data {

/// One series item: channels x length (every channel the same length).
using series_item = std::vector<std::vector<double>>;

struct series_set {
  int64_t channels = 1;
  // series_classification
  std::vector<std::string> classes;
  std::vector<series_item> train_x, test_x;
  std::vector<int64_t> train_y, test_y;
  // series_forecasting
  series_item series;               // channels x time
  std::vector<std::string> columns; // channel names
  int64_t season = 1;               // the seasonal period (1: none)
};

/// The built-in series data sets (available = false with the reason when
/// statsmodels is missing), in listing order.
std::vector<dataset_info> builtin_series_datasets();
bool is_builtin_series(const std::string& name);
/// One of them by name (not_found otherwise).
result<dataset_info> builtin_series_info(const std::string& name);

/// The seasonal period of a built-in forecasting set (1: none or unknown).
int64_t series_season(const std::string& name);

/// Loads a series data set (built-in or upload). limit_train / limit_test
/// (> 0) keep the first items of each split, in a class-balanced order.
/// Errors: bad_request (not a series data set), unprocessable (files damaged).
result<series_set> load_series(const dataset_info& ds, int64_t limit_train = 0,
                               int64_t limit_test = 0);

/// A file of labelled series as the UCR/UEA archives write them.
struct series_file {
  std::vector<series_item> x;
  std::vector<std::string> labels; // one per item, as written
  int64_t channels = 0;
  int64_t max_length = 0;
};

/// UCR 2018 .tsv: per line the label, then the values, separated by tabs
/// (commas are accepted too); trailing NaN pad series shorter than the
/// longest and are cut off. At most `max_items` lines.
result<series_file> parse_ucr_tsv(const std::string& text, uint64_t max_items = 1'000'000);

/// UEA/sktime .ts: "#" comments, "@" header lines (@problemName,
/// @timeStamps false, @univariate, @classLabel true <labels>, @data), then
/// per line the dimensions separated by ':' (values by ','), the label last.
/// "?" marks a missing value (interpolated).
result<series_file> parse_ts(const std::string& text, uint64_t max_items = 1'000'000);

/// Whether an upload looks like a .ts file (an @-header ending in @data) or
/// a UCR .tsv (tab-separated numeric lines of at least 4 fields).
std::string sniff_series_format(const std::string& head); // "ts" | "ucr" | ""

/// The deterministic split of an upload's items: per class, the last
/// round(n_c * test_fraction) items (in file order) are the test split.
/// Returns, per item, whether it is a test item.
std::vector<bool> split_by_class(const std::vector<std::string>& labels, double test_fraction);

} // namespace rookery::data

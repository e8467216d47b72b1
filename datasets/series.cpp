#include "datasets/series.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/series_text.hpp"
#include "models/minirocket.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace rookery::data {

namespace {

constexpr const char* synthetic_control_name = "synthetic-control";

/// Where python3-statsmodels keeps its data sets (ROOKERY_STATSMODELS_DIR
/// overrides, for tests and other layouts).
std::string statsmodels_dir() {
  if (const char* e = std::getenv("ROOKERY_STATSMODELS_DIR"); e && *e)
    return e;
  return "/usr/lib/python3/dist-packages/statsmodels/datasets";
}

/// A statsmodels series: the CSV, the columns it keeps, how to lay them out.
struct statsmodels_series {
  const char* name;
  const char* file;                 // under statsmodels_dir()
  std::vector<std::string> columns; // header names; empty: every numeric column
  bool flatten_rows = false;        // a table of years x months read row by row
  const char* channel_name;         // with flatten_rows: the single channel's name
  int64_t season;
  const char* about;
};

const std::vector<statsmodels_series>& statsmodels_sets() {
  static const std::vector<statsmodels_series> sets = {
    {"sunspots", "sunspots/sunspots.csv", {"SUNACTIVITY"}, false, "", 11,
     "yearly sunspot numbers 1700-2008 (309 points; the cycle is about 11 years)"},
    {"nile", "nile/nile.csv", {"volume"}, false, "", 1,
     "yearly Nile flow at Aswan 1871-1970 (100 points, a level shift in 1899)"},
    {"co2", "co2/co2.csv", {"co2"}, false, "", 52,
     "weekly Mauna Loa CO2 1958-2001 (2284 points, gaps interpolated; yearly season)"},
    {"elnino", "elnino/elnino.csv", {}, true, "sea_surface_temperature", 12,
     "monthly Pacific sea surface temperature 1950-2010 (732 points)"},
    {"elec-equip", "elec_equip/elec_equip.csv", {}, false, "", 12,
     "monthly euro-area electrical equipment orders 1996-2012 (195 points)"},
    {"macrodata", "macrodata/macrodata.csv", {"realgdp", "realcons", "realinv"}, false, "", 4,
     "quarterly US real GDP, consumption and investment 1959-2009 (203 points, 3 channels)"},
  };
  return sets;
}

const statsmodels_series* find_statsmodels(const std::string& name) {
  for (auto& s : statsmodels_sets())
    if (name == s.name)
      return &s;
  return nullptr;
}

dataset_info synthetic_control_info() {
  dataset_info d;
  d.name = synthetic_control_name;
  d.kind = "series_classification";
  d.source = "builtin";
  d.format = "generated";
  d.classes = synthetic_control::classes();
  d.train_size = 300;
  d.test_size = 300;
  d.item_shape = {1, 60};
  d.status = "Alcock and Manolopoulos's six-class synthetic control charts: 600 series of 60 "
             "points generated from the published definitions (seed 0); 50 per class to train, "
             "50 to test";
  return d;
}

result<std::string> read_text(const fs::path& p, uint64_t max_bytes = 256u << 20) {
  std::error_code ec;
  auto size = fs::file_size(p, ec);
  if (ec)
    return fail(errc::not_found, "cannot read " + p.filename().string());
  if (size > max_bytes)
    return fail(errc::payload_too_large, p.filename().string() + " is larger than "
                                           + std::to_string(max_bytes >> 20) + " MiB");
  std::ifstream in(p, std::ios::binary);
  std::string s(size, '\0');
  in.read(s.data(), static_cast<std::streamsize>(size));
  if (!in)
    return fail(errc::internal, "cannot read " + p.filename().string());
  return s;
}

result<series_set> load_statsmodels(const statsmodels_series& s) {
  auto text = read_text(fs::path(statsmodels_dir()) / s.file);
  if (!text)
    return fail(errc::unprocessable, std::string("statsmodels' ") + s.name
                                       + " data cannot be read (install python3-statsmodels): "
                                       + text.error().message);
  auto table = parse_series(*text, {4'000'000, 64});
  if (!table)
    return fail(errc::unprocessable, std::string("statsmodels' ") + s.name + " CSV: "
                                       + table.error().message);
  series_set out;
  out.season = s.season;
  if (s.flatten_rows) {
    const size_t rows = table->channels.empty() ? 0 : table->channels[0].size();
    std::vector<double> flat;
    for (size_t r = 0; r < rows; ++r)
      for (auto& ch : table->channels)
        flat.push_back(ch[r]);
    out.series = {std::move(flat)};
    out.columns = {s.channel_name};
  } else if (s.columns.empty()) {
    out.series = table->channels;
    out.columns = table->names;
  } else {
    for (auto& want : s.columns) {
      auto it = std::find(table->names.begin(), table->names.end(), want);
      if (it == table->names.end())
        return fail(errc::unprocessable, std::string("statsmodels' ") + s.name
                                           + " CSV has no column '" + want + "'");
      out.series.push_back(table->channels[static_cast<size_t>(it - table->names.begin())]);
      out.columns.push_back(want);
    }
  }
  out.channels = static_cast<int64_t>(out.series.size());
  return out;
}

dataset_info statsmodels_info(const statsmodels_series& s) {
  dataset_info d;
  d.name = s.name;
  d.kind = "series_forecasting";
  d.source = "builtin";
  d.format = "statsmodels_csv";
  std::error_code ec;
  if (!fs::is_regular_file(fs::path(statsmodels_dir()) / s.file, ec)) {
    d.available = false;
    d.status = "statsmodels' data sets are not installed: install the Debian package "
               "python3-statsmodels";
    return d;
  }
  d.status = std::string(s.about) + "; from python3-statsmodels";
  // Shapes come from the file itself (small; read once per process).
  static std::mutex mutex;
  static std::map<std::string, std::pair<std::vector<std::string>, std::vector<int64_t>>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(s.name);
  if (it == cache.end()) {
    auto set = load_statsmodels(s);
    if (!set) {
      d.available = false;
      d.status = set.error().message;
      return d;
    }
    std::vector<int64_t> shape{set->channels,
                               static_cast<int64_t>(set->series.empty() ? 0 : set->series[0].size())};
    it = cache.emplace(s.name, std::make_pair(set->columns, shape)).first;
  }
  d.columns = it->second.first;
  d.item_shape = it->second.second;
  d.train_size = d.item_shape.size() == 2 ? d.item_shape[1] : 0;
  return d;
}

/// Linear interpolation over NaNs; ends take the nearest value. false when
/// every value is missing.
bool fill_gaps(std::vector<double>& v) {
  const size_t n = v.size();
  size_t first = 0;
  while (first < n && std::isnan(v[first]))
    ++first;
  if (first == n)
    return false;
  for (size_t i = 0; i < first; ++i)
    v[i] = v[first];
  size_t last = first;
  for (size_t i = first + 1; i < n; ++i) {
    if (std::isnan(v[i]))
      continue;
    for (size_t k = last + 1; k < i; ++k)
      v[k] = v[last] + (v[i] - v[last]) * static_cast<double>(k - last) / static_cast<double>(i - last);
    last = i;
  }
  for (size_t i = last + 1; i < n; ++i)
    v[i] = v[last];
  return true;
}

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r\n"), b = s.find_last_not_of(" \t\r\n");
  return a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
}

/// A value of a UCR/UEA file: a number, or NaN for "NaN"/"nan"/"?"/"".
bool parse_value(const std::string& field, double& out) {
  auto t = trim(field);
  if (t.empty() || t == "?" || t == "NaN" || t == "nan" || t == "NA") {
    out = NAN;
    return true;
  }
  char* end = nullptr;
  out = std::strtod(t.c_str(), &end);
  return end == t.c_str() + t.size() && std::isfinite(out);
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    auto p = s.find(sep, start);
    out.push_back(s.substr(start, p == std::string::npos ? std::string::npos : p - start));
    if (p == std::string::npos)
      break;
    start = p + 1;
  }
  return out;
}

failure line_error(size_t line, const std::string& what) {
  return fail(errc::bad_request, "line " + std::to_string(line) + ": " + what);
}

/// Checks the item's channels agree with the file's and updates the maxima.
status add_item(series_file& f, series_item item, std::string label, size_t line) {
  if (f.channels == 0)
    f.channels = static_cast<int64_t>(item.size());
  else if (static_cast<int64_t>(item.size()) != f.channels)
    return line_error(line, "has " + std::to_string(item.size()) + " dimensions, earlier lines "
                                + std::to_string(f.channels));
  for (auto& ch : item)
    f.max_length = std::max<int64_t>(f.max_length, static_cast<int64_t>(ch.size()));
  f.x.push_back(std::move(item));
  f.labels.push_back(std::move(label));
  return {};
}

constexpr uint64_t max_points = 50'000'000; // all items together

} // namespace

std::vector<dataset_info> builtin_series_datasets() {
  std::vector<dataset_info> out{synthetic_control_info()};
  for (auto& s : statsmodels_sets())
    out.push_back(statsmodels_info(s));
  return out;
}

int64_t series_season(const std::string& name) {
  auto s = find_statsmodels(name);
  return s ? s->season : 1;
}

bool is_builtin_series(const std::string& name) {
  return name == synthetic_control_name || find_statsmodels(name) != nullptr;
}

result<dataset_info> builtin_series_info(const std::string& name) {
  if (name == synthetic_control_name)
    return synthetic_control_info();
  if (auto s = find_statsmodels(name))
    return statsmodels_info(*s);
  return fail(errc::not_found, "no built-in series data set '" + name + "'");
}

result<series_file> parse_ucr_tsv(const std::string& text, uint64_t max_items) {
  series_file f;
  std::istringstream in(text);
  std::string line;
  size_t n = 0;
  uint64_t points = 0;
  while (std::getline(in, line)) {
    ++n;
    if (trim(line).empty())
      continue;
    if (f.x.size() >= max_items)
      return fail(errc::payload_too_large, "more than " + std::to_string(max_items) + " series");
    const char sep = line.find('\t') != std::string::npos ? '\t' : ',';
    auto fields = split(line, sep);
    if (fields.size() < 3)
      return line_error(n, "needs a label and at least 2 values");
    std::vector<double> v;
    v.reserve(fields.size() - 1);
    for (size_t i = 1; i < fields.size(); ++i) {
      double x = 0;
      if (!parse_value(fields[i], x))
        return line_error(n, "field " + std::to_string(i + 1) + " is not a number");
      v.push_back(x);
    }
    while (!v.empty() && std::isnan(v.back())) // UCR pads shorter series with NaN
      v.pop_back();
    if (v.size() < 2 || !fill_gaps(v))
      return line_error(n, "has fewer than 2 values");
    points += v.size();
    if (points > max_points)
      return fail(errc::payload_too_large, "more than " + std::to_string(max_points) + " values");
    auto label = trim(fields[0]);
    if (label.empty())
      return line_error(n, "has no label");
    if (auto st = add_item(f, {std::move(v)}, std::move(label), n); !st)
      return st.error();
  }
  if (f.x.empty())
    return fail(errc::bad_request, "the file holds no series");
  return f;
}

result<series_file> parse_ts(const std::string& text, uint64_t max_items) {
  series_file f;
  std::istringstream in(text);
  std::string line;
  size_t n = 0;
  bool data = false, class_label = false, timestamps = false;
  uint64_t points = 0;
  while (std::getline(in, line)) {
    ++n;
    auto t = trim(line);
    if (t.empty() || t[0] == '#')
      continue;
    if (!data) {
      if (t[0] != '@')
        return line_error(n, "expected an @ header line or @data before the series");
      auto sp = t.find_first_of(" \t");
      std::string key = t.substr(1, sp == std::string::npos ? std::string::npos : sp - 1);
      std::string rest = sp == std::string::npos ? "" : trim(t.substr(sp));
      std::transform(key.begin(), key.end(), key.begin(), [](unsigned char c) { return std::tolower(c); });
      auto first_word = rest.substr(0, rest.find_first_of(" \t"));
      if (key == "data")
        data = true;
      else if (key == "timestamps")
        timestamps = first_word == "true";
      else if (key == "classlabel")
        class_label = first_word == "true";
      else if (key == "targetlabel" && first_word == "true")
        return line_error(n, "@targetLabel true (regression targets) is not supported; "
                             "series_classification needs @classLabel true");
      continue;
    }
    if (timestamps)
      return fail(errc::bad_request, "@timeStamps true is not supported: give the values only");
    if (!class_label)
      return fail(errc::bad_request, "the file has no class labels (@classLabel true <labels>)");
    if (f.x.size() >= max_items)
      return fail(errc::payload_too_large, "more than " + std::to_string(max_items) + " series");
    auto dims = split(t, ':');
    if (dims.size() < 2)
      return line_error(n, "needs at least one dimension and a label, separated by ':'");
    auto label = trim(dims.back());
    if (label.empty())
      return line_error(n, "has no label");
    dims.pop_back();
    series_item item;
    size_t length = 0;
    for (size_t d = 0; d < dims.size(); ++d) {
      std::vector<double> v;
      for (auto& field : split(dims[d], ',')) {
        double x = 0;
        if (!parse_value(field, x))
          return line_error(n, "dimension " + std::to_string(d + 1) + " holds '" + trim(field)
                                 + "', not a number");
        v.push_back(x);
      }
      if (v.size() < 2 || !fill_gaps(v))
        return line_error(n, "dimension " + std::to_string(d + 1) + " has fewer than 2 values");
      if (d == 0)
        length = v.size();
      else if (v.size() != length)
        return line_error(n, "its dimensions differ in length (" + std::to_string(length) + " and "
                               + std::to_string(v.size()) + ")");
      points += v.size();
      item.push_back(std::move(v));
    }
    if (points > max_points)
      return fail(errc::payload_too_large, "more than " + std::to_string(max_points) + " values");
    if (auto st = add_item(f, std::move(item), std::move(label), n); !st)
      return st.error();
  }
  if (!data)
    return fail(errc::bad_request, "no @data line: not a .ts file");
  if (f.x.empty())
    return fail(errc::bad_request, "the file holds no series");
  return f;
}

std::string sniff_series_format(const std::string& head) {
  std::istringstream in(head);
  std::string line;
  int numeric_lines = 0;
  while (std::getline(in, line) && numeric_lines < 3) {
    auto t = trim(line);
    if (t.empty() || t[0] == '#')
      continue;
    if (t[0] == '@')
      return "ts";
    auto fields = split(t, '\t');
    if (fields.size() < 4)
      return "";
    for (size_t i = 0; i < fields.size(); ++i) {
      double x = 0;
      if (!parse_value(fields[i], x) || (i == 0 && std::isnan(x)))
        return "";
    }
    ++numeric_lines;
  }
  return numeric_lines > 0 ? "ucr" : "";
}

std::vector<bool> split_by_class(const std::vector<std::string>& labels, double test_fraction) {
  std::map<std::string, size_t> count, seen;
  for (auto& l : labels)
    ++count[l];
  std::vector<bool> test(labels.size(), false);
  for (size_t i = 0; i < labels.size(); ++i) {
    auto c = count[labels[i]];
    auto n_test = static_cast<size_t>(std::llround(static_cast<double>(c) * test_fraction));
    if (n_test >= c && c > 0)
      n_test = c - 1; // every class keeps a training item
    test[i] = seen[labels[i]]++ >= c - n_test;
  }
  return test;
}

namespace {

/// The first `limit` indices of `y` taking the classes in turn (all when limit <= 0).
std::vector<size_t> balanced_prefix(const std::vector<int64_t>& y, int64_t limit) {
  std::vector<size_t> order(y.size());
  for (size_t i = 0; i < y.size(); ++i)
    order[i] = i;
  if (limit <= 0 || static_cast<size_t>(limit) >= y.size())
    return order;
  std::map<int64_t, size_t> rank_of;
  std::vector<std::pair<size_t, size_t>> key(y.size()); // (rank in class, position)
  for (size_t i = 0; i < y.size(); ++i)
    key[i] = {rank_of[y[i]]++, i};
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return key[a].first != key[b].first ? key[a].first < key[b].first : y[a] < y[b];
  });
  order.resize(static_cast<size_t>(limit));
  std::sort(order.begin(), order.end());
  return order;
}

void apply_limit(std::vector<series_item>& x, std::vector<int64_t>& y, int64_t limit) {
  auto keep = balanced_prefix(y, limit);
  if (keep.size() == x.size())
    return;
  std::vector<series_item> nx;
  std::vector<int64_t> ny;
  for (auto i : keep) {
    nx.push_back(std::move(x[i]));
    ny.push_back(y[i]);
  }
  x = std::move(nx);
  y = std::move(ny);
}

result<series_set> load_upload(const dataset_info& ds) {
  auto text = read_text(fs::path(ds.path) / "series.json", 1u << 30);
  if (!text)
    return fail(errc::unprocessable, "data set '" + ds.name + "' is damaged: " + text.error().message);
  auto j = json::parse(*text, nullptr, false);
  if (!j.is_object() || !j.contains("items") || !j["items"].is_array())
    return fail(errc::unprocessable, "data set '" + ds.name + "' is damaged: series.json");
  series_set out;
  out.classes = ds.classes;
  out.channels = j.value("channels", int64_t{1});
  const auto& items = j["items"];
  for (size_t i = 0; i < items.size(); ++i) {
    const auto& it = items[i];
    auto y = it.value("y", int64_t{-1});
    if (y < 0 || y >= static_cast<int64_t>(out.classes.size()))
      return fail(errc::unprocessable, "data set '" + ds.name + "' is damaged: a bad label");
    auto x = it.at("x").get<series_item>();
    bool test = static_cast<int64_t>(i) >= ds.train_size;
    (test ? out.test_x : out.train_x).push_back(std::move(x));
    (test ? out.test_y : out.train_y).push_back(y);
  }
  return out;
}

} // namespace

result<series_set> load_series(const dataset_info& ds, int64_t limit_train, int64_t limit_test) {
  try {
    series_set out;
    if (ds.kind == "series_forecasting" && ds.source == "builtin") {
      auto s = find_statsmodels(ds.name);
      if (!s)
        return fail(errc::not_found, "no built-in series data set '" + ds.name + "'");
      return load_statsmodels(*s);
    }
    if (ds.kind != "series_classification")
      return fail(errc::bad_request, "data set '" + ds.name + "' is " + ds.kind
                                       + ", not a series data set");
    if (ds.name == synthetic_control_name && ds.source == "builtin") {
      auto g = synthetic_control::generate(100, 60, 0);
      out.classes = synthetic_control::classes();
      std::vector<int> seen(out.classes.size(), 0);
      for (size_t i = 0; i < g.x.size(); ++i) {
        const bool test = seen[static_cast<size_t>(g.y[i])]++ >= 50;
        (test ? out.test_x : out.train_x).push_back({g.x[i]});
        (test ? out.test_y : out.train_y).push_back(g.y[i]);
      }
    } else {
      auto u = load_upload(ds);
      if (!u)
        return u.error();
      out = std::move(*u);
    }
    apply_limit(out.train_x, out.train_y, limit_train);
    apply_limit(out.test_x, out.test_y, limit_test);
    return out;
  } catch (const std::exception& e) {
    return fail(errc::unprocessable, "data set '" + ds.name + "' cannot be read: " + e.what());
  }
}

} // namespace rookery::data

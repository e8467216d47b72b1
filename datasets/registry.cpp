// The registry: describes the built-in data sets from the files Debian
// installs, and the uploads from their dataset.json. Importing lives in
// import.cpp.
#include "datasets/registry.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <random>

#include <nlohmann/json.hpp>

#include "datasets/detail.hpp"
#include "datasets/series.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace rookery::data {

namespace detail {

bool is_builtin_name(const std::string& name) {
  return name == fashion_mnist_name || name == fortunes_name || name == wordnet_name || is_builtin_series(name);
}

bool valid_name(const std::string& name) {
  if (name.empty() || name.size() > 64 || name[0] == '.')
    return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-' || c == '.';
  });
}

std::string uploads_dir(const dataset_paths& paths) {
  return (fs::path(paths.data_dir) / "datasets").string();
}

std::string owner_dir(const dataset_paths& paths, uint64_t owner_id) {
  return (fs::path(uploads_dir(paths)) / ("u" + std::to_string(owner_id))).string();
}

} // namespace detail

namespace {

using namespace detail;

const std::vector<std::string> fashion_classes = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

dataset_info fashion_mnist_info(const dataset_paths& paths) {
  dataset_info d;
  d.name = fashion_mnist_name;
  d.kind = "image_classification";
  d.source = "builtin";
  d.format = "idx";
  d.classes = fashion_classes;
  d.item_shape = {1, 28, 28};
  d.path = paths.fashion_mnist_dir;
  d.status = "Zalando's Fashion-MNIST: 28x28 grayscale images of clothing, 10 classes";

  auto missing = [&] {
    d.available = false;
    d.status = "Fashion-MNIST is not installed: install the Debian package dataset-fashion-mnist";
    return d;
  };
  std::string train = find_idx_file(paths.fashion_mnist_dir, "train-images-idx3-ubyte");
  std::string test = find_idx_file(paths.fashion_mnist_dir, "t10k-images-idx3-ubyte");
  if (train.empty() || test.empty() ||
      find_idx_file(paths.fashion_mnist_dir, "train-labels-idx1-ubyte").empty() ||
      find_idx_file(paths.fashion_mnist_dir, "t10k-labels-idx1-ubyte").empty())
    return missing();
  // Only the 16-byte headers are read: cheap enough for every listing.
  auto train_dims = read_idx_file(train, nullptr);
  auto test_dims = read_idx_file(test, nullptr);
  for (auto* r : {&train_dims, &test_dims}) {
    if (!*r) {
      d.available = false;
      d.status = "Fashion-MNIST files are damaged (reinstall dataset-fashion-mnist): " +
                 r->error().message;
      return d;
    }
  }
  if (train_dims->size() == 3) {
    d.train_size = (*train_dims)[0];
    d.item_shape = {1, (*train_dims)[1], (*train_dims)[2]};
  }
  if (test_dims->size() == 3)
    d.test_size = (*test_dims)[0];
  return d;
}

/// Fortune counts need a full parse (~3 MB); they are cached per directory
/// and recomputed when a category file changes.
struct fortune_counts {
  std::string signature;
  int64_t train = 0, test = 0;
};

std::string fortune_signature(const std::string& dir, const std::vector<std::string>& cats) {
  std::string sig;
  for (const auto& c : cats) {
    std::error_code ec;
    fs::path p = fs::path(dir) / c;
    auto size = fs::file_size(p, ec);
    auto mtime = fs::last_write_time(p, ec).time_since_epoch().count();
    sig += c + ':' + std::to_string(size) + ':' + std::to_string(mtime) + ';';
  }
  return sig;
}

/// A built-in corpus's train/test sizes (its texts split by fortune_is_test),
/// read once per signature of its files (d.path's); a corpus that cannot be
/// read makes d unavailable, saying why.
void count_texts(dataset_info& d, const std::string& sig, const std::string& why,
                 const std::function<result<fortune_corpus>()>& read) {
  static std::mutex mutex;
  static std::map<std::string, fortune_counts> cache;
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = cache.find(d.path);
    if (it != cache.end() && it->second.signature == sig) {
      d.train_size = it->second.train;
      d.test_size = it->second.test;
      return;
    }
  }
  auto corpus = read();
  if (!corpus) {
    d.available = false;
    d.status = why + corpus.error().message;
    return;
  }
  fortune_counts counts{sig};
  for (const auto& t : corpus->texts)
    ++(fortune_is_test(t) ? counts.test : counts.train);
  d.train_size = counts.train;
  d.test_size = counts.test;
  std::lock_guard<std::mutex> lock(mutex);
  cache[d.path] = std::move(counts);
}

dataset_info fortunes_info(const dataset_paths& paths) {
  dataset_info d;
  d.name = fortunes_name;
  d.kind = "text_classification";
  d.source = "builtin";
  d.format = "fortune";
  d.path = paths.fortunes_dir;
  d.classes = fortune_categories(paths.fortunes_dir);
  if (d.classes.empty()) {
    d.available = false;
    d.status = "fortunes are not installed: install the Debian package fortunes";
    return d;
  }
  d.status = "fortune-mod's sayings; the class is the fortune file they come from";

  count_texts(d, fortune_signature(paths.fortunes_dir, d.classes), "fortunes cannot be read: ",
              [&] { return read_fortunes(paths.fortunes_dir); });
  return d;
}

dataset_info wordnet_info(const dataset_paths& paths) {
  dataset_info d;
  d.name = wordnet_name;
  d.kind = "text_classification";
  d.source = "builtin";
  d.format = "wordnet";
  d.path = paths.wordnet_dir;
  d.classes = {"adj", "adv", "noun", "verb"};
  d.status = "WordNet 3.0's synsets as \"lemma, lemma: gloss\" (English definitions, about "
             "117,000); the class is the part of speech";
  std::string sig;
  for (const auto& c : d.classes) {
    std::error_code ec;
    fs::path p = fs::path(paths.wordnet_dir) / ("data." + c);
    sig += c + ':' + std::to_string(fs::file_size(p, ec)) + ';';
  }
  count_texts(d, sig, "", [&] { return read_wordnet(paths.wordnet_dir); });
  return d;
}

json to_json(const dataset_info& d) {
  return json{{"name", d.name},         {"kind", d.kind},
              {"source", d.source},     {"format", d.format},
              {"owner_id", d.owner_id}, {"classes", d.classes},
              {"columns", d.columns},   {"train_size", d.train_size},
              {"test_size", d.test_size}, {"item_shape", d.item_shape},
              {"available", d.available}, {"status", d.status},
              {"created_at", d.created_at}};
}

/// An upload's dataset.json; nullopt-like failure when missing or corrupt.
result<dataset_info> read_upload(const fs::path& dir) {
  std::ifstream in(dir / info_file);
  if (!in)
    return fail(errc::not_found, "no dataset.json in " + dir.string());
  try {
    json j = json::parse(in);
    dataset_info d;
    d.name = j.at("name").get<std::string>();
    d.kind = j.at("kind").get<std::string>();
    d.source = j.value("source", std::string("upload"));
    d.format = j.at("format").get<std::string>();
    d.owner_id = j.value("owner_id", uint64_t{0});
    d.classes = j.value("classes", std::vector<std::string>{});
    d.columns = j.value("columns", std::vector<std::string>{});
    d.train_size = j.value("train_size", int64_t{0});
    d.test_size = j.value("test_size", int64_t{0});
    d.item_shape = j.value("item_shape", std::vector<int64_t>{});
    d.available = j.value("available", true);
    d.status = j.value("status", std::string{});
    d.created_at = j.value("created_at", int64_t{0});
    d.path = dir.string();
    return d;
  } catch (const std::exception& e) {
    return fail(errc::internal, "corrupt " + (dir / info_file).string() + ": " + e.what());
  }
}

bool visible(const dataset_info& d, uint64_t user_id, bool is_admin) {
  return is_admin || d.owner_id == user_id;
}

/// The owner directories a user's look-ups search: their own, then (admins)
/// every other user's in a stable order.
std::vector<std::string> owner_dirs(const dataset_paths& paths, uint64_t user_id, bool is_admin) {
  std::vector<std::string> dirs{owner_dir(paths, user_id)};
  if (!is_admin)
    return dirs;
  std::vector<std::string> others;
  std::error_code ec;
  for (fs::directory_iterator it(uploads_dir(paths), ec), end; !ec && it != end; it.increment(ec)) {
    auto name = it->path().filename().string();
    if (name.size() > 1 && name[0] == 'u' && it->is_directory() && it->path().string() != dirs[0])
      others.push_back(it->path().string());
  }
  std::sort(others.begin(), others.end());
  dirs.insert(dirs.end(), others.begin(), others.end());
  return dirs;
}

} // namespace

namespace detail {

// Used by import.cpp to write what read_upload reads.
std::string info_to_json(const dataset_info& d) { return to_json(d).dump(2); }

} // namespace detail

std::vector<dataset_info> list_datasets(const dataset_paths& paths, uint64_t user_id,
                                        bool is_admin) {
  std::vector<dataset_info> out;
  try {
    out.push_back(fashion_mnist_info(paths));
    out.push_back(fortunes_info(paths));
    out.push_back(wordnet_info(paths));
    for (auto& d : builtin_series_datasets())
      out.push_back(std::move(d));
    std::vector<dataset_info> uploads;
    for (const auto& dir : owner_dirs(paths, user_id, is_admin)) {
      std::error_code ec;
      for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        std::string name = it->path().filename().string();
        // Temporary import/removal directories start with '.', which valid_name refuses.
        if (!valid_name(name) || !it->is_directory())
          continue;
        auto d = read_upload(it->path());
        if (d && visible(*d, user_id, is_admin))
          uploads.push_back(std::move(d.value()));
      }
    }
    std::sort(uploads.begin(), uploads.end(),
              [](const dataset_info& a, const dataset_info& b) { return a.name < b.name; });
    out.insert(out.end(), uploads.begin(), uploads.end());
  } catch (const std::exception&) {
    // A listing is best effort: an unreadable directory shows what was read.
  }
  return out;
}

result<dataset_info> find_dataset(const dataset_paths& paths, const std::string& name,
                                  uint64_t user_id, bool is_admin) {
  try {
    if (name == fashion_mnist_name)
      return fashion_mnist_info(paths);
    if (name == fortunes_name)
      return fortunes_info(paths);
    if (name == wordnet_name)
      return wordnet_info(paths);
    if (is_builtin_series(name))
      return builtin_series_info(name);
    auto not_found = fail(errc::not_found, "no data set named '" + name + "'");
    if (!valid_name(name))
      return not_found;
    // The caller's own first; an admin may also reach others' by name.
    result<dataset_info> d = not_found;
    for (const auto& dir : owner_dirs(paths, user_id, is_admin)) {
      d = read_upload(fs::path(dir) / name);
      if (d || d.error().code != errc::not_found)
        break;
    }
    if (!d) {
      if (d.error().code == errc::not_found)
        return not_found;
      return d.error();
    }
    // Others' uploads look exactly like missing ones.
    if (!visible(*d, user_id, is_admin))
      return not_found;
    return d;
  } catch (const std::exception& e) {
    return fail(errc::internal, std::string("finding data set: ") + e.what());
  }
}

std::size_t recover_uploads(const dataset_paths& paths) {
  std::size_t removed = 0;
  auto is_leftover = [](const std::string& n) {
    return n.rfind(".import-", 0) == 0 || n.rfind(".removing-", 0) == 0;
  };
  auto sweep = [&](const fs::path& dir) {
    std::vector<fs::path> gone;
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
      if (is_leftover(it->path().filename().string()))
        gone.push_back(it->path());
    for (auto& g : gone) {
      fs::remove_all(g, ec);
      ++removed;
    }
  };
  const fs::path root = uploads_dir(paths);
  sweep(root);
  std::error_code ec;
  std::vector<fs::path> flat, owners;
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    if (!it->is_directory())
      continue;
    if (fs::exists(it->path() / info_file))
      flat.push_back(it->path());
    else
      owners.push_back(it->path());
  }
  for (auto& dir : flat) { // the layout before names were per user
    auto d = read_upload(dir);
    if (!d)
      continue;
    fs::path to = fs::path(owner_dir(paths, d->owner_id)) / dir.filename();
    fs::create_directories(to.parent_path(), ec);
    if (!fs::exists(to))
      fs::rename(dir, to, ec);
  }
  for (auto& dir : owners)
    sweep(dir);
  return removed;
}

status remove_dataset(const dataset_paths& paths, const std::string& name, uint64_t user_id,
                      bool is_admin) {
  if (is_builtin_name(name))
    return fail(errc::forbidden, "the built-in data set '" + name + "' cannot be removed");
  auto d = find_dataset(paths, name, user_id, is_admin);
  if (!d)
    return d.error();
  try {
    // Rename first so the data set disappears at once, then delete at leisure.
    fs::path dir = d->path;
    fs::path trash = dir.parent_path() / (".removing-" + name + "-" + std::to_string(std::random_device{}()));
    std::error_code ec;
    fs::rename(dir, trash, ec);
    if (ec)
      return fail(errc::internal, "cannot remove data set '" + name + "': " + ec.message());
    fs::remove_all(trash, ec);
    return {};
  } catch (const std::exception& e) {
    return fail(errc::internal, "cannot remove data set '" + name + "': " + e.what());
  }
}

} // namespace rookery::data

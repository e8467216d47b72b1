// The dataset layer: IDX reading, the built-ins Debian ships (Fashion-MNIST,
// fortunes), and uploads (image folder archives, CSV) built here with
// libarchive's writer and OpenCV's encoder.
#include <catch2/catch.hpp>

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <opencv2/imgcodecs.hpp>

#include "datasets/datasets.hpp"
#include "datasets/registry.hpp"
#include "tensor_files.hpp"

// glog (through torch) defines a fatal CHECK(cond); keep Catch's.
#undef CHECK
#define CHECK(...) \
  INTERNAL_CATCH_TEST("CHECK", Catch::ResultDisposition::ContinueOnFailure, __VA_ARGS__)

namespace fs = std::filesystem;
using namespace rookery;
using namespace rookery::data;

namespace {

using bytes = std::string;
using members = std::vector<std::pair<std::string, bytes>>; // path ("x/" = directory), data

void write_raw(const fs::path& p, const bytes& data) {
  std::ofstream out(p, std::ios::binary);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

/// Writes `entries` as an archive: format "tar", "zip" or "raw" (one entry),
/// optionally gzip-compressed.
void write_archive(const fs::path& p, const std::string& format, const members& entries,
                   bool gzip = false) {
  archive* a = archive_write_new();
  if (gzip)
    archive_write_add_filter_gzip(a);
  if (format == "zip")
    archive_write_set_format_zip(a);
  else if (format == "raw")
    archive_write_set_format_raw(a);
  else
    archive_write_set_format_pax_restricted(a);
  REQUIRE(archive_write_open_filename(a, p.c_str()) == ARCHIVE_OK);
  for (const auto& [path, data] : entries) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, path.c_str());
    bool dir = !path.empty() && path.back() == '/';
    archive_entry_set_filetype(e, dir ? AE_IFDIR : AE_IFREG);
    archive_entry_set_perm(e, dir ? 0755 : 0644);
    archive_entry_set_size(e, dir ? 0 : static_cast<la_int64_t>(data.size()));
    REQUIRE(archive_write_header(a, e) == ARCHIVE_OK);
    if (!dir)
      REQUIRE(archive_write_data(a, data.data(), data.size()) ==
              static_cast<la_ssize_t>(data.size()));
    archive_entry_free(e);
  }
  REQUIRE(archive_write_close(a) == ARCHIVE_OK);
  archive_write_free(a);
}

bytes idx_bytes(std::vector<uint8_t> header, const std::vector<uint8_t>& data) {
  header.insert(header.end(), data.begin(), data.end());
  return bytes(header.begin(), header.end());
}

/// A w x h PNG whose pixels encode `value` (grayscale, or colour when rgb).
bytes png(int w, int h, int value, bool rgb = false) {
  cv::Mat m(h, w, rgb ? CV_8UC3 : CV_8UC1, cv::Scalar(value, value / 2, 255 - value));
  std::vector<uint8_t> buf;
  REQUIRE(cv::imencode(".png", m, buf));
  return bytes(buf.begin(), buf.end());
}

/// `per_class` grayscale 8x8 PNGs in each class folder under `prefix`.
members class_folders(const std::vector<std::string>& classes, int per_class,
                      const std::string& prefix = "") {
  members out;
  for (size_t c = 0; c < classes.size(); ++c) {
    out.emplace_back(prefix + classes[c] + "/", "");
    for (int i = 0; i < per_class; ++i)
      out.emplace_back(prefix + classes[c] + "/" + std::to_string(i) + ".png",
                       png(8, 8, static_cast<int>(40 * c + i)));
  }
  return out;
}

struct scratch {
  test::temp_dir tmp{"rookery-datasets-"};
  dataset_paths paths;
  scratch() {
    paths.data_dir = (tmp.path / "data").string();
    fs::create_directories(paths.data_dir);
  }
  fs::path file(const std::string& name) const { return tmp.path / name; }
  /// Entries of <data>/datasets and of its per-owner directories (u<id>/):
  /// nothing temporary may stay behind.
  std::vector<std::string> stored() const {
    std::vector<std::string> out;
    std::error_code ec;
    for (fs::directory_iterator it(fs::path(paths.data_dir) / "datasets", ec), end;
         !ec && it != end; it.increment(ec)) {
      auto name = it->path().filename().string();
      if (name.size() > 1 && name[0] == 'u' && fs::is_directory(it->path())
          && !fs::exists(it->path() / "dataset.json")) {
        std::error_code ec2;
        for (fs::directory_iterator in(it->path(), ec2), e2; !ec2 && in != e2; in.increment(ec2))
          out.push_back(in->path().filename().string());
      } else {
        out.push_back(name);
      }
    }
    std::sort(out.begin(), out.end());
    return out;
  }
};

import_options opts(const std::string& name, uint64_t owner = 7) {
  import_options o;
  o.name = name;
  o.owner_id = owner;
  return o;
}

bool listed(const std::vector<dataset_info>& list, const std::string& name) {
  return std::any_of(list.begin(), list.end(),
                     [&](const dataset_info& d) { return d.name == name; });
}

} // namespace

// --- IDX ---------------------------------------------------------------------------

TEST_CASE("read_idx reads raw and gzip-compressed IDX files", "[datasets]") {
  scratch s;
  std::vector<uint8_t> data(24);
  for (size_t i = 0; i < data.size(); ++i)
    data[i] = static_cast<uint8_t>(i * 10);
  bytes file = idx_bytes({0, 0, 0x08, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4}, data);
  write_raw(s.file("x-idx3-ubyte"), file);
  write_archive(s.file("x-idx3-ubyte.gz"), "raw", {{"x-idx3-ubyte", file}}, true);
  // The gzip file really is compressed (starts with the gzip magic).
  std::ifstream gz(s.file("x-idx3-ubyte.gz"), std::ios::binary);
  REQUIRE(gz.get() == 0x1f);
  REQUIRE(gz.get() == 0x8b);

  for (const char* name : {"x-idx3-ubyte", "x-idx3-ubyte.gz"}) {
    auto t = read_idx(s.file(name).string());
    REQUIRE(t.ok());
    CHECK(t->scalar_type() == torch::kUInt8);
    CHECK(t->sizes() == torch::IntArrayRef({2, 3, 4}));
    CHECK(t->index({1, 2, 3}).item<int>() == 230);
    CHECK(torch::equal(t->flatten().to(torch::kInt64),
                       torch::arange(24, torch::kInt64) * 10));
  }
}

TEST_CASE("read_idx rejects malformed files with unprocessable", "[datasets]") {
  scratch s;
  auto expect = [&](const std::string& name, const bytes& content, const std::string& says) {
    write_raw(s.file(name), content);
    auto t = read_idx(s.file(name).string());
    REQUIRE_FALSE(t.ok());
    CHECK(t.error().code == errc::unprocessable);
    CHECK_THAT(t.error().message, Catch::Contains(name));
    CHECK_THAT(t.error().message, Catch::Contains(says));
  };
  expect("bad-magic", idx_bytes({1, 0, 0x08, 1, 0, 0, 0, 2}, {1, 2}), "magic");
  expect("float-type", idx_bytes({0, 0, 0x0D, 1, 0, 0, 0, 1}, {0, 0, 0, 0}), "element type");
  expect("truncated", idx_bytes({0, 0, 0x08, 1, 0, 0, 0, 10}, {1, 2, 3, 4, 5}), "truncated");
  expect("short-header", idx_bytes({0, 0, 0x08, 2, 0, 0, 0, 10}, {}), "truncated");
  expect("too-long", idx_bytes({0, 0, 0x08, 1, 0, 0, 0, 2}, {1, 2, 3}), "more data");

  auto missing = read_idx(s.file("absent").string());
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == errc::not_found);
}

// --- Fashion-MNIST ---------------------------------------------------------------------

TEST_CASE("Fashion-MNIST loads from the Debian package", "[datasets]") {
  dataset_paths paths; // default: /usr/share/datasets/fashion-mnist
  auto ds = find_dataset(paths, "fashion-mnist", 1, false);
  REQUIRE(ds.ok());
  REQUIRE(ds->available); // needs the dataset-fashion-mnist package
  CHECK(ds->kind == "image_classification");
  CHECK(ds->source == "builtin");
  CHECK(ds->format == "idx");
  CHECK(ds->train_size == 60000);
  CHECK(ds->test_size == 10000);
  CHECK(ds->item_shape == std::vector<int64_t>{1, 28, 28});
  REQUIRE(ds->classes.size() == 10);
  CHECK(ds->classes[0] == "T-shirt/top");
  CHECK(ds->classes[9] == "Ankle boot");

  auto s = load_images(*ds);
  REQUIRE(s.ok());
  const auto& train = s->train;
  const auto& test = s->test;
  CHECK(train.images.sizes() == torch::IntArrayRef({60000, 1, 28, 28}));
  CHECK(test.images.sizes() == torch::IntArrayRef({10000, 1, 28, 28}));
  CHECK(train.images.scalar_type() == torch::kUInt8);
  CHECK(train.labels.scalar_type() == torch::kInt64);
  CHECK(train.labels.sizes() == torch::IntArrayRef({60000}));
  CHECK(test.labels.sizes() == torch::IntArrayRef({10000}));
  for (const auto* set : {&train, &test}) {
    CHECK(set->labels.min().item<int64_t>() == 0);
    CHECK(set->labels.max().item<int64_t>() == 9);
    auto counts = torch::bincount(set->labels, {}, 10);
    CHECK(counts.min().item<int64_t>() > 0); // all 10 classes present
  }
  // Fashion-MNIST is balanced: 6000 per class in train.
  CHECK(torch::bincount(train.labels, {}, 10).eq(6000).all().item<bool>());
  double mean = train.images.to(torch::kFloat64).mean().item<double>() / 255.0;
  CHECK(mean == Approx(0.286).margin(0.01));

  SECTION("limits take the same seeded subset every time") {
    load_options o;
    o.limit_train = 100;
    o.limit_test = 20;
    o.seed = 42;
    auto a = load_images(*ds, o);
    auto b = load_images(*ds, o);
    REQUIRE(a.ok());
    REQUIRE(b.ok());
    CHECK(a->train.size() == 100);
    CHECK(a->test.size() == 20);
    CHECK(torch::equal(a->train.images, b->train.images));
    CHECK(torch::equal(a->test.labels, b->test.labels));
    o.seed = 43;
    auto c = load_images(*ds, o);
    REQUIRE(c.ok());
    CHECK_FALSE(torch::equal(a->train.images, c->train.images));
  }

  SECTION("ImageTensorDataset gives float images in [0,1] and int64 labels") {
    ImageTensorDataset d(train);
    CHECK(d.size().value() == 60000);
    auto ex = d.get(5);
    CHECK(ex.data.scalar_type() == torch::kFloat32);
    CHECK(ex.data.sizes() == torch::IntArrayRef({1, 28, 28}));
    CHECK(ex.data.max().item<float>() <= 1.0f);
    CHECK(ex.data.min().item<float>() >= 0.0f);
    CHECK(torch::allclose(ex.data * 255, train.images[5].to(torch::kFloat32)));
    CHECK(ex.target.scalar_type() == torch::kInt64);
    CHECK(ex.target.dim() == 0);
    CHECK(ex.target.item<int64_t>() == train.labels[5].item<int64_t>());

    ImageTensorDataset norm(train, {0.5}, {0.25});
    auto n = norm.get(5);
    CHECK(torch::allclose(n.data, (ex.data - 0.5) / 0.25));
  }
}

TEST_CASE("Fashion-MNIST from a directory of synthetic uncompressed IDX files",
          "[datasets]") {
  scratch s;
  dataset_paths paths = s.paths;
  paths.fashion_mnist_dir = (s.tmp.path / "fm").string();
  fs::create_directories(paths.fashion_mnist_dir);
  auto images = [](uint8_t n) {
    return idx_bytes({0, 0, 0x08, 3, 0, 0, 0, n, 0, 0, 0, 28, 0, 0, 0, 28},
                     std::vector<uint8_t>(n * 28 * 28, 7));
  };
  auto labels = [](std::vector<uint8_t> l) {
    return idx_bytes({0, 0, 0x08, 1, 0, 0, 0, static_cast<uint8_t>(l.size())}, l);
  };
  fs::path dir = paths.fashion_mnist_dir;
  write_raw(dir / "train-images-idx3-ubyte", images(3));
  write_raw(dir / "train-labels-idx1-ubyte", labels({0, 9, 4}));
  write_raw(dir / "t10k-images-idx3-ubyte", images(2));

  SECTION("a missing file makes it unavailable, naming the package") {
    auto ds = find_dataset(paths, "fashion-mnist", 1, false);
    REQUIRE(ds.ok());
    CHECK_FALSE(ds->available);
    CHECK_THAT(ds->status, Catch::Contains("dataset-fashion-mnist"));
    auto l = load_images(*ds);
    REQUIRE_FALSE(l.ok());
    CHECK(l.error().code == errc::not_found);
  }
  SECTION("complete: counts from the headers, labels as int64") {
    write_archive(dir / "t10k-labels-idx1-ubyte.gz", "raw",
                  {{"t10k-labels-idx1-ubyte", labels({1, 2})}}, true);
    auto ds = find_dataset(paths, "fashion-mnist", 1, false);
    REQUIRE(ds.ok());
    CHECK(ds->available);
    CHECK(ds->train_size == 3);
    CHECK(ds->test_size == 2);
    auto l = load_images(*ds);
    REQUIRE(l.ok());
    CHECK(l->train.images.sizes() == torch::IntArrayRef({3, 1, 28, 28}));
    CHECK(l->train.labels[1].item<int64_t>() == 9);
    CHECK(l->test.labels[1].item<int64_t>() == 2);
  }
  SECTION("counts that disagree are unprocessable") {
    write_raw(dir / "t10k-labels-idx1-ubyte", labels({1, 2, 3}));
    auto ds = find_dataset(paths, "fashion-mnist", 1, false);
    REQUIRE(ds.ok());
    auto l = load_images(*ds);
    REQUIRE_FALSE(l.ok());
    CHECK(l.error().code == errc::unprocessable);
  }
  SECTION("the whole directory missing") {
    paths.fashion_mnist_dir = (s.tmp.path / "nowhere").string();
    auto list = list_datasets(paths, 1, false);
    REQUIRE(list.size() >= 2);
    CHECK(list[0].name == "fashion-mnist");
    CHECK_FALSE(list[0].available);
  }
}

// --- fortunes ---------------------------------------------------------------------------

TEST_CASE("fortunes load as text classes with a stable split", "[datasets]") {
  dataset_paths paths;
  auto ds = find_dataset(paths, "fortunes", 1, false);
  REQUIRE(ds.ok());
  REQUIRE(ds->available); // needs the fortunes package
  CHECK(ds->kind == "text_classification");
  CHECK(ds->format == "fortune");
  CHECK(ds->classes.size() > 5);
  CHECK(std::find(ds->classes.begin(), ds->classes.end(), "off") == ds->classes.end());
  CHECK(std::none_of(ds->classes.begin(), ds->classes.end(), [](const std::string& c) {
    return c.size() > 4 && (c.substr(c.size() - 4) == ".dat" || c.substr(c.size() - 3) == ".u8");
  }));

  auto a = load_texts(*ds);
  auto b = load_texts(*ds);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  const auto n_train = static_cast<int64_t>(a->train.texts.size());
  const auto n_test = static_cast<int64_t>(a->test.texts.size());
  CHECK(n_train > 3000);
  CHECK(n_test > 100);
  CHECK(n_train == ds->train_size);
  CHECK(n_test == ds->test_size);
  double share = static_cast<double>(n_test) / static_cast<double>(n_train + n_test);
  CHECK(share > 0.07);
  CHECK(share < 0.13);
  CHECK(a->train.texts == b->train.texts);
  CHECK(a->test.texts == b->test.texts);
  CHECK(a->train.labels == b->train.labels);
  CHECK(a->train.labels.size() == a->train.texts.size());

  std::set<std::string> train(a->train.texts.begin(), a->train.texts.end());
  CHECK(std::none_of(a->test.texts.begin(), a->test.texts.end(),
                     [&](const std::string& t) { return train.count(t) > 0; }));
  // Stripped, non-empty, no separators; counted so a failure reports once.
  auto unstripped = std::count_if(a->train.texts.begin(), a->train.texts.end(),
                                  [](const std::string& t) {
                                    return t.empty() || std::isspace(uint8_t(t.front())) ||
                                           std::isspace(uint8_t(t.back())) || t == "%";
                                  });
  CHECK(unstripped == 0);
  const auto n_classes = static_cast<int64_t>(ds->classes.size());
  CHECK(std::all_of(a->train.labels.begin(), a->train.labels.end(),
                    [&](int64_t l) { return l >= 0 && l < n_classes; }));
  std::set<int64_t> used(a->train.labels.begin(), a->train.labels.end());
  CHECK(static_cast<int64_t>(used.size()) == n_classes);

  load_options o;
  o.limit_train = 50;
  o.limit_test = 10;
  o.seed = 3;
  auto c = load_texts(*ds, o);
  auto d = load_texts(*ds, o);
  REQUIRE(c.ok());
  CHECK(c->train.texts.size() == 50);
  CHECK(c->test.texts.size() == 10);
  CHECK(c->train.texts == d->train.texts);

  auto wrong = load_images(*ds);
  REQUIRE_FALSE(wrong.ok());
  CHECK(wrong.error().code == errc::bad_request);
}

TEST_CASE("fortune categories need a .dat file and no recursion", "[datasets]") {
  scratch s;
  dataset_paths paths = s.paths;
  fs::path dir = s.tmp.path / "fortunes";
  paths.fortunes_dir = dir.string();
  fs::create_directories(dir / "off");
  write_raw(dir / "alpha", "one\n%\n\n  two  \n%\n%\nthree\nlines\n");
  write_raw(dir / "alpha.dat", "x");
  write_raw(dir / "beta", "four\n%\n");
  write_raw(dir / "beta.dat", "x");
  write_raw(dir / "nodat", "ignored\n");
  write_raw(dir / "off" / "rude", "no\n");
  write_raw(dir / "off" / "rude.dat", "x");
  fs::create_symlink("alpha", dir / "alpha.u8");

  auto ds = find_dataset(paths, "fortunes", 1, false);
  REQUIRE(ds.ok());
  CHECK(ds->classes == std::vector<std::string>{"alpha", "beta"});
  CHECK(ds->train_size + ds->test_size == 4);
  auto t = load_texts(*ds);
  REQUIRE(t.ok());
  std::vector<std::string> all = t->train.texts;
  all.insert(all.end(), t->test.texts.begin(), t->test.texts.end());
  std::sort(all.begin(), all.end());
  CHECK(all == std::vector<std::string>{"four", "one", "three\nlines", "two"});
}

// --- image folder uploads ------------------------------------------------------------

TEST_CASE("image folder archives import, list and load", "[datasets]") {
  scratch s;
  const std::vector<std::string> classes{"bird", "cat", "dog"};

  SECTION("tar") {
    write_archive(s.file("set.tar"), "tar", class_folders(classes, 5));
    auto d = import_dataset(s.paths, s.file("set.tar").string(), opts("pets"));
    REQUIRE(d.ok());
    CHECK(d->name == "pets");
    CHECK(d->kind == "image_classification");
    CHECK(d->format == "image_folder");
    CHECK(d->source == "upload");
    CHECK(d->owner_id == 7);
    CHECK(d->classes == classes);
    CHECK(d->item_shape == std::vector<int64_t>{1, 8, 8});
    CHECK(d->train_size == 12); // 0.2 of 5 per class held out
    CHECK(d->test_size == 3);
    CHECK(s.stored() == std::vector<std::string>{"pets"});

    auto list = list_datasets(s.paths, 7, false);
    CHECK(listed(list, "fashion-mnist"));
    CHECK(listed(list, "fortunes"));
    CHECK(listed(list, "pets"));
    CHECK_FALSE(listed(list_datasets(s.paths, 8, false), "pets"));
    CHECK(listed(list_datasets(s.paths, 8, true), "pets"));

    auto found = find_dataset(s.paths, "pets", 7, false);
    REQUIRE(found.ok());
    CHECK(found->train_size == 12);
    CHECK(found->classes == classes);
    auto other = find_dataset(s.paths, "pets", 8, false);
    REQUIRE_FALSE(other.ok());
    CHECK(other.error().code == errc::not_found);
    CHECK(find_dataset(s.paths, "pets", 8, true).ok());

    auto l = load_images(*found);
    REQUIRE(l.ok());
    CHECK(l->train.images.sizes() == torch::IntArrayRef({12, 1, 8, 8}));
    CHECK(l->test.images.sizes() == torch::IntArrayRef({3, 1, 8, 8}));
    CHECK(l->train.classes == classes);
    CHECK(torch::bincount(l->train.labels, {}, 3).eq(4).all().item<bool>());
    CHECK(torch::bincount(l->test.labels, {}, 3).eq(1).all().item<bool>());
    // Every pixel of an image is 40 * class + index: labels match pixels.
    for (const auto* set : {&l->train, &l->test})
      for (int64_t i = 0; i < set->size(); ++i) {
        int pixel = set->images[i][0][3][3].item<int>();
        CHECK(pixel / 40 == set->labels[i].item<int64_t>());
        CHECK(set->images[i].eq(pixel).all().item<bool>());
      }

    // The same archive imported again splits identically.
    auto again = import_dataset(s.paths, s.file("set.tar").string(), opts("pets2"));
    REQUIRE(again.ok());
    auto l2 = load_images(*again);
    REQUIRE(l2.ok());
    CHECK(torch::equal(l->test.images, l2->test.images));

    auto wrong = load_texts(*found);
    REQUIRE_FALSE(wrong.ok());
    CHECK(wrong.error().code == errc::bad_request);

    // Others cannot remove it; the owner can.
    auto rm = remove_dataset(s.paths, "pets", 8, false);
    REQUIRE_FALSE(rm.ok());
    CHECK(rm.error().code == errc::not_found);
    CHECK(remove_dataset(s.paths, "pets", 7, false).ok());
    CHECK(find_dataset(s.paths, "pets", 7, false).error().code == errc::not_found);
    CHECK(s.stored() == std::vector<std::string>{"pets2"});
  }

  SECTION("zip with a wrapping folder, resized, colour, junk skipped") {
    members m = class_folders({"cat", "dog"}, 3, "myset/");
    m.emplace_back("myset/cat/big.png", png(16, 12, 5, true));
    m.emplace_back("myset/.DS_Store", "junk");
    m.emplace_back("myset/dog/.hidden.png", "junk");
    m.emplace_back("__MACOSX/myset/cat/._0.png", "junk");
    m.emplace_back("myset/README.txt", "not a class folder");
    write_archive(s.file("set.zip"), "zip", m);
    import_options o = opts("zipped");
    o.image_size = 10;
    o.test_fraction = 0.0;
    auto d = import_dataset(s.paths, s.file("set.zip").string(), o);
    REQUIRE(d.ok());
    CHECK(d->classes == std::vector<std::string>{"cat", "dog"});
    CHECK(d->item_shape == std::vector<int64_t>{3, 10, 10}); // one colour image: all RGB
    CHECK(d->train_size == 7);
    CHECK(d->test_size == 0);
    auto l = load_images(*d);
    REQUIRE(l.ok());
    CHECK(l->train.images.sizes() == torch::IntArrayRef({7, 3, 10, 10}));
    CHECK(l->test.size() == 0);
    // big.png sorts last in cat (after 0-2.png); drawn as BGR (5, 2, 250),
    // stored as RGB.
    auto big = l->train.images[3];
    CHECK(big[0][4][4].item<int>() == 250);
    CHECK(big[2][4][4].item<int>() == 5);
  }

  SECTION("tar.gz, forced grayscale") {
    members m = class_folders({"a", "b"}, 4);
    m.emplace_back("a/colour.png", png(8, 8, 100, true));
    write_archive(s.file("set.tar.gz"), "tar", m, true);
    import_options o = opts("gz");
    o.channels = 1;
    o.test_fraction = 0.5;
    auto d = import_dataset(s.paths, s.file("set.tar.gz").string(), o);
    REQUIRE(d.ok());
    CHECK(d->item_shape == std::vector<int64_t>{1, 8, 8});
    CHECK(d->train_size + d->test_size == 9);
    CHECK(d->test_size == 5); // per class: round(0.5 * 5) = 3 of a, round(0.5 * 4) = 2 of b
  }
}

TEST_CASE("image folder imports reject bad archives and leave nothing behind",
          "[datasets]") {
  scratch s;
  auto expect = [&](const std::string& file, import_options o, errc code,
                    const std::string& says) {
    auto d = import_dataset(s.paths, s.file(file).string(), o);
    REQUIRE_FALSE(d.ok());
    CHECK(d.error().code == code);
    CHECK_THAT(d.error().message, Catch::Contains(says));
    CHECK(s.stored().empty());
  };
  import_options o = opts("bad");
  o.format = "image_folder";

  write_raw(s.file("text.bin"), "this is plainly not an archive at all\n");
  expect("text.bin", o, errc::bad_request, "not a tar or zip archive");

  write_archive(s.file("one.tar"), "tar", class_folders({"cat"}, 3));
  expect("one.tar", o, errc::bad_request, "one class");

  write_archive(s.file("flat.tar"), "tar", {{"a.png", png(4, 4, 1)}, {"b.png", png(4, 4, 2)}});
  expect("flat.tar", o, errc::bad_request, "no class folders");

  members junk = class_folders({"cat", "dog"}, 2);
  junk.emplace_back("dog/notes.txt", "hello");
  write_archive(s.file("junk.tar"), "tar", junk);
  expect("junk.tar", o, errc::bad_request, "dog/notes.txt");

  members evil = class_folders({"cat", "dog"}, 2);
  evil.emplace_back("../evil/x.png", png(8, 8, 1));
  write_archive(s.file("evil.tar"), "tar", evil);
  expect("evil.tar", o, errc::bad_request, "../evil");

  members abs = class_folders({"cat", "dog"}, 2);
  abs.emplace_back("/etc/x.png", png(8, 8, 1));
  write_archive(s.file("abs.zip"), "zip", abs);
  expect("abs.zip", o, errc::bad_request, "unsafe path");

  members sizes = class_folders({"cat", "dog"}, 2);
  sizes.emplace_back("dog/wide.png", png(9, 8, 1));
  write_archive(s.file("sizes.tar"), "tar", sizes);
  expect("sizes.tar", o, errc::bad_request, "image_size");

  write_archive(s.file("many.tar"), "tar", class_folders({"cat", "dog"}, 5));
  import_options few = o;
  few.max_entries = 5;
  expect("many.tar", few, errc::payload_too_large, "entries");
  import_options small = o;
  small.max_bytes = 200;
  expect("many.tar", small, errc::payload_too_large, "bytes");

  // The same archive is fine within limits and with resizing.
  sizes.emplace_back("cat/tall.png", png(8, 20, 1));
  write_archive(s.file("sizes.tar"), "tar", sizes);
  import_options resize = o;
  resize.name = "ok";
  resize.image_size = 6;
  auto d = import_dataset(s.paths, s.file("sizes.tar").string(), resize);
  REQUIRE(d.ok());
  CHECK(d->item_shape == std::vector<int64_t>{1, 6, 6});

  SECTION("names") {
    for (const std::string& bad : std::vector<std::string>{"", ".hidden", "a/b", "../x", "with space",
                                                        std::string(65, 'x')}) {
      auto r = import_dataset(s.paths, s.file("many.tar").string(), opts(bad));
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().code == errc::bad_request);
    }
    CHECK(import_dataset(s.paths, s.file("many.tar").string(), opts(std::string(64, 'x'))).ok());
    for (std::string taken : {"ok", "fashion-mnist", "fortunes"}) {
      auto r = import_dataset(s.paths, s.file("many.tar").string(), opts(taken));
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().code == errc::conflict);
    }
    CHECK(s.stored() == std::vector<std::string>{"ok", std::string(64, 'x')});
  }
}

// --- CSV uploads --------------------------------------------------------------------------

TEST_CASE("CSV uploads import as tables and reject bad rows", "[datasets]") {
  scratch s;
  write_raw(s.file("good.csv"), "x, y,label\n1,2.5,0\n-3,4e2,1\r\n\n0.5,0,1\n");
  auto d = import_dataset(s.paths, s.file("good.csv").string(), opts("table"));
  REQUIRE(d.ok());
  CHECK(d->kind == "table");
  CHECK(d->format == "csv");
  CHECK(d->columns == std::vector<std::string>{"x", "y", "label"});
  CHECK(d->train_size == 3);
  auto t = load_table(*d);
  REQUIRE(t.ok());
  CHECK(t->columns == d->columns);
  CHECK(t->values.scalar_type() == torch::kFloat64);
  CHECK(t->values.sizes() == torch::IntArrayRef({3, 3}));
  CHECK(t->values[1][1].item<double>() == 400.0);
  CHECK(t->values[2][0].item<double>() == 0.5);
  auto wrong = load_images(*d);
  REQUIRE_FALSE(wrong.ok());
  CHECK(wrong.error().code == errc::bad_request);

  auto expect = [&](const std::string& text, const std::string& says) {
    write_raw(s.file("bad.csv"), text);
    import_options o = opts("bad");
    o.format = "csv";
    auto r = import_dataset(s.paths, s.file("bad.csv").string(), o);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == errc::bad_request);
    CHECK_THAT(r.error().message, Catch::Contains(says));
    CHECK(s.stored() == std::vector<std::string>{"table"});
  };
  expect("a,b\n1,2\n3\n", "line 3");
  expect("a,b\n1,2\n3,4,5\n", "line 3");
  expect("a,b\n1,2\n3,abc\n", "line 3, column 2 (b)");
  expect("a,b\n1,\n", "line 2, column 2");
  expect("", "empty");
  expect("\n\n", "empty");
  expect("1,2\n3,4\n", "no header");
  expect("a,b\n", "no data rows");

  // Sniffed: a CSV is not an archive.
  auto sniffed = import_dataset(s.paths, s.file("good.csv").string(), opts("sniffed"));
  REQUIRE(sniffed.ok());
  CHECK(sniffed->format == "csv");
  auto fmt = opts("x");
  fmt.format = "parquet";
  CHECK(import_dataset(s.paths, s.file("good.csv").string(), fmt).error().code ==
        errc::bad_request);
}

TEST_CASE("built-ins cannot be removed; unknown names are not found", "[datasets]") {
  scratch s;
  auto r = remove_dataset(s.paths, "fashion-mnist", 1, true);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == errc::forbidden);
  CHECK(remove_dataset(s.paths, "fortunes", 1, true).error().code == errc::forbidden);
  CHECK(remove_dataset(s.paths, "nothing", 1, true).error().code == errc::not_found);
  CHECK(find_dataset(s.paths, "nothing", 1, true).error().code == errc::not_found);
  CHECK(find_dataset(s.paths, "../etc", 1, true).error().code == errc::not_found);
}

TEST_CASE("text folder uploads import as text classification and reject what is not UTF-8 text",
          "[datasets][text]") {
  scratch s;
  members m = {{"reviews/README.md", "about this set"}};
  for (int i = 0; i < 10; ++i) {
    m.push_back({"reviews/pos/" + std::to_string(i) + ".txt", "A wonderful film, number " + std::to_string(i) + "."});
    m.push_back({"reviews/neg/" + std::to_string(i) + ".TXT", "A dreadful film, caf\xc3\xa9 " + std::to_string(i) + "."});
  }
  write_archive(s.file("reviews.tar.gz"), "tar", m, true);
  auto o = opts("reviews");
  auto d = import_dataset(s.paths, s.file("reviews.tar.gz").string(), o);
  REQUIRE(d.ok());
  CHECK(d->kind == "text_classification");
  CHECK(d->format == "text_folder");
  CHECK(d->classes == std::vector<std::string>{"neg", "pos"});
  CHECK(d->train_size == 16);
  CHECK(d->test_size == 4);
  auto t = load_texts(*d);
  REQUIRE(t.ok());
  REQUIRE(t->train.texts.size() == 16);
  CHECK(t->test.texts.size() == 4);
  const auto& first = t->train.texts[0];
  CHECK((first.rfind("A dreadful film", 0) == 0) == (t->train.labels[0] == 0));
  // The same archive again gives the same split.
  auto again = import_dataset(s.paths, s.file("reviews.tar.gz").string(), opts("reviews2"));
  REQUIRE(again.ok());
  CHECK(load_texts(*again)->test.texts == t->test.texts);

  // Refusals: Latin-1 text, a non-.txt file in a class folder, one class.
  write_archive(s.file("latin1.tar"), "tar", {{"a/1.txt", "caf\xe9"}, {"b/1.txt", "ok"}});
  auto bad = import_dataset(s.paths, s.file("latin1.tar").string(), opts("latin1"));
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == errc::bad_request);
  CHECK_THAT(bad.error().message, Catch::Contains("UTF-8"));
  write_archive(s.file("mixed.tar"), "tar", {{"a/1.txt", "x"}, {"b/2.png", "not text"}});
  auto mixed = import_dataset(s.paths, s.file("mixed.tar").string(), opts("mixed"));
  REQUIRE_FALSE(mixed.ok());
  CHECK_THAT(mixed.error().message, Catch::Contains(".txt"));
  write_archive(s.file("one.tar"), "tar", {{"a/1.txt", "x"}, {"a/2.txt", "y"}});
  CHECK_THAT(import_dataset(s.paths, s.file("one.tar").string(), opts("one")).error().message,
             Catch::Contains("2 class folders"));
  CHECK(s.stored() == std::vector<std::string>{"reviews", "reviews2"});
}

// Importing uploads: an image folder archive (decoded with OpenCV into one raw
// pixel blob) or a numeric CSV. Everything is written into a hidden temporary
// directory and renamed into place, so a data set appears whole or not at all.
#include "datasets/registry.hpp"

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <chrono>
#include <cctype>
#include <climits>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "common/json_limits.hpp"
#include "datasets/detail.hpp"
#include "datasets/series.hpp"
#include "pipelines/image.hpp"

namespace fs = std::filesystem;

namespace rookery::data {

namespace {

using namespace detail;

struct archive_free {
  void operator()(archive* a) const { archive_read_free(a); }
};
using archive_ptr = std::unique_ptr<archive, archive_free>;

std::string archive_message(archive* a) {
  const char* m = archive_error_string(a);
  return m ? m : "unknown error";
}

archive_ptr open_archive(const std::string& file) {
  archive_ptr a(archive_read_new());
  if (!a)
    return a;
  // gzip, bzip2 and xz (tar.gz, tar.bz2, tar.xz), not filter_all: its other
  // bidders (lzma-alone, lzip, lrzip, lzop, uu, rpm...) only widen what a
  // 40-byte upload can reach; lzma-alone's header alone may ask for a 4 GB
  // dictionary (found by fuzz_idx on the IDX reader, which had filter_all too).
  archive_read_support_filter_gzip(a.get());
  archive_read_support_filter_bzip2(a.get());
  archive_read_support_filter_xz(a.get());
  // Only tar and zip, not format_all: its mtree reader takes a CSV for an
  // mtree manifest, and mtree entries name files on the server's disk.
  archive_read_support_format_tar(a.get());
  archive_read_support_format_zip(a.get());
  if (archive_read_open_filename(a.get(), file.c_str(), 64 * 1024) != ARCHIVE_OK)
    return nullptr;
  return a;
}

/// True when libarchive recognises a (non-empty) archive format.
bool looks_like_archive(const std::string& file) {
  auto a = open_archive(file);
  if (!a)
    return false;
  archive_entry* e = nullptr;
  return archive_read_next_header(a.get(), &e) >= ARCHIVE_WARN;
}

/// Removes the temporary directory unless the import got through.
struct dir_guard {
  fs::path dir;
  bool keep = false;
  ~dir_guard() {
    if (!keep && !dir.empty()) {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  }
};

status write_file(const fs::path& p, const void* data, size_t n) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
  out.close();
  if (!out)
    return fail(errc::internal, "cannot write " + p.filename().string());
  return {};
}

// --- image folders ---------------------------------------------------------------

struct member {
  std::string path;               // as in the archive (for messages and the split hash)
  std::vector<std::string> parts; // normalised path components
  cv::Mat image;                  // empty: did not decode
  std::string text;               // text_folder: the member's bytes
};

bool is_txt(const std::string& path) {
  if (path.size() < 4)
    return false;
  std::string ext = path.substr(path.size() - 4);
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".txt";
}

/// Splits an archive path into components; nullopt when it is absolute or
/// climbs out with "..". Backslashes count as separators (Windows zips).
std::optional<std::vector<std::string>> split_path(const std::string& p) {
  if (p.empty() || p[0] == '/' || p[0] == '\\')
    return std::nullopt;
  std::vector<std::string> parts;
  std::string cur;
  auto push = [&] {
    if (cur == "..")
      return false;
    if (!cur.empty() && cur != ".")
      parts.push_back(cur);
    cur.clear();
    return true;
  };
  for (char c : p) {
    if (c == '/' || c == '\\') {
      if (!push())
        return std::nullopt;
    } else {
      cur.push_back(c);
    }
  }
  if (!push())
    return std::nullopt;
  // "C:" drive prefixes are absolute too.
  if (!parts.empty() && parts[0].size() == 2 && parts[0][1] == ':')
    return std::nullopt;
  return parts;
}

bool hidden(const std::vector<std::string>& parts) {
  return std::any_of(parts.begin(), parts.end(), [](const std::string& s) {
    return s.empty() || s[0] == '.' || s == "__MACOSX";
  });
}

/// texts: keep the bytes of *.txt members (a text_folder) instead of decoding images.
result<std::vector<member>> read_members(const std::string& file, const import_options& opt,
                                         bool texts = false) {
  auto a = open_archive(file);
  if (!a)
    return fail(errc::bad_request, "the upload is not a tar or zip archive");
  const int flags = opt.channels == 1   ? cv::IMREAD_GRAYSCALE
                    : opt.channels == 3 ? cv::IMREAD_COLOR
                                        : cv::IMREAD_ANYCOLOR;
  std::vector<member> members;
  uint64_t entries = 0, bytes = 0, decoded = 0;
  std::string buf;
  while (true) {
    archive_entry* e = nullptr;
    int r = archive_read_next_header(a.get(), &e);
    if (r == ARCHIVE_EOF)
      break;
    if (r < ARCHIVE_WARN) {
      if (entries == 0)
        return fail(errc::bad_request, "the upload is not a tar or zip archive");
      return fail(errc::bad_request,
                  "the archive is corrupt: " + jsonx::sanitize_utf8(archive_message(a.get())));
    }
    if (++entries > opt.max_entries)
      return fail(errc::payload_too_large,
                  "the archive has more than " + std::to_string(opt.max_entries) + " entries");
    const char* name = archive_entry_pathname_utf8(e);
    if (!name)
      name = archive_entry_pathname(e);
    std::string path = name ? name : "";
    if (path.size() > kMaxMemberPathBytes)
      return fail(errc::bad_request, "the archive has a path longer than " +
                                         std::to_string(kMaxMemberPathBytes) + " bytes: '" +
                                         jsonx::sanitize_utf8(path.substr(0, 64)) + "...'");
    auto parts = split_path(path);
    if (!parts)
      return fail(errc::bad_request, "unsafe path in the archive: '" + jsonx::sanitize_utf8(path) + "'");
    // Directories, links and devices carry no images; hidden files are
    // desktop litter (.DS_Store, __MACOSX/ resource forks).
    if (archive_entry_filetype(e) != AE_IFREG || archive_entry_hardlink(e) || parts->empty() ||
        hidden(*parts))
      continue;
    if (archive_entry_size_is_set(e) &&
        bytes + static_cast<uint64_t>(std::max<la_int64_t>(archive_entry_size(e), 0)) >
            opt.max_bytes)
      return fail(errc::payload_too_large, "the archive holds more than " +
                                               std::to_string(opt.max_bytes) + " bytes");
    buf.clear();
    uint8_t chunk[64 * 1024];
    while (true) {
      la_ssize_t n = archive_read_data(a.get(), chunk, sizeof chunk);
      if (n < 0)
        return fail(errc::bad_request,
                    "the archive is corrupt at '" + jsonx::sanitize_utf8(path) +
                        "': " + jsonx::sanitize_utf8(archive_message(a.get())));
      if (n == 0)
        break;
      // Counted while reading too: a member's declared size may be missing or wrong.
      bytes += static_cast<uint64_t>(n);
      if (bytes > opt.max_bytes)
        return fail(errc::payload_too_large, "the archive holds more than " +
                                                 std::to_string(opt.max_bytes) + " bytes");
      buf.append(reinterpret_cast<const char*>(chunk), static_cast<size_t>(n));
    }
    member m{path, std::move(*parts), {}, {}};
    if (texts) {
      if (is_txt(path))
        m.text = std::move(buf);
      members.push_back(std::move(m));
      continue;
    }
    // The header's size first: cv::imdecode allocates the whole image before
    // it reads a pixel. Formats whose header we cannot read are not decoded.
    const auto dims = peek_image_size(buf);
    auto too_many = [](int64_t w, int64_t h) { return w > kMaxImagePixels / std::max<int64_t>(h, 1); };
    if (dims && too_many(dims->width, dims->height))
      return fail(errc::payload_too_large,
                  "'" + jsonx::sanitize_utf8(path) + "' is " + std::to_string(dims->width) + "x" +
                      std::to_string(dims->height) + " pixels, more than the " +
                      std::to_string(kMaxImagePixels) + " an image of a data set may have");
    try {
      if (dims && buf.size() <= static_cast<size_t>(INT_MAX))
        m.image = cv::imdecode(cv::Mat(1, static_cast<int>(buf.size()), CV_8UC1, buf.data()), flags);
    } catch (const cv::Exception&) {
      m.image = cv::Mat(); // reported below, once we know it sits in a class folder
    }
    if (!m.image.empty() && too_many(m.image.cols, m.image.rows))
      return fail(errc::payload_too_large, "'" + jsonx::sanitize_utf8(path) + "' decodes to " +
                                               std::to_string(m.image.cols) + "x" +
                                               std::to_string(m.image.rows) + " pixels, more than " +
                                               std::to_string(kMaxImagePixels));
    if (!m.image.empty() && m.image.depth() != CV_8U)
      m.image.convertTo(m.image, CV_8U);
    if (!m.image.empty() && m.image.channels() == 4)
      cv::cvtColor(m.image, m.image, cv::COLOR_BGRA2BGR);
    if (!m.image.empty() && opt.image_size > 0) {
      cv::Mat resized;
      const int s = static_cast<int>(opt.image_size);
      cv::resize(m.image, resized, cv::Size(s, s), 0, 0, cv::INTER_AREA);
      m.image = resized;
    }
    // Decoded pixels are what the data set holds (in memory now, on disk
    // later): they count toward max_bytes like the archive's bytes do.
    decoded += static_cast<uint64_t>(m.image.total() * m.image.elemSize());
    if (decoded > opt.max_bytes)
      return fail(errc::payload_too_large, "the archive's images take more than " +
                                               std::to_string(opt.max_bytes) +
                                               " bytes decoded (max_bytes), at '" +
                                               jsonx::sanitize_utf8(path) + "'");
    members.push_back(std::move(m));
  }
  if (entries == 0)
    return fail(errc::bad_request, "the upload is not a tar or zip archive (or an empty one)");
  return members;
}

/// 1 when one common top-level folder wraps the class folders
/// ("myset/cat/1.png"): it is dropped. 0 otherwise.
size_t common_top(const std::vector<member>& members) {
  if (members.empty())
    return 0;
  const std::string& top = members[0].parts[0];
  bool common = std::all_of(members.begin(), members.end(), [&](const member& m) { return m.parts[0] == top; });
  bool nested = std::any_of(members.begin(), members.end(), [](const member& m) { return m.parts.size() >= 3; });
  return common && nested ? 1 : 0;
}

struct class_split {
  std::vector<std::pair<member*, int64_t>> train, test; // member, label
  std::vector<std::string> classes;
};

/// Splits each class by a stable hash of the member path: the same archive
/// always gives the same split, whatever the member order. Each part is in
/// path order; at least one item per class stays in training.
class_split split_members(std::map<std::string, std::vector<member*>>& by_class, double test_fraction) {
  class_split out;
  for (auto& [cls, list] : by_class) {
    const int64_t label = static_cast<int64_t>(out.classes.size());
    out.classes.push_back(cls);
    std::sort(list.begin(), list.end(), [](const member* a, const member* b) {
      auto ha = fnv1a(a->path), hb = fnv1a(b->path);
      return ha != hb ? ha < hb : a->path < b->path;
    });
    int64_t n = static_cast<int64_t>(list.size());
    int64_t n_test = std::min<int64_t>(std::llround(static_cast<double>(n) * test_fraction), n - 1);
    std::vector<member*> t(list.begin(), list.begin() + n_test), r(list.begin() + n_test, list.end());
    auto by_path = [](const member* a, const member* b) { return a->path < b->path; };
    std::sort(t.begin(), t.end(), by_path);
    std::sort(r.begin(), r.end(), by_path);
    for (member* m : r)
      out.train.emplace_back(m, label);
    for (member* m : t)
      out.test.emplace_back(m, label);
  }
  return out;
}

/// An archive of class folders of UTF-8 .txt files (fastai's and IMDB's
/// layout: "reviews/pos/1.txt"): texts.jsonl, one {"text", "label", "test"}
/// per text, train items first.
result<dataset_info> import_text_folder(const std::string& file, const import_options& opt,
                                        const fs::path& dir) {
  auto read = read_members(file, opt, true);
  if (!read)
    return read.error();
  auto& members = read.value();
  const size_t strip = common_top(members);
  std::map<std::string, std::vector<member*>> by_class;
  for (auto& m : members) {
    if (m.parts.size() < strip + 2)
      continue; // a README next to the class folders
    if (!jsonx::valid_utf8(m.path))
      return fail(errc::bad_request, "the archive member '" + jsonx::sanitize_utf8(m.path)
                                       + "' has a name that is not valid UTF-8");
    if (m.parts[strip].size() > kMaxClassNameBytes)
      return fail(errc::bad_request, "the class folder of '" + m.path + "' has a name longer than "
                                       + std::to_string(kMaxClassNameBytes) + " bytes");
    if (!is_txt(m.path))
      return fail(errc::bad_request, "'" + m.path + "' is not a .txt file; a text data set holds "
                                     "one folder of .txt files per class");
    if (!jsonx::valid_utf8(m.text))
      return fail(errc::bad_request, "'" + m.path + "' is not UTF-8 text");
    by_class[m.parts[strip]].push_back(&m);
  }
  if (by_class.size() < 2)
    return fail(errc::bad_request, "the archive needs at least 2 class folders of .txt files; it has "
                                     + std::to_string(by_class.size()));
  if (by_class.size() > kMaxClasses)
    return fail(errc::bad_request, "the archive has " + std::to_string(by_class.size())
                                     + " class folders, more than " + std::to_string(kMaxClasses));
  auto [train, test, classes] = split_members(by_class, opt.test_fraction);
  std::ofstream out(dir / texts_file, std::ios::binary | std::ios::trunc);
  for (auto* split : {&train, &test})
    for (auto& [m, label] : *split)
      out << nlohmann::json{{"text", m->text}, {"label", label}, {"test", split == &test}}.dump() << '\n';
  out.close();
  if (!out)
    return fail(errc::internal, "cannot write the imported texts");
  dataset_info d;
  d.kind = "text_classification";
  d.format = "text_folder";
  d.classes = std::move(classes);
  d.train_size = static_cast<int64_t>(train.size());
  d.test_size = static_cast<int64_t>(test.size());
  d.status = std::to_string(d.train_size + d.test_size) + " texts in " + std::to_string(d.classes.size())
             + " classes";
  return d;
}

/// Whether most files in folders among an archive's first 1,000 entries are
/// .txt (a text_folder) rather than something else (an image_folder).
bool archive_holds_texts(const std::string& file) {
  auto a = open_archive(file);
  if (!a)
    return false;
  archive_entry* e = nullptr;
  int txt = 0, other = 0;
  for (int i = 0; i < 1000 && archive_read_next_header(a.get(), &e) == ARCHIVE_OK; ++i) {
    const char* name = archive_entry_pathname(e);
    std::string path = name ? name : "";
    auto parts = split_path(path);
    if (archive_entry_filetype(e) != AE_IFREG || !parts || parts->size() < 2 || hidden(*parts))
      continue;
    ++(is_txt(path) ? txt : other);
  }
  return txt > other;
}

result<dataset_info> import_image_folder(const std::string& file, const import_options& opt,
                                         const fs::path& dir) {
  auto read = read_members(file, opt);
  if (!read)
    return read.error();
  std::vector<member>& members = read.value();

  const size_t strip = common_top(members);
  // Files outside class folders (a README next to them) are ignored; every
  // file inside one must be an image.
  std::vector<member*> kept;
  for (auto& m : members) {
    if (m.parts.size() < strip + 2)
      continue;
    // Paths and class names end up in dataset.json and in answers: UTF-8 only.
    // Not transcoded: a name that is not UTF-8 may be Latin-1, CP1252, CP437
    // or Shift-JIS, and a wrong guess would name a class silently wrong.
    if (!jsonx::valid_utf8(m.path))
      return fail(errc::bad_request, "the archive member '" + jsonx::sanitize_utf8(m.path) +
                                         "' has a name that is not valid UTF-8; "
                                         "re-create the archive with UTF-8 file names");
    if (m.parts[strip].size() > kMaxClassNameBytes)
      return fail(errc::bad_request, "the class folder of '" + m.path + "' has a name longer than " +
                                         std::to_string(kMaxClassNameBytes) + " bytes");
    if (m.image.empty())
      return fail(errc::bad_request, "'" + m.path + "' is not an image that can be decoded "
                                     "(JPEG, PNG, BMP, WebP or TIFF)");
    kept.push_back(&m);
  }
  std::map<std::string, std::vector<member*>> by_class;
  for (member* m : kept)
    by_class[m->parts[strip]].push_back(m);
  if (by_class.empty())
    return fail(errc::bad_request,
                "the archive has no class folders: put the images in one folder per class");
  if (by_class.size() < 2)
    return fail(errc::bad_request, "the archive has only one class folder ('" +
                                       by_class.begin()->first + "'); at least 2 are needed");
  if (by_class.size() > kMaxClasses)
    return fail(errc::bad_request, "the archive has " + std::to_string(by_class.size()) +
                                       " class folders, more than " + std::to_string(kMaxClasses));

  int channels = static_cast<int>(opt.channels);
  if (channels == 0)
    channels = std::any_of(kept.begin(), kept.end(),
                           [](const member* m) { return m->image.channels() == 3; })
                   ? 3
                   : 1;
  const member* first = kept.front();
  {
    // Stored C x H x W per image (grayscale ones become RGB triples): counted
    // before any conversion grows them.
    const uint64_t stored = static_cast<uint64_t>(kept.size()) * static_cast<uint64_t>(channels) *
                            static_cast<uint64_t>(first->image.rows) *
                            static_cast<uint64_t>(first->image.cols);
    if (stored > opt.max_bytes)
      return fail(errc::payload_too_large, "the data set would take " + std::to_string(stored) +
                                               " bytes decoded, more than max_bytes (" +
                                               std::to_string(opt.max_bytes) + ")");
  }
  for (member* m : kept) {
    if (opt.image_size == 0 && m->image.size() != first->image.size())
      return fail(errc::bad_request,
                  "'" + m->path + "' is " + std::to_string(m->image.cols) + "x" +
                      std::to_string(m->image.rows) + " but '" + first->path + "' is " +
                      std::to_string(first->image.cols) + "x" + std::to_string(first->image.rows) +
                      "; set image_size to resize them all");
    if (channels == 3 && m->image.channels() == 1)
      cv::cvtColor(m->image, m->image, cv::COLOR_GRAY2RGB);
    else if (channels == 3)
      cv::cvtColor(m->image, m->image, cv::COLOR_BGR2RGB); // models expect RGB
  }
  const int64_t h = first->image.rows, w = first->image.cols;

  auto [train, test, classes] = split_members(by_class, opt.test_fraction);

  // images.u8: train items then test items, each C x H x W uint8;
  // labels.i64: one native (little-endian) int64 per item, same order.
  std::ofstream images(dir / images_file, std::ios::binary | std::ios::trunc);
  std::vector<int64_t> labels;
  std::vector<cv::Mat> planes;
  for (auto* split : {&train, &test}) {
    for (auto& [m, label] : *split) {
      cv::split(m->image, planes);
      for (const cv::Mat& p : planes) {
        cv::Mat c = p.isContinuous() ? p : p.clone();
        images.write(reinterpret_cast<const char*>(c.data), static_cast<std::streamsize>(h * w));
      }
      labels.push_back(label);
      m->image.release(); // written: free it
    }
  }
  images.close();
  if (!images)
    return fail(errc::internal, "cannot write the imported images");
  if (auto s = write_file(dir / labels_file, labels.data(), labels.size() * sizeof(int64_t)); !s)
    return s.error();

  dataset_info d;
  d.kind = "image_classification";
  d.format = "image_folder";
  d.classes = std::move(classes);
  d.train_size = static_cast<int64_t>(train.size());
  d.test_size = static_cast<int64_t>(test.size());
  d.item_shape = {channels, h, w};
  d.status = std::to_string(d.train_size + d.test_size) + " images in " +
             std::to_string(d.classes.size()) + " classes, " + std::to_string(channels) + "x" +
             std::to_string(h) + "x" + std::to_string(w);
  return d;
}

// --- CSV ---------------------------------------------------------------------------

result<dataset_info> import_csv(const std::string& file, const import_options& opt,
                                const fs::path& dir) {
  auto table = parse_csv(file, opt.max_bytes);
  if (!table)
    return table.error();
  std::error_code ec;
  fs::copy_file(file, dir / csv_file, fs::copy_options::overwrite_existing, ec);
  if (ec)
    return fail(errc::internal, "cannot store the CSV file: " + ec.message());
  dataset_info d;
  d.kind = "table";
  d.format = "csv";
  d.columns = table->columns;
  d.train_size = table->rows;
  d.status = std::to_string(table->rows) + " rows x " + std::to_string(table->columns.size()) +
             " columns";
  return d;
}

// --- UCR / UEA series ----------------------------------------------------------------

result<dataset_info> import_series(const std::string& file, const std::string& format,
                                   const import_options& opt, const fs::path& dir) {
  std::error_code ec;
  auto size = fs::file_size(file, ec);
  if (ec)
    return fail(errc::bad_request, "the uploaded file cannot be read");
  if (size > opt.max_bytes)
    return fail(errc::payload_too_large, "the series file is larger than max_bytes");
  std::string text(size, '\0');
  {
    std::ifstream in(file, std::ios::binary);
    in.read(text.data(), static_cast<std::streamsize>(size));
  }
  auto f = format == "ts" ? parse_ts(text, opt.max_entries) : parse_ucr_tsv(text, opt.max_entries);
  if (!f)
    return f.error();
  // Classes in a stable order: numerically when every label is a number
  // (UCR's 1, 2, ..., 10), else as strings.
  std::vector<std::string> classes(f->labels);
  std::sort(classes.begin(), classes.end());
  classes.erase(std::unique(classes.begin(), classes.end()), classes.end());
  bool numeric = std::all_of(classes.begin(), classes.end(), [](const std::string& c) {
    char* end = nullptr;
    std::strtod(c.c_str(), &end);
    return end && *end == '\0';
  });
  if (numeric)
    std::stable_sort(classes.begin(), classes.end(), [](const std::string& a, const std::string& b) {
      return std::strtod(a.c_str(), nullptr) < std::strtod(b.c_str(), nullptr);
    });
  if (classes.size() < 2)
    return fail(errc::bad_request, "a series classification file needs at least 2 classes, got "
                                     + std::to_string(classes.size()));
  std::map<std::string, int64_t> index;
  for (size_t i = 0; i < classes.size(); ++i)
    index[classes[i]] = static_cast<int64_t>(i);
  auto is_test = split_by_class(f->labels, opt.test_fraction);
  nlohmann::json items = nlohmann::json::array();
  int64_t n_train = 0;
  for (int pass = 0; pass < 2; ++pass) // train items first, then test items
    for (size_t i = 0; i < f->x.size(); ++i)
      if (is_test[i] == (pass == 1)) {
        items.push_back({{"y", index[f->labels[i]]}, {"x", f->x[i]}});
        n_train += pass == 0;
      }
  const std::string body = nlohmann::json{{"channels", f->channels}, {"items", items}}.dump();
  if (auto s = write_file(dir / "series.json", body.data(), body.size()); !s)
    return s.error();
  dataset_info d;
  d.kind = "series_classification";
  d.format = format;
  d.classes = classes;
  d.train_size = n_train;
  d.test_size = static_cast<int64_t>(f->x.size()) - n_train;
  d.item_shape = {f->channels, f->max_length};
  d.status = std::to_string(f->x.size()) + " series of up to " + std::to_string(f->max_length)
             + " points x " + std::to_string(f->channels) + " channel(s), "
             + std::to_string(classes.size()) + " classes";
  return d;
}

result<dataset_info> import_impl(const dataset_paths& paths, const std::string& file,
                                 const import_options& opt) {
  if (!valid_name(opt.name))
    return fail(errc::bad_request, "invalid data set name '" + opt.name +
                                       "': use 1-64 letters, digits, '_', '-' or '.', "
                                       "not starting with '.'");
  if (is_builtin_name(opt.name))
    return fail(errc::conflict, "'" + opt.name + "' is the name of a built-in data set");
  const fs::path root = owner_dir(paths, opt.owner_id);
  const fs::path final_dir = root / opt.name;
  std::error_code ec;
  if (fs::exists(final_dir, ec))
    return fail(errc::conflict, "a data set named '" + opt.name + "' already exists");
  if (!fs::is_regular_file(file, ec))
    return fail(errc::bad_request, "the uploaded file cannot be read");

  if (!opt.format.empty() && opt.format != "image_folder" && opt.format != "text_folder"
      && opt.format != "csv" && opt.format != "ucr" && opt.format != "ts")
    return fail(errc::bad_request, "unknown data set format '" + opt.format
                                     + "' (image_folder, text_folder, csv, ucr or ts)");
  if (opt.channels != 0 && opt.channels != 1 && opt.channels != 3)
    return fail(errc::bad_request, "channels must be 1 or 3");
  if (opt.image_size < 0 || opt.image_size > 4096)
    return fail(errc::bad_request, "image_size must be between 0 and 4096");
  if (!(opt.test_fraction >= 0.0 && opt.test_fraction < 1.0))
    return fail(errc::bad_request, "test_fraction must be in [0, 1)");
  std::string format = opt.format;
  if (format.empty() && looks_like_archive(file))
    format = archive_holds_texts(file) ? "text_folder" : "image_folder";
  if (format.empty()) {
    std::string head(4096, '\0');
    std::ifstream in(file, std::ios::binary);
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    head.resize(static_cast<size_t>(in.gcount()));
    auto cut = head.rfind('\n'); // whole lines only
    format = sniff_series_format(cut == std::string::npos ? head : head.substr(0, cut));
    if (format.empty())
      format = "csv";
  }

  fs::create_directories(root, ec);
  if (ec)
    return fail(errc::internal, "cannot create the data set directory: " + ec.message());
  dir_guard tmp{root / (".import-" + opt.name + "-" + std::to_string(std::random_device{}()))};
  fs::create_directory(tmp.dir, ec);
  if (ec)
    return fail(errc::internal, "cannot create a temporary directory: " + ec.message());

  auto d = format == "csv"                   ? import_csv(file, opt, tmp.dir)
           : format == "ucr" || format == "ts" ? import_series(file, format, opt, tmp.dir)
           : format == "text_folder"           ? import_text_folder(file, opt, tmp.dir)
                                               : import_image_folder(file, opt, tmp.dir);
  if (!d)
    return d.error();
  d->name = opt.name;
  d->source = "upload";
  d->owner_id = opt.owner_id;
  d->available = true;
  d->created_at = std::chrono::duration_cast<std::chrono::seconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  std::string text = info_to_json(*d);
  if (auto s = write_file(tmp.dir / info_file, text.data(), text.size()); !s)
    return s.error();

  // rename(2) onto an existing non-empty directory fails: a concurrent
  // import of the same name loses here rather than mixing files.
  fs::rename(tmp.dir, final_dir, ec);
  if (ec) {
    if (fs::exists(final_dir))
      return fail(errc::conflict, "a data set named '" + opt.name + "' already exists");
    return fail(errc::internal, "cannot store the data set: " + ec.message());
  }
  tmp.keep = true;
  d->path = final_dir.string();
  return d;
}

} // namespace

result<dataset_info> import_dataset(const dataset_paths& paths, const std::string& file,
                                    const import_options& opt) {
  try {
    return import_impl(paths, file, opt);
  } catch (const cv::Exception& e) {
    return fail(errc::bad_request, std::string("image decoding failed: ") + e.what());
  } catch (const std::bad_alloc&) {
    return fail(errc::payload_too_large, "the upload does not fit in memory");
  } catch (const std::exception& e) {
    return fail(errc::internal, std::string("import failed: ") + e.what());
  }
}

} // namespace rookery::data

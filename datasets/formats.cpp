// File formats of the data sets: IDX (through libarchive, which undoes the
// gzip Debian ships them in), fortune files and numeric CSV.
#include "datasets/detail.hpp"

#include "common/json_limits.hpp"

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>

namespace fs = std::filesystem;

namespace rookery::data::detail {

namespace {

struct archive_free {
  void operator()(archive* a) const { archive_read_free(a); }
};
using archive_ptr = std::unique_ptr<archive, archive_free>;

std::string archive_message(archive* a) {
  const char* m = archive_error_string(a);
  return m ? m : "unknown libarchive error";
}

/// Reads up to n bytes; fewer only at the end of the data. -1 on error.
int64_t read_fully(archive* a, uint8_t* dst, int64_t n) {
  int64_t got = 0;
  while (got < n) {
    la_ssize_t r = archive_read_data(a, dst + got, static_cast<size_t>(n - got));
    if (r < 0)
      return -1;
    if (r == 0)
      break;
    got += r;
  }
  return got;
}

std::string_view trim(std::string_view s) {
  const char* ws = " \t\r\n\v\f";
  auto b = s.find_first_not_of(ws);
  if (b == std::string_view::npos)
    return {};
  auto e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

result<std::string> slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return fail(errc::not_found, "cannot open " + path);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad())
    return fail(errc::internal, "cannot read " + path);
  return s;
}

} // namespace

std::string find_idx_file(const std::string& dir, const std::string& base) {
  std::error_code ec;
  for (const auto& name : {base + ".gz", base}) {
    fs::path p = fs::path(dir) / name;
    if (fs::is_regular_file(p, ec))
      return p.string();
  }
  return {};
}

result<std::vector<int64_t>> read_idx_file(const std::string& path, const idx_alloc& alloc) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec))
    return fail(errc::not_found, "IDX file " + path + " does not exist");

  archive_ptr a(archive_read_new());
  if (!a)
    return fail(errc::internal, "libarchive: out of memory");
  // gzip (how Debian ships them) or none, and the "raw" format: the
  // decompressed stream is the IDX file itself. Not filter_all: its bidders
  // include lzma-alone, whose 13-byte header may declare a 4 GB dictionary
  // (found by fuzz_idx).
  archive_read_support_filter_gzip(a.get());
  archive_read_support_format_raw(a.get());
  if (archive_read_open_filename(a.get(), path.c_str(), 64 * 1024) != ARCHIVE_OK)
    return fail(errc::unprocessable, "IDX file " + path + ": " + archive_message(a.get()));
  archive_entry* entry = nullptr;
  if (archive_read_next_header(a.get(), &entry) != ARCHIVE_OK)
    return fail(errc::unprocessable, "IDX file " + path + " is empty or unreadable: " +
                                         archive_message(a.get()));

  uint8_t magic[4];
  int64_t got = read_fully(a.get(), magic, 4);
  if (got < 0)
    return fail(errc::unprocessable, "IDX file " + path + ": " + archive_message(a.get()));
  if (got < 4)
    return fail(errc::unprocessable, "IDX file " + path + " is truncated: no header");
  if (magic[0] != 0 || magic[1] != 0)
    return fail(errc::unprocessable, "IDX file " + path + " has a bad magic number");
  if (magic[2] != 0x08) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02x", magic[2]);
    return fail(errc::unprocessable, "IDX file " + path + " has element type " + hex +
                                         "; only unsigned bytes (0x08) are supported");
  }
  int ndims = magic[3];
  if (ndims < 1 || ndims > 8)
    return fail(errc::unprocessable,
                "IDX file " + path + " has " + std::to_string(ndims) + " dimensions (1-8 allowed)");

  std::vector<uint8_t> raw(4 * static_cast<size_t>(ndims));
  got = read_fully(a.get(), raw.data(), static_cast<int64_t>(raw.size()));
  if (got < 0)
    return fail(errc::unprocessable, "IDX file " + path + ": " + archive_message(a.get()));
  if (got < static_cast<int64_t>(raw.size()))
    return fail(errc::unprocessable, "IDX file " + path + " is truncated in its header");
  std::vector<int64_t> dims(ndims);
  int64_t total = 1;
  for (int i = 0; i < ndims; ++i) {
    const uint8_t* p = raw.data() + 4 * i;
    dims[i] = (int64_t{p[0]} << 24) | (int64_t{p[1]} << 16) | (int64_t{p[2]} << 8) | p[3];
    if (dims[i] != 0 && total > kMaxIdxBytes / dims[i])
      return fail(errc::unprocessable, "IDX file " + path + " declares more than " +
                                           std::to_string(kMaxIdxBytes) + " bytes of data");
    total *= dims[i];
  }
  // An uncompressed file must hold exactly what its header declares: checked
  // against its size before anything is allocated.
  const bool compressed = archive_filter_code(a.get(), 0) != ARCHIVE_FILTER_NONE;
  const int64_t header_bytes = 4 + 4 * static_cast<int64_t>(ndims);
  if (!compressed) {
    const auto file_bytes = static_cast<int64_t>(fs::file_size(path, ec));
    if (ec)
      return fail(errc::unprocessable, "IDX file " + path + " cannot be read: " + ec.message());
    if (file_bytes - header_bytes < total)
      return fail(errc::unprocessable, "IDX file " + path + " is truncated: the header promises " +
                                           std::to_string(total) + " bytes of data, the file holds " +
                                           std::to_string(file_bytes - header_bytes));
    if (file_bytes - header_bytes > total)
      return fail(errc::unprocessable,
                  "IDX file " + path + " has more data than its header declares");
  }
  if (!alloc)
    return dims;

  if (!compressed) {
    uint8_t* dst = alloc(dims);
    got = read_fully(a.get(), dst, total);
    if (got < 0)
      return fail(errc::unprocessable, "IDX file " + path + ": " + archive_message(a.get()));
    if (got < total)
      return fail(errc::unprocessable, "IDX file " + path + " is truncated: the header promises " +
                                           std::to_string(total) + " bytes of data, found " +
                                           std::to_string(got));
    return dims;
  }
  // Compressed: how much data there is shows only while decompressing, so
  // it is read in chunks into memory that grows with what arrives, and the
  // caller's buffer is allocated once it is all there.
  std::vector<uint8_t> staged;
  std::vector<uint8_t> chunk(64 * 1024);
  while (true) {
    got = read_fully(a.get(), chunk.data(), static_cast<int64_t>(chunk.size()));
    if (got < 0)
      return fail(errc::unprocessable, "IDX file " + path + ": " + archive_message(a.get()));
    if (got == 0)
      break;
    if (static_cast<int64_t>(staged.size()) + got > total)
      return fail(errc::unprocessable,
                  "IDX file " + path + " has more data than its header declares");
    staged.insert(staged.end(), chunk.begin(), chunk.begin() + got);
  }
  if (static_cast<int64_t>(staged.size()) < total)
    return fail(errc::unprocessable, "IDX file " + path + " is truncated: the header promises " +
                                         std::to_string(total) + " bytes of data, found " +
                                         std::to_string(staged.size()));
  uint8_t* dst = alloc(dims);
  if (total)
    std::memcpy(dst, staged.data(), static_cast<size_t>(total));
  return dims;
}

// --- fortunes --------------------------------------------------------------------

std::vector<std::string> fortune_categories(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path& p = it->path();
    std::string name = p.filename().string();
    auto ext = p.extension().string();
    if (ext == ".dat" || ext == ".u8" || name.empty() || name[0] == '.')
      continue;
    std::error_code e2;
    // symlink_status: a symlink to a category would count it twice.
    if (!fs::is_regular_file(fs::symlink_status(p, e2)))
      continue;
    if (!fs::exists(fs::path(p.string() + ".dat"), e2))
      continue;
    out.push_back(std::move(name));
  }
  std::sort(out.begin(), out.end());
  return out;
}

result<fortune_corpus> read_fortunes(const std::string& dir) {
  fortune_corpus corpus;
  corpus.classes = fortune_categories(dir);
  for (size_t c = 0; c < corpus.classes.size(); ++c) {
    auto text = slurp((fs::path(dir) / corpus.classes[c]).string());
    if (!text)
      return text.error();
    std::string_view rest = text.value();
    std::string current;
    auto flush = [&] {
      auto t = trim(current);
      if (!t.empty()) {
        corpus.texts.emplace_back(t);
        corpus.labels.push_back(static_cast<int64_t>(c));
      }
      current.clear();
    };
    while (!rest.empty()) {
      auto nl = rest.find('\n');
      std::string_view line = rest.substr(0, nl);
      rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
      std::string_view bare = line;
      if (!bare.empty() && bare.back() == '\r')
        bare.remove_suffix(1);
      if (bare == "%") {
        flush();
      } else {
        current.append(line);
        current.push_back('\n');
      }
    }
    flush();
  }
  return corpus;
}

// --- WordNet ---------------------------------------------------------------------

result<fortune_corpus> read_wordnet(const std::string& dir) {
  fortune_corpus corpus;
  corpus.classes = {"adj", "adv", "noun", "verb"};
  bool any = false;
  for (size_t c = 0; c < corpus.classes.size(); ++c) {
    const auto path = fs::path(dir) / ("data." + corpus.classes[c]);
    std::error_code ec;
    if (!fs::exists(path, ec))
      continue;
    auto text = slurp(path.string());
    if (!text)
      return text.error();
    any = true;
    std::string_view rest = text.value();
    while (!rest.empty()) {
      auto nl = rest.find('\n');
      std::string_view line = rest.substr(0, nl);
      rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
      // "offset lex_filenum ss_type w_cnt(hex) word lex_id [word lex_id...] p_cnt ... | gloss";
      // the licence lines at the top start with spaces.
      if (line.empty() || line[0] == ' ')
        continue;
      auto bar = line.find(" | ");
      if (bar == std::string_view::npos)
        continue;
      std::vector<std::string_view> f;
      for (size_t i = 0; i < bar && f.size() < 4 + 2 * 255;) {
        auto sp = line.find(' ', i);
        if (sp == std::string_view::npos || sp > bar)
          sp = bar;
        f.push_back(line.substr(i, sp - i));
        i = sp + 1;
      }
      if (f.size() < 6)
        continue;
      unsigned long words = std::strtoul(std::string(f[3]).c_str(), nullptr, 16);
      std::string out;
      for (unsigned long w = 0; w < words && 4 + 2 * w < f.size(); ++w) {
        std::string lemma(f[4 + 2 * w]);
        if (auto paren = lemma.find('('); paren != std::string::npos)
          lemma.resize(paren); // adjective markers: "(a)", "(p)", "(ip)"
        std::replace(lemma.begin(), lemma.end(), '_', ' ');
        if (lemma.empty())
          continue;
        out += out.empty() ? "" : ", ";
        out += lemma;
      }
      auto gloss = std::string(trim(line.substr(bar + 3)));
      if (out.empty() || gloss.empty())
        continue;
      corpus.texts.push_back(out + ": " + gloss);
      corpus.labels.push_back(static_cast<int64_t>(c));
    }
  }
  if (!any)
    return fail(errc::not_found, "WordNet is not installed: install the Debian package wordnet-base");
  return corpus;
}

// --- CSV ---------------------------------------------------------------------------

namespace {

/// The cells of one line, at most kMaxCsvColumns + 1 of them (enough to
/// tell that a line has too many).
std::vector<std::string_view> split_cells(std::string_view line) {
  std::vector<std::string_view> cells;
  size_t start = 0;
  while (cells.size() <= kMaxCsvColumns) {
    auto comma = line.find(',', start);
    auto cell = trim(line.substr(start, comma == std::string_view::npos ? std::string_view::npos
                                                                         : comma - start));
    // Quotes around a cell are tolerated; quoted commas are not supported.
    if (cell.size() >= 2 && cell.front() == '"' && cell.back() == '"')
      cell = cell.substr(1, cell.size() - 2);
    cells.push_back(cell);
    if (comma == std::string_view::npos)
      break;
    start = comma + 1;
  }
  return cells;
}

bool parse_number(std::string_view cell, double& out) {
  if (cell.empty())
    return false;
  std::string s(cell);
  char* end = nullptr;
  errno = 0;
  out = std::strtod(s.c_str(), &end);
  // NaN and infinities are refused: they would poison training silently.
  return end == s.c_str() + s.size() && std::isfinite(out);
}

} // namespace

result<csv_table> parse_csv(const std::string& path, uint64_t max_bytes) {
  std::error_code ec;
  auto size = fs::file_size(path, ec);
  if (ec)
    return fail(errc::not_found, "cannot read CSV file " + path);
  if (size > max_bytes)
    return fail(errc::payload_too_large, "CSV file is larger than " +
                                             std::to_string(max_bytes) + " bytes");
  auto text = slurp(path);
  if (!text)
    return text.error();
  std::string_view rest = text.value();
  if (rest.size() >= 3 && rest.substr(0, 3) == "\xEF\xBB\xBF") // UTF-8 byte-order mark
    rest.remove_prefix(3);
  if (trim(rest).empty())
    return fail(errc::bad_request, "CSV file is empty");

  csv_table table;
  int64_t line_no = 0;
  bool header = true;
  while (!rest.empty()) {
    auto nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
    ++line_no;
    if (trim(line).empty())
      continue;
    auto cells = split_cells(line);
    if (cells.size() > kMaxCsvColumns)
      return fail(errc::bad_request, "CSV line " + std::to_string(line_no) + " has more than " +
                                         std::to_string(kMaxCsvColumns) + " columns");
    for (size_t i = 0; i < cells.size(); ++i)
      if (cells[i].size() > kMaxCsvFieldBytes)
        return fail(errc::bad_request, "CSV line " + std::to_string(line_no) + ", column " +
                                           std::to_string(i + 1) + " is longer than " +
                                           std::to_string(kMaxCsvFieldBytes) + " bytes");
    if (header) {
      header = false;
      bool all_numeric = true;
      for (size_t i = 0; i < cells.size(); ++i) {
        const auto c = cells[i];
        double d;
        if (c.empty())
          return fail(errc::bad_request, "CSV header (line " + std::to_string(line_no) +
                                             ") has an empty column name");
        // Column names go into dataset.json and answers. Not transcoded: a
        // name that is not UTF-8 may be Latin-1 or CP1252 or another legacy
        // code page, and a wrong guess would rename the column silently.
        if (!jsonx::valid_utf8(c))
          return fail(errc::bad_request, "column " + std::to_string(i + 1) + " of the CSV header is "
                                         "not valid UTF-8 ('" + jsonx::sanitize_utf8(c) +
                                         "'); save the file as UTF-8");
        all_numeric = all_numeric && parse_number(c, d);
      }
      if (all_numeric)
        return fail(errc::bad_request,
                    "CSV file has no header row: line 1 must name the columns");
      for (auto c : cells)
        table.columns.emplace_back(c);
      continue;
    }
    if (cells.size() != table.columns.size())
      return fail(errc::bad_request, "CSV line " + std::to_string(line_no) + " has " +
                                         std::to_string(cells.size()) + " fields, the header has " +
                                         std::to_string(table.columns.size()));
    for (size_t i = 0; i < cells.size(); ++i) {
      double d;
      if (!parse_number(cells[i], d))
        return fail(errc::bad_request, "CSV line " + std::to_string(line_no) + ", column " +
                                           std::to_string(i + 1) + " (" + table.columns[i] +
                                           "): '" + jsonx::sanitize_utf8(cells[i].substr(0, 40)) +
                                           "' is not a number");
      table.values.push_back(d);
    }
    ++table.rows;
    // The parsed table is 8 bytes a cell, up to 4 times the text ("1,"):
    // it counts toward max_bytes as the file does.
    if (table.values.size() > max_bytes / sizeof(double))
      return fail(errc::payload_too_large, "the CSV's values take more than " +
                                               std::to_string(max_bytes) +
                                               " bytes decoded (8 bytes a cell) at line " +
                                               std::to_string(line_no));
  }
  if (table.rows == 0)
    return fail(errc::bad_request, "CSV file has a header but no data rows");
  return table;
}

} // namespace rookery::data::detail

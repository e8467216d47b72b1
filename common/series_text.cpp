#include "common/series_text.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>

#include <nlohmann/json.hpp>

#include "common/json_limits.hpp"

namespace rookery {

namespace {

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos)
      end = text.size();
    std::string line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r')
      line.pop_back();
    lines.push_back(std::move(line));
    start = end + 1;
  }
  return lines;
}

char delimiter_of(const std::string& line) {
  for (char d : {'\t', ',', ';'})
    if (line.find(d) != std::string::npos)
      return d;
  return ' '; // whitespace-separated (or one column)
}

std::vector<std::string> cells_of(const std::string& line, char d) {
  std::vector<std::string> out;
  if (d == ' ') {
    size_t i = 0;
    while (i < line.size()) {
      while (i < line.size() && (line[i] == ' ' || line[i] == '\t'))
        ++i;
      size_t j = i;
      while (j < line.size() && line[j] != ' ' && line[j] != '\t')
        ++j;
      if (j > i)
        out.push_back(line.substr(i, j - i));
      i = j;
    }
    return out;
  }
  size_t start = 0;
  while (true) {
    size_t end = line.find(d, start);
    std::string c = line.substr(start, end == std::string::npos ? std::string::npos : end - start);
    while (!c.empty() && (c.front() == ' ' || c.front() == '"'))
      c.erase(c.begin());
    while (!c.empty() && (c.back() == ' ' || c.back() == '"'))
      c.pop_back();
    out.push_back(std::move(c));
    if (end == std::string::npos)
      break;
    start = end + 1;
  }
  return out;
}

bool missing(const std::string& c) {
  return c.empty() || c == "NA" || c == "NaN" || c == "nan" || c == "?" || c == "null";
}

bool number(const std::string& c, double& out) {
  if (c.empty() || c.size() > 64)
    return false;
  errno = 0;
  char* end = nullptr;
  out = std::strtod(c.c_str(), &end);
  return end == c.c_str() + c.size() && errno != ERANGE && std::isfinite(out);
}

/// Linear interpolation over missing values (NaN); ends take the nearest value.
status fill_missing(std::vector<double>& v, const std::string& name) {
  int64_t last = -1;
  for (int64_t i = 0; i < static_cast<int64_t>(v.size()); ++i) {
    if (std::isnan(v[static_cast<size_t>(i)]))
      continue;
    if (last < 0)
      for (int64_t j = 0; j < i; ++j)
        v[static_cast<size_t>(j)] = v[static_cast<size_t>(i)];
    else
      for (int64_t j = last + 1; j < i; ++j)
        v[static_cast<size_t>(j)] = v[static_cast<size_t>(last)]
                                    + (v[static_cast<size_t>(i)] - v[static_cast<size_t>(last)])
                                        * static_cast<double>(j - last) / static_cast<double>(i - last);
    last = i;
  }
  if (last < 0)
    return fail(errc::bad_request, "column '" + name + "' has no values");
  for (size_t j = static_cast<size_t>(last) + 1; j < v.size(); ++j)
    v[j] = v[static_cast<size_t>(last)];
  return {};
}

result<series_table> parse_table(const std::string& text, const series_limits& lim) {
  std::vector<std::string> lines;
  for (auto& l : split_lines(text))
    if (l.find_first_not_of(" \t") != std::string::npos)
      lines.push_back(std::move(l));
  if (lines.empty())
    return fail(errc::bad_request, "the series is empty");
  const char d = delimiter_of(lines.front());
  auto first = cells_of(lines.front(), d);
  // A header: some cell of the first line is neither a number nor missing.
  bool header = false;
  double v = 0;
  for (auto& c : first)
    header = header || (!missing(c) && !number(c, v));
  const size_t ncols = first.size();
  if (static_cast<int64_t>(ncols) > 4096)
    return fail(errc::bad_request, "a series table has at most 4096 columns");
  const size_t rows = lines.size() - (header ? 1 : 0);
  if (rows == 0)
    return fail(errc::bad_request, "the series has a header but no rows");
  // One row of numbers is one series (a UCR-style line), not many one-point channels.
  const bool one_row = rows == 1 && ncols > 1;
  std::vector<std::vector<double>> cols(ncols);
  std::vector<bool> numeric(ncols, true);
  int64_t points = 0;
  for (size_t r = header ? 1 : 0; r < lines.size(); ++r) {
    auto cells = cells_of(lines[r], d);
    if (cells.size() != ncols)
      return fail(errc::bad_request, "line " + std::to_string(r + 1) + " has " + std::to_string(cells.size())
                                       + " cells, the first line " + std::to_string(ncols));
    for (size_t c = 0; c < ncols; ++c) {
      if (!numeric[c])
        continue;
      if (missing(cells[c])) {
        cols[c].push_back(std::nan(""));
      } else if (number(cells[c], v)) {
        cols[c].push_back(v);
      } else if (header) {
        numeric[c] = false; // a date or a label column: dropped
        cols[c].clear();
        continue;
      } else {
        return fail(errc::bad_request, "line " + std::to_string(r + 1) + ", column " + std::to_string(c + 1)
                                         + ": '" + cells[c].substr(0, 32) + "' is not a number");
      }
      if (++points > lim.max_points)
        return fail(errc::payload_too_large, "a series has at most " + std::to_string(lim.max_points) + " values");
    }
  }
  series_table t;
  if (one_row) {
    std::vector<double> row;
    for (size_t c = 0; c < ncols; ++c)
      if (numeric[c])
        row.push_back(cols[c].front());
    t.names.push_back(header ? "row 1" : "series");
    t.channels.push_back(std::move(row));
  } else {
    for (size_t c = 0; c < ncols; ++c)
      if (numeric[c]) {
        t.names.push_back(header ? first[c] : "column " + std::to_string(c + 1));
        t.channels.push_back(std::move(cols[c]));
      }
  }
  if (t.channels.empty())
    return fail(errc::bad_request, "the table has no numeric column");
  // A first column that counts up in equal steps (an index, a year) is the
  // time axis, not a channel, when other numeric columns follow.
  if (!one_row && t.channels.size() > 1 && t.channels.front().size() > 2) {
    const auto& c = t.channels.front();
    const double step = c[1] - c[0];
    bool axis = step > 0;
    for (size_t i = 2; axis && i < c.size(); ++i)
      axis = std::fabs((c[i] - c[i - 1]) - step) <= 1e-9 * std::max(1.0, std::fabs(step));
    if (axis) {
      t.channels.erase(t.channels.begin());
      t.names.erase(t.names.begin());
    }
  }
  if (static_cast<int64_t>(t.channels.size()) > lim.max_channels)
    return fail(errc::bad_request, "a series has at most " + std::to_string(lim.max_channels)
                                     + " channels (numeric columns); this one has "
                                     + std::to_string(t.channels.size()));
  for (size_t c = 0; c < t.channels.size(); ++c)
    if (auto s = fill_missing(t.channels[c], t.names[c]); !s)
      return s.error();
  return t;
}

status numbers_of(const nlohmann::json& j, std::vector<double>& out, const std::string& where) {
  if (!j.is_array())
    return fail(errc::bad_request, where + " must be an array of numbers");
  for (auto& x : j) {
    if (x.is_null()) {
      out.push_back(std::nan(""));
      continue;
    }
    if (!x.is_number())
      return fail(errc::bad_request, where + " must hold numbers (or null for a missing value)");
    out.push_back(x.get<double>());
    if (!std::isfinite(out.back()))
      return fail(errc::bad_request, where + " holds a value out of range");
  }
  return {};
}

result<series_table> parse_json_series(const nlohmann::json& j, const series_limits& lim) {
  const nlohmann::json* s = &j;
  if (j.is_object()) {
    auto i = j.find("series");
    if (i == j.end())
      i = j.find("values");
    if (i == j.end())
      return fail(errc::bad_request, "a JSON series is [numbers], [[numbers], ...], or {\"series\": ...}");
    s = &*i;
  }
  if (!s->is_array() || s->empty())
    return fail(errc::bad_request, "the series must be a non-empty array");
  series_table t;
  const bool nested = s->front().is_array();
  if (nested && static_cast<int64_t>(s->size()) > lim.max_channels)
    return fail(errc::bad_request, "a series has at most " + std::to_string(lim.max_channels) + " channels");
  int64_t points = 0;
  for (size_t c = 0; c < (nested ? s->size() : 1); ++c) {
    std::vector<double> v;
    const std::string where = nested ? "channel " + std::to_string(c) : "the series";
    if (auto st = numbers_of(nested ? (*s)[c] : *s, v, where); !st)
      return st.error();
    points += static_cast<int64_t>(v.size());
    if (points > lim.max_points)
      return fail(errc::payload_too_large, "a series has at most " + std::to_string(lim.max_points) + " values");
    t.names.push_back(nested ? where : "series");
    if (auto st = fill_missing(v, t.names.back()); !st)
      return st.error();
    t.channels.push_back(std::move(v));
  }
  for (auto& ch : t.channels)
    if (ch.size() != t.channels.front().size())
      return fail(errc::bad_request, "every channel of a series must have the same length");
  return t;
}

size_t first_non_space(const std::string& t) {
  size_t i = 0;
  if (t.compare(0, 3, "\xEF\xBB\xBF") == 0) // UTF-8 byte-order mark
    i = 3;
  while (i < t.size() && (t[i] == ' ' || t[i] == '\t' || t[i] == '\r' || t[i] == '\n'))
    ++i;
  return i;
}

} // namespace

result<series_table> parse_series(const std::string& bytes, const series_limits& lim) {
  const size_t i = first_non_space(bytes);
  if (i == bytes.size())
    return fail(errc::bad_request, "the series is empty");
  if (bytes[i] == '[' || bytes[i] == '{') {
    std::string why;
    auto j = jsonx::parse_bounded(bytes, &why);
    if (!j)
      return fail(errc::bad_request, "the series is not valid JSON: " + why);
    return parse_json_series(*j, lim);
  }
  return parse_table(bytes.substr(i), lim);
}

bool looks_like_numeric_table(const std::string& text) {
  auto t = parse_table(text.substr(first_non_space(text)), series_limits{});
  if (!t)
    return false;
  size_t n = 0;
  for (auto& c : t->channels)
    n += c.size();
  return n >= 3;
}

std::string json_payload_kind(const std::string& text) {
  std::string why;
  auto j = jsonx::parse_bounded(text, &why);
  if (!j)
    return "";
  if (j->is_object()) {
    if (j->contains("series") || j->contains("values"))
      return "series";
    if (j->contains("text") || j->contains("texts"))
      return "text";
    return "";
  }
  if (j->is_array() && !j->empty() && (j->front().is_number() || j->front().is_array()))
    return "series";
  return "";
}

} // namespace rookery

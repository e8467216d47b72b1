#include "common/job_files.hpp"

#include <algorithm>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace rookery::jobs {

std::string dir_of(const std::string& jobs_dir, const std::string& id) {
  return (fs::path(jobs_dir) / id).string();
}

std::string input_path(const std::string& jobs_dir, const std::string& id) {
  return (fs::path(jobs_dir) / id / "input.bin").string();
}

status write_atomically(const std::string& path, const std::string& bytes) {
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  const auto tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) {
      fs::remove(tmp, ec);
      return fail(errc::internal, "cannot write " + path);
    }
  }
  fs::rename(tmp, path, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    return fail(errc::internal, "cannot write " + path + ": " + ec.message());
  }
  return {};
}

result<std::string> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return fail(errc::not_found, "cannot read " + path);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad())
    return fail(errc::not_found, "cannot read " + path);
  return bytes;
}

std::string read_history(const std::string& dir, std::size_t max_points) {
  std::ifstream in(fs::path(dir) / "metrics.jsonl");
  std::deque<json> points;
  std::string line;
  while (std::getline(in, line)) {
    auto j = json::parse(line, nullptr, false);
    if (!j.is_object())
      continue;
    points.push_back(std::move(j));
    if (points.size() > max_points)
      points.pop_front();
  }
  json arr = json::array();
  for (auto& p : points)
    arr.push_back(std::move(p));
  return arr.dump();
}

const char* content_type_of(const std::string& path) {
  auto ext = fs::path(path).extension().string();
  if (ext == ".png")
    return "image/png";
  if (ext == ".json")
    return "application/json";
  if (ext == ".jsonl")
    return "application/x-ndjson";
  if (ext == ".txt")
    return "text/plain; charset=utf-8";
  return "application/octet-stream";
}

std::string list_artifacts(const std::string& dir, const std::string& id) {
  json arr = json::array();
  std::error_code ec;
  if (fs::is_directory(dir, ec))
    for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
         it.increment(ec)) {
      auto& e = *it;
      if (!e.is_regular_file() || e.path().extension() == ".tmp" || e.path().filename() == "input.bin")
        continue;
      auto rel = fs::relative(e.path(), dir, ec).string();
      arr.push_back(json{{"path", rel},
                         {"bytes", e.file_size(ec)},
                         {"content_type", content_type_of(e.path().string())},
                         {"href", "/v1/jobs/" + id + "/artifacts/" + rel}});
    }
  std::sort(arr.begin(), arr.end(), [](const json& a, const json& b) { return a["path"] < b["path"]; });
  return json{{"job", id}, {"artifacts", arr}}.dump();
}

result<std::string> artifact_file(const std::string& dir, const std::string& id,
                                  const std::string& rel) {
  auto missing = [&] { return fail(errc::not_found, "job '" + id + "' has no artifact '" + rel + "'"); };
  auto p = fs::path(rel).lexically_normal();
  if (rel.empty() || p.is_absolute() || rel.find("..") != std::string::npos ||
      p.filename() == "input.bin")
    return missing();
  std::error_code ec;
  auto file = fs::weakly_canonical(fs::path(dir) / p, ec);
  if (ec)
    return missing();
  auto root = fs::weakly_canonical(dir, ec);
  if (ec)
    return missing();
  auto [r, f] = std::mismatch(root.begin(), root.end(), file.begin(), file.end());
  if (r != root.end() || !fs::is_regular_file(file, ec))
    return missing();
  return file.string();
}

} // namespace rookery::jobs

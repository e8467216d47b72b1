// Shared by the parity tests: a scratch directory for the Python exporters
// (tests/tools/export_*.py) and the raw little-endian float32 files they write,
// read back as vectors or tensors.
#pragma once
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

namespace rookery::test {

/// Debian's Python, which has python3-torch (the PATH one may not).
inline const char* const python = "/usr/bin/python3";

/// A fresh directory under the system temp dir, removed with everything in it.
struct temp_dir {
  std::filesystem::path path;
  explicit temp_dir(const std::string& prefix) {
    std::random_device rd;
    path = std::filesystem::temp_directory_path() / (prefix + std::to_string(rd()));
    std::filesystem::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
};

inline std::vector<float> read_bin(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<float> v(s.size() / sizeof(float));
  std::memcpy(v.data(), s.data(), v.size() * sizeof(float));
  return v;
}

/// The file as a tensor of `shape` (a JSON array of sizes), owning its memory.
inline torch::Tensor read_tensor(const std::filesystem::path& p, const nlohmann::json& shape) {
  auto v = read_bin(p);
  return torch::from_blob(v.data(), shape.get<std::vector<int64_t>>(), torch::kFloat).clone();
}

} // namespace rookery::test

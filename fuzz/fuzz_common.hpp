// Shared by the file-based fuzz targets: the readers under test take paths,
// so each input is written to a scratch file (on /dev/shm when it exists).
#pragma once
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

namespace fuzz {

inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    std::error_code ec;
    std::filesystem::path base = std::filesystem::exists("/dev/shm", ec)
                                   ? std::filesystem::path("/dev/shm")
                                   : std::filesystem::temp_directory_path();
    auto d = base / ("rookery-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d, ec);
    return d;
  }();
  return dir;
}

/// Writes the input to `name` in the scratch directory and returns the path.
inline std::string write_input(const uint8_t* data, size_t size, const std::string& name) {
  auto p = scratch_dir() / name;
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return p.string();
}

} // namespace fuzz

// nsfwjs itself as the reference for the built-in weights' parity tests
// (tests/unit/nsfwjs_parity_test.cpp, tests/integration/nsfwjs_test.cpp): runs
// scripts/nsfwjs/reference.mjs -- nsfwjs 4.4.0's infer() on the pure-JS CPU
// backend of @tensorflow/tfjs -- on raw RGB pixels and reads its JSON answer.
// The npm packages are what scripts/setup.sh installs into
// scripts/nsfwjs/node_modules. Header-only (std + nlohmann), for both test
// binaries; ROOKERY_SOURCE_DIR and ROOKERY_BINARY come from CMake.
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace rookery::test::nsfwjs {

inline std::filesystem::path scripts_dir() {
  return std::filesystem::path(ROOKERY_SOURCE_DIR) / "scripts" / "nsfwjs";
}

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

/// Whether nsfwjs, @tensorflow/tfjs and node are there; `why` says what is missing.
inline bool installed(std::string& why) {
  namespace fs = std::filesystem;
  for (const char* pkg : {"nsfwjs", "@tensorflow/tfjs"})
    if (!fs::exists(scripts_dir() / "node_modules" / pkg / "package.json")) {
      why = std::string("npm package ") + pkg + " is not installed under "
            + (scripts_dir() / "node_modules").string() + " (scripts/setup.sh installs it)";
      return false;
    }
  if (std::system("node --version > /dev/null 2>&1") != 0) {
    why = "node is not installed (scripts/setup.sh installs it)";
    return false;
  }
  return true;
}

struct answer {
  std::string package; // "nsfwjs@4.4.0"
  std::string backend; // "cpu"
  std::vector<double> probabilities; // the 5 classes (Drawing, Hentai, Neutral, Porn, Sexy)
  std::vector<double> features;      // the pooled features (layer flatten_1)
  double forward_ms = 0;
};

/// Runs reference.mjs on `rgb` (height * width * 3 bytes). With `cache_dir`
/// set, the answer is kept there, keyed by the model, the pixels and
/// package-lock.json, and with `read_cache` a kept answer is used instead of
/// running nsfwjs again. nullopt with `error` set on failure.
inline std::optional<answer> run(const std::string& model, const std::string& rgb, int height,
                                 int width, const std::string& cache_dir, bool read_cache,
                                 std::string& error) {
  namespace fs = std::filesystem;
  const auto key = std::hash<std::string>{}(model + "\n" + std::to_string(height) + "x"
                                            + std::to_string(width) + "\n"
                                            + slurp(scripts_dir() / "package-lock.json") + rgb);
  std::ostringstream name;
  name << model << "-" << std::hex << key << ".json";
  std::string text;
  fs::path cached;
  if (!cache_dir.empty()) {
    cached = fs::path(cache_dir) / name.str();
    if (read_cache && fs::exists(cached))
      text = slurp(cached);
  }
  if (text.empty()) {
    auto tmp = fs::temp_directory_path() / ("rookery-nsfwjs-" + std::to_string(key) + "-"
                                            + std::to_string(std::rand()));
    fs::create_directories(tmp);
    {
      std::ofstream(tmp / "pixels.rgb", std::ios::binary) << rgb;
    }
    auto cmd = "cd '" + scripts_dir().string() + "' && node reference.mjs " + model + " '"
               + (tmp / "pixels.rgb").string() + "' " + std::to_string(height) + " "
               + std::to_string(width) + " > '" + (tmp / "out.json").string() + "' 2> '"
               + (tmp / "err.txt").string() + "'";
    const int rc = std::system(cmd.c_str());
    text = slurp(tmp / "out.json");
    if (rc != 0 || text.empty()) {
      error = "reference.mjs " + model + " failed (exit " + std::to_string(rc)
              + "): " + slurp(tmp / "err.txt");
      fs::remove_all(tmp);
      return std::nullopt;
    }
    if (!cached.empty()) {
      std::error_code ec;
      fs::create_directories(cached.parent_path(), ec);
      auto part = cached.string() + ".part-" + std::to_string(std::rand());
      std::ofstream(part) << text;
      fs::rename(part, cached, ec); // whole or not at all
    }
    fs::remove_all(tmp);
  }
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("probabilities") || !j.contains("features")) {
    error = "reference.mjs " + model + " printed no answer: " + text.substr(0, 200);
    return std::nullopt;
  }
  answer a;
  a.package = j.value("package", "");
  a.backend = j.value("backend", "");
  a.probabilities = j["probabilities"].get<std::vector<double>>();
  a.features = j["features"].get<std::vector<double>>();
  a.forward_ms = j.value("forward_ms", 0.0);
  return a;
}

/// Converts nsfwjs's weights with scripts/nsfwjs/ (what scripts/setup.sh does)
/// into `scratch`/builtin and returns that directory; "" with `error` set on failure.
inline std::string convert_into(const std::filesystem::path& scratch, std::string& error) {
  auto dir = scripts_dir().string();
  auto out = (scratch / "export").string();
  auto builtin = (scratch / "builtin").string();
  auto log = (scratch / "convert.log").string();
  auto cmd = "cd '" + dir + "' && node export_weights.mjs inception_v3 '" + out + "' > '" + log
             + "' 2>&1 && node export_weights.mjs mobilenet_v2 '" + out + "' >> '" + log
             + "' 2>&1 && /usr/bin/python3 convert_weights.py '" + out + "' '" + builtin
             + "' inception_v3 mobilenet_v2 >> '" + log + "' 2>&1";
  if (std::system(cmd.c_str()) != 0) {
    error = "converting the nsfwjs weights failed: " + slurp(log);
    return "";
  }
  std::filesystem::remove_all(out);
  return builtin;
}

/// Whether `dir` holds both converted built-in models.
inline bool has_builtin_models(const std::string& dir) {
  namespace fs = std::filesystem;
  return !dir.empty() && fs::exists(fs::path(dir) / "nsfwjs_inception_v3" / "1" / "config.json")
         && fs::exists(fs::path(dir) / "nsfwjs_mobilenet_v2" / "1" / "config.json");
}

/// Where the test binaries keep answers between runs: next to the rookery binary.
inline std::string default_cache_dir() {
  return (std::filesystem::path(ROOKERY_BINARY).parent_path() / "nsfwjs-reference").string();
}

} // namespace rookery::test::nsfwjs

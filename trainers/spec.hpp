// The one reader of job specs: every trainer reads its keys ("hyper", "task",
// "model" objects) through spec_reader, so every bad value is a bad_request
// that names the key by its path ("hyper.lr", "task.input.length") and says
// what would do. Torch-free.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/result.hpp"

namespace rookery::train {

/// Reads optional keys of one JSON object. The first problem is kept; later
/// reads leave their outputs alone, so a parser reads everything and asks
/// done() once. An absent key, or one set to null, keeps the default.
class spec_reader {
public:
  /// `obj` must outlive the reader; anything but an object reads as empty
  /// (spec_object() is where a wrong type is refused). `path` prefixes the
  /// names in messages ("hyper" gives "hyper.lr").
  spec_reader(const nlohmann::json& obj, std::string path);

  /// An integer in [lo, hi] (an integral float such as 1e3 is taken when it
  /// is exact).
  spec_reader& integer(const char* key, int64_t& out, int64_t lo, int64_t hi);
  spec_reader& integer(const char* key, uint64_t& out, uint64_t lo, uint64_t hi);
  /// A finite number in [lo, hi]; lo_open / hi_open exclude the end.
  spec_reader& number(const char* key, double& out, double lo, double hi, bool lo_open = false,
                      bool hi_open = false);
  spec_reader& boolean(const char* key, bool& out);
  spec_reader& string(const char* key, std::string& out);
  /// One of `allowed`.
  spec_reader& choice(const char* key, std::string& out, const std::vector<std::string>& allowed);
  /// An array of distinct non-empty strings.
  spec_reader& strings(const char* key, std::vector<std::string>& out);
  /// A rule of the caller's: when `ok` is false, "<path>.<key> <what>" becomes
  /// the problem (unless there is one already).
  spec_reader& check(bool ok, const std::string& key, const std::string& what);

  bool has(const char* key) const;
  /// "<path>.<key>".
  std::string name(const std::string& key) const;
  /// ok, or bad_request with the first problem.
  status done() const;
  const nlohmann::json& object() const { return obj_; }

private:
  bool skip(const char* key) const; // a problem already, or nothing to read
  void problem(const std::string& key, const std::string& what);

  const nlohmann::json& obj_;
  std::string path_;
  std::string error_;
};

/// spec[key] when it is an object, an empty object when it is absent or
/// null; bad_request "'<key>' must be an object" otherwise (and when `spec`
/// itself is not an object).
result<const nlohmann::json*> spec_object(const nlohmann::json& spec, const char* key);

/// The job spec's "model": an architecture name, or {"arch", "options"?,
/// "pretrained"?}. Leaves `arch` (the caller's default), `options` (an
/// object) and `pretrained` alone for what is absent; bad_request naming the
/// field otherwise.
status read_model_choice(const nlohmann::json& spec, std::string& arch, nlohmann::json& options,
                         std::string& pretrained);

} // namespace rookery::train

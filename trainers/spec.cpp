#include "trainers/spec.hpp"

#include <algorithm>
#include <cmath>
#include <set>

#include <nlohmann/json.hpp>

using json = nlohmann::json;

namespace rookery::train {

namespace {

const json& empty_object() {
  static const json e = json::object();
  return e;
}

// Doubles up to 2^53 are exact integers; beyond that "1e300" is no count.
constexpr double exact_limit = 9007199254740992.0;

} // namespace

spec_reader::spec_reader(const json& obj, std::string path)
  : obj_(obj.is_object() ? obj : empty_object()), path_(std::move(path)) {}

std::string spec_reader::name(const std::string& key) const {
  return path_.empty() ? key : path_ + "." + key;
}

bool spec_reader::has(const char* key) const {
  auto i = obj_.find(key);
  return i != obj_.end() && !i->is_null();
}

bool spec_reader::skip(const char* key) const {
  return !error_.empty() || !has(key);
}

void spec_reader::problem(const std::string& key, const std::string& what) {
  if (error_.empty())
    error_ = name(key) + " " + what;
}

spec_reader& spec_reader::check(bool ok, const std::string& key, const std::string& what) {
  if (!ok)
    problem(key, what);
  return *this;
}

spec_reader& spec_reader::integer(const char* key, int64_t& out, int64_t lo, int64_t hi) {
  if (skip(key))
    return *this;
  const json& v = obj_.at(key);
  auto range = [&](const std::string& got) {
    problem(key, "is out of range: must be in [" + std::to_string(lo) + ", " + std::to_string(hi)
                   + "], got " + got);
  };
  if (v.is_number_unsigned()) {
    auto x = v.get<uint64_t>();
    if (hi < 0 || x > static_cast<uint64_t>(hi) || static_cast<int64_t>(x) < lo)
      return range(v.dump()), *this;
    out = static_cast<int64_t>(x);
  } else if (v.is_number_integer()) {
    auto x = v.get<int64_t>();
    if (x < lo || x > hi)
      return range(v.dump()), *this;
    out = x;
  } else if (v.is_number_float() && std::isfinite(v.get<double>())
             && std::floor(v.get<double>()) == v.get<double>()) {
    double x = v.get<double>();
    if (std::fabs(x) > exact_limit || x < static_cast<double>(lo) || x > static_cast<double>(hi))
      return range(v.dump()), *this;
    out = static_cast<int64_t>(x);
  } else {
    problem(key, "must be an integer, got " + v.dump());
  }
  return *this;
}

spec_reader& spec_reader::integer(const char* key, uint64_t& out, uint64_t lo, uint64_t hi) {
  if (skip(key))
    return *this;
  const json& v = obj_.at(key);
  auto range = [&] {
    problem(key, "is out of range: must be in [" + std::to_string(lo) + ", " + std::to_string(hi)
                   + "], got " + v.dump());
  };
  if (v.is_number_unsigned()) {
    auto x = v.get<uint64_t>();
    if (x < lo || x > hi)
      return range(), *this;
    out = x;
  } else if (v.is_number_integer()) {
    auto x = v.get<int64_t>();
    if (x < 0 || static_cast<uint64_t>(x) < lo || static_cast<uint64_t>(x) > hi)
      return range(), *this;
    out = static_cast<uint64_t>(x);
  } else if (v.is_number_float() && std::isfinite(v.get<double>())
             && std::floor(v.get<double>()) == v.get<double>()) {
    double x = v.get<double>();
    if (x < 0 || x > exact_limit || x < static_cast<double>(lo) || x > static_cast<double>(hi))
      return range(), *this;
    out = static_cast<uint64_t>(x);
  } else {
    problem(key, "must be an integer, got " + v.dump());
  }
  return *this;
}

spec_reader& spec_reader::number(const char* key, double& out, double lo, double hi, bool lo_open,
                                 bool hi_open) {
  if (skip(key))
    return *this;
  const json& v = obj_.at(key);
  if (!v.is_number() || !std::isfinite(v.get<double>())) {
    problem(key, "must be a finite number, got " + v.dump());
    return *this;
  }
  const double x = v.get<double>();
  if ((lo_open ? x <= lo : x < lo) || (hi_open ? x >= hi : x > hi)) {
    problem(key, std::string("must be in ") + (lo_open ? "(" : "[") + json(lo).dump() + ", "
                   + json(hi).dump() + (hi_open ? ")" : "]") + ", got " + v.dump());
    return *this;
  }
  out = x;
  return *this;
}

spec_reader& spec_reader::boolean(const char* key, bool& out) {
  if (skip(key))
    return *this;
  const json& v = obj_.at(key);
  if (!v.is_boolean())
    problem(key, "must be true or false, got " + v.dump());
  else
    out = v.get<bool>();
  return *this;
}

spec_reader& spec_reader::string(const char* key, std::string& out) {
  if (skip(key))
    return *this;
  const json& v = obj_.at(key);
  if (!v.is_string())
    problem(key, "must be a string, got " + v.dump());
  else
    out = v.get<std::string>();
  return *this;
}

spec_reader& spec_reader::choice(const char* key, std::string& out,
                                 const std::vector<std::string>& allowed) {
  if (skip(key))
    return *this;
  const json& v = obj_.at(key);
  if (!v.is_string()
      || std::find(allowed.begin(), allowed.end(), v.get<std::string>()) == allowed.end()) {
    std::string all;
    for (size_t i = 0; i < allowed.size(); ++i)
      all += (i ? ", " : "") + ("\"" + allowed[i] + "\"");
    problem(key, "must be one of " + all + ", got " + v.dump());
    return *this;
  }
  out = v.get<std::string>();
  return *this;
}

spec_reader& spec_reader::strings(const char* key, std::vector<std::string>& out) {
  if (skip(key))
    return *this;
  const json& v = obj_.at(key);
  if (!v.is_array()) {
    problem(key, "must be an array of names, got " + v.dump());
    return *this;
  }
  std::vector<std::string> got;
  std::set<std::string> seen;
  for (const auto& e : v) {
    if (!e.is_string() || e.get<std::string>().empty()) {
      problem(key, "must hold non-empty strings");
      return *this;
    }
    if (!seen.insert(e.get<std::string>()).second) {
      problem(key, "names '" + e.get<std::string>() + "' twice");
      return *this;
    }
    got.push_back(e.get<std::string>());
  }
  out = std::move(got);
  return *this;
}

status spec_reader::done() const {
  if (!error_.empty())
    return fail(errc::bad_request, error_);
  return {};
}

result<const json*> spec_object(const json& spec, const char* key) {
  if (!spec.is_object())
    return fail(errc::bad_request, "the job spec must be a JSON object");
  auto it = spec.find(key);
  if (it == spec.end() || it->is_null())
    return &empty_object();
  if (!it->is_object())
    return fail(errc::bad_request, std::string("'") + key + "' must be an object");
  return &*it;
}

status read_model_choice(const json& spec, std::string& arch, json& options,
                         std::string& pretrained) {
  auto m = spec.find("model");
  if (m == spec.end() || m->is_null())
    return {};
  if (m->is_string()) {
    arch = m->get<std::string>();
    return {};
  }
  if (!m->is_object())
    return fail(errc::bad_request, "model must be an architecture name or an object "
                                   "{\"arch\", \"options\"?, \"pretrained\"?}");
  if (!m->contains("arch") || !(*m)["arch"].is_string())
    return fail(errc::bad_request, "model.arch (string) is required");
  arch = (*m)["arch"].get<std::string>();
  auto o = spec_object(*m, "options");
  if (!o)
    return fail(errc::bad_request, "model.options must be an object");
  options = **o;
  spec_reader r(*m, "model");
  r.string("pretrained", pretrained);
  return r.done();
}

} // namespace rookery::train

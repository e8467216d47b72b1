#include "common/config.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <sstream>
#include <thread>

#include <sched.h>

#include <nlohmann/json.hpp>

extern char** environ;

#ifndef ROOKERY_BUILTIN_MODELS_DIR
#define ROOKERY_BUILTIN_MODELS_DIR ""
#endif

namespace rookery {

using nlohmann::json;

std::string compiled_builtin_models_dir() {
  return ROOKERY_BUILTIN_MODELS_DIR;
}

namespace {

#define ROOKERY_CONFIG_FIELDS(X)                                                             \
  X(role) X(host) X(port) X(data) X(store) X(node_id) X(log_level) X(http_threads) X(scheduler_threads)          \
  X(cluster_host) X(cluster_port) X(seeds) X(shared_data) X(heartbeat_ms) X(connection_timeout_ms)          \
  X(reconnect_ms) X(signup) X(admin_user) X(admin_password) X(session_ttl_s)                 \
  X(password_hash_cost) X(login_slowdown_after) X(login_lockout_after) X(login_window_s)     \
  X(key_rate_per_s) X(key_burst) X(max_body_bytes) X(max_upload_bytes) X(max_image_pixels) X(request_timeout_ms) X(drain_timeout_ms) \
  X(head_timeout_ms) X(min_upload_bytes_per_s) X(upload_timeout_s) X(import_timeout_ms) X(max_connections) \
  X(cores) X(replicas) X(torch_threads) X(decoders) X(max_batch) X(inference) X(pipelines) X(builtin_models)    \
  X(allow_untrained)                                                                         \
  X(mime_table) X(max_running_jobs) X(max_jobs_per_user) X(job_lease_s) X(job_poll_ms) X(auth_revalidate_ms) X(train_threads) X(fashion_mnist_dir) \
  X(fortunes_dir) X(wordnet_dir) X(max_dataset_bytes)

json to_json(const config& c) {
  json j;
#define X(name) j[#name] = c.name;
  ROOKERY_CONFIG_FIELDS(X)
#undef X
  return j;
}

config from_json(const json& j) {
  config c;
#define X(name) j.at(#name).get_to(c.name);
  ROOKERY_CONFIG_FIELDS(X)
#undef X
  return c;
}

std::string lower(std::string s) {
  for (auto& ch : s)
    ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

// Text from an environment variable or a flag, read as the type of `like`.
json parse_as(const json& like, const std::string& text) {
  if (like.is_string())
    return text;
  if (like.is_boolean()) {
    auto t = lower(text);
    if (t == "1" || t == "true" || t == "yes" || t == "on")
      return true;
    if (t == "0" || t == "false" || t == "no" || t == "off")
      return false;
    throw std::invalid_argument("expected a boolean, got '" + text + "'");
  }
  if (like.is_number_unsigned()) {
    if (text.empty() || text[0] == '-')
      throw std::invalid_argument("expected a non-negative integer, got '" + text + "'");
    size_t pos = 0;
    auto v = std::stoull(text, &pos);
    if (pos != text.size())
      throw std::invalid_argument("expected an integer, got '" + text + "'");
    return v;
  }
  if (like.is_number_integer()) {
    size_t pos = 0;
    auto v = std::stoll(text, &pos);
    if (pos != text.size())
      throw std::invalid_argument("expected an integer, got '" + text + "'");
    return v;
  }
  if (like.is_number_float()) {
    size_t pos = 0;
    auto v = std::stod(text, &pos);
    if (pos != text.size())
      throw std::invalid_argument("expected a number, got '" + text + "'");
    return v;
  }
  if (like.is_array()) { // comma-separated list, or a JSON array
    if (!text.empty() && text[0] == '[')
      return json::parse(text);
    json arr = json::array();
    std::stringstream ss(text);
    std::string item;
    while (std::getline(ss, item, ','))
      if (!item.empty())
        arr.push_back(item);
    return arr;
  }
  return json::parse(text); // objects: JSON text
}

status validate(const config& c) {
  auto bad = [](std::string m) { return status{fail(errc::bad_request, std::move(m))}; };
  if (c.role != "all" && c.role != "gateway" && c.role != "worker")
    return bad("role must be all, gateway or worker, not '" + c.role + "'");
  if (c.signup != "open" && c.signup != "admin")
    return bad("signup must be open or admin");
  if (c.password_hash_cost != "interactive" && c.password_hash_cost != "min")
    return bad("password_hash_cost must be interactive or min");
  if (c.role == "gateway" && c.seeds.empty())
    return bad("a gateway needs at least one seed (--seeds host:port)");
  for (auto& s : c.seeds)
    if (s.find(':') == std::string::npos)
      return bad("seed '" + s + "' is not host:port");
  if (c.max_batch == 0 || c.http_threads == 0)
    return bad("max_batch and http_threads must be at least 1");
  if (c.replicas > 256 || c.torch_threads > 1024 || c.decoders > 256 || c.cores > 4096)
    return bad("replicas, decoders (at most 256), torch_threads (1024) or cores (4096) is too large");
  if (c.inference != "optimized" && c.inference != "eager")
    return bad("inference must be optimized or eager, not '" + c.inference + "'");
  if (c.heartbeat_ms == 0 || c.connection_timeout_ms <= c.heartbeat_ms)
    return bad("connection_timeout_ms must be larger than heartbeat_ms (> 0)");
  for (auto& [name, model] : c.pipelines)
    if (name.empty() || model.empty())
      return bad("pipelines maps names to model repository entries; neither may be empty");
  if (c.request_timeout_ms < 100)
    return bad("request_timeout_ms must be at least 100");
  if (c.head_timeout_ms < 100 || c.upload_timeout_s == 0 || c.import_timeout_ms < 100)
    return bad("head_timeout_ms, upload_timeout_s and import_timeout_ms must be positive");
  if (c.max_connections == 0 || c.min_upload_bytes_per_s == 0)
    return bad("max_connections and min_upload_bytes_per_s must be at least 1");
  if (c.job_lease_s < 2 || c.job_poll_ms < 50 || c.job_poll_ms * 2ull > c.job_lease_s * 1000ull)
    return bad("job_lease_s must be at least 2 and job_poll_ms between 50 and half the lease");
  if (!c.store.empty() && c.store.find("://") != std::string::npos
      && c.store.rfind("postgresql://", 0) != 0 && c.store.rfind("postgres://", 0) != 0)
    return bad("store must be empty (SQLite in the data directory) or a postgresql:// URI");
  return {};
}

} // namespace

uint32_t usable_cores() {
  uint32_t n = 0;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0)
    n = static_cast<uint32_t>(CPU_COUNT(&set));
  if (n == 0)
    n = std::max(1u, std::thread::hardware_concurrency());
  // cgroup v2: "max 100000" (no quota) or "<quota> <period>" (a container's CPU limit).
  std::ifstream in("/sys/fs/cgroup/cpu.max");
  std::string quota;
  double period = 0;
  if (in >> quota >> period && quota != "max" && period > 0) {
    try {
      const double q = std::stod(quota);
      if (q > 0)
        n = std::min(n, std::max(1u, static_cast<uint32_t>(std::ceil(q / period))));
    } catch (const std::exception&) {
    }
  }
  return std::max(1u, n);
}

void plan_threads(config& c, uint32_t cores) {
  cores = std::max(1u, cores);
  c.cores = cores;
  // One single-threaded replica per core: measured fastest on the reference
  // 2-core machine under concurrent load (bench/thread_plan.sh; the numbers are
  // in bench/README.md), because OpenMP teams on busy cores wait for each other
  // at every operator, while independent replicas never do. Capped at 8
  // replicas (each holds a copy of the weights); beyond that the cores are
  // shared out as intra-op threads.
  if (c.replicas == 0)
    c.replicas = std::min(cores, 8u);
  if (c.torch_threads == 0)
    c.torch_threads = std::max(1u, cores / c.replicas);
  // Decoding (JPEG/PNG, resize) is single-threaded per actor: one per core.
  if (c.decoders == 0)
    c.decoders = cores;
}

std::map<std::string, std::string> rookery_environment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string kv = *e;
    if (kv.rfind("ROOKERY_", 0) != 0)
      continue;
    auto eq = kv.find('=');
    if (eq != std::string::npos)
      env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return env;
}

result<config> load_config(const std::string& file, const std::map<std::string, std::string>& env,
                           const std::map<std::string, std::string>& overrides) {
  json merged = to_json(config{});
  const json defaults = merged;
  try {
    if (!file.empty()) {
      std::ifstream in(file);
      if (!in)
        return fail(errc::bad_request, "cannot read config file '" + file + "'");
      json j;
      try {
        j = json::parse(in);
      } catch (const json::exception& e) {
        return fail(errc::bad_request, "config file '" + file + "' is not valid JSON: " + e.what());
      }
      if (!j.is_object())
        return fail(errc::bad_request, "config file '" + file + "' must hold a JSON object");
      for (auto& [k, v] : j.items()) {
        if (!defaults.contains(k))
          return fail(errc::bad_request, "config file: unknown setting '" + k + "'");
        merged[k] = v;
      }
    }
    for (auto& [name, value] : env) {
      if (name.rfind("ROOKERY_", 0) != 0)
        continue;
      auto key = lower(name.substr(8));
      if (!defaults.contains(key))
        continue; // ROOKERY_* variables of other tools are not ours to reject
      try {
        merged[key] = parse_as(defaults[key], value);
      } catch (const std::exception& e) {
        return fail(errc::bad_request, name + ": " + e.what());
      }
    }
    for (auto& [key, value] : overrides) {
      if (!defaults.contains(key))
        return fail(errc::bad_request, "unknown setting '" + key + "'");
      try {
        merged[key] = parse_as(defaults[key], value);
      } catch (const std::exception& e) {
        return fail(errc::bad_request, "--" + key + ": " + e.what());
      }
    }
    config c = from_json(merged);
    if (auto st = validate(c); !st)
      return st.error();
    plan_threads(c, c.cores != 0 ? c.cores : usable_cores());
    return c;
  } catch (const json::exception& e) {
    return fail(errc::bad_request, std::string{"configuration has a value of the wrong type: "}
                                     + e.what());
  }
}

std::string to_json_text(const config& cfg) {
  auto j = to_json(cfg);
  if (!cfg.admin_password.empty())
    j["admin_password"] = "********";
  // A store URI may carry a password: scheme://user:PASSWORD@host/...
  if (auto at = cfg.store.find('@'), scheme = cfg.store.find("://");
      at != std::string::npos && scheme != std::string::npos && scheme < at) {
    auto colon = cfg.store.find(':', scheme + 3);
    if (colon != std::string::npos && colon < at)
      j["store"] = cfg.store.substr(0, colon + 1) + "********" + cfg.store.substr(at);
  }
  if (auto pw = cfg.store.find("password="); pw != std::string::npos)
    j["store"] = cfg.store.substr(0, pw + 9) + "********";
  return j.dump(2);
}

} // namespace rookery

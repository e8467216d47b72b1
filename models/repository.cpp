#include "models/repository.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "models/repository_detail.hpp"

namespace fs = std::filesystem;

namespace rookery {

namespace detail {

result<installed_model> read_version(const fs::path& dir, const std::string& name,
                                     uint32_t version) {
  try {
    std::ifstream in(dir / "config.json");
    std::stringstream ss;
    ss << in.rdbuf();
    auto j = nlohmann::json::parse(ss.str());
    installed_model m;
    m.name = name;
    m.version = version;
    m.dir = fs::absolute(dir).string();
    m.arch = j.value("arch", "");
    m.format = j.value("format", "state_dict");
    m.weights = (fs::absolute(dir) / j.value("weights", "model.pth")).string();
    m.dim = j.value("dim", 0u);
    if (j.contains("options") && j["options"].is_object())
      m.options_json = j["options"].dump();
    if (j.contains("preprocess") && j["preprocess"].is_object())
      m.preprocess_json = j["preprocess"].dump();
    m.output = j.value("output", "");
    if (!m.output.empty() && m.output != "softmax")
      return fail(errc::unprocessable, (dir / "config.json").string()
                                         + ": \"output\" must be \"softmax\" when set");
    m.provenance = j.value("provenance", "");
    if (j.contains("optimize") && !j["optimize"].is_boolean())
      return fail(errc::unprocessable, (dir / "config.json").string()
                                         + ": \"optimize\" must be true or false");
    m.optimize = j.value("optimize", true);
    m.config_json = ss.str();
    return m;
  } catch (const std::exception& e) {
    return fail(errc::unprocessable, (dir / "config.json").string() + " is not valid: " + e.what());
  }
}

} // namespace detail

namespace {

std::string& builtin_dir_setting() {
  static std::string dir = default_builtin_models_dir();
  return dir;
}

} // namespace

namespace detail {

result<installed_model> find_in(const fs::path& root_dir, const std::string& name) {
  fs::path root = root_dir / name;
  std::error_code ec;
  if (!fs::is_directory(root, ec))
    return fail(errc::not_found, "no model '" + name + "' under " + root.string());
  uint32_t best = 0;
  for (auto& entry : fs::directory_iterator(root, ec)) {
    auto v = entry.path().filename().string();
    if (v.empty() || v.size() > 9 || v.find_first_not_of("0123456789") != std::string::npos)
      continue;
    auto version = static_cast<uint32_t>(std::stoul(v));
    if (version > best && fs::exists(entry.path() / "config.json"))
      best = version;
  }
  if (best == 0)
    return fail(errc::not_found, "no installed version of model '" + name + "' under "
                                   + root.string());
  return read_version(root / std::to_string(best), name, best);
}

void list_in(const fs::path& root, std::vector<installed_model>& out) {
  std::error_code ec;
  if (!fs::is_directory(root, ec))
    return;
  for (auto& entry : fs::directory_iterator(root, ec)) {
    if (!entry.is_directory())
      continue;
    auto name = entry.path().filename().string();
    if (!valid_model_name(name))
      continue;
    bool shadowed = false;
    for (auto& m : out)
      shadowed = shadowed || m.name == name;
    if (!shadowed)
      if (auto m = find_in(root, name))
        out.push_back(std::move(m.value()));
  }
}

} // namespace detail

using detail::find_in;
using detail::list_in;

#ifndef ROOKERY_BUILTIN_MODELS_DIR
#define ROOKERY_BUILTIN_MODELS_DIR ""
#endif

std::string default_builtin_models_dir() {
  return ROOKERY_BUILTIN_MODELS_DIR;
}

void set_builtin_models_dir(std::string dir) {
  builtin_dir_setting() = std::move(dir);
}

const std::string& builtin_models_dir() {
  return builtin_dir_setting();
}

bool valid_model_name(const std::string& name) {
  if (name.empty() || name.size() > 64 || name[0] == '.')
    return false;
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.')
      return false;
  return true;
}

result<installed_model> find_installed_model(const std::string& data_dir,
                                             const std::string& name) {
  if (!valid_model_name(name))
    return fail(errc::not_found, "no model '" + name + "'");
  auto own = find_in(fs::path(data_dir) / "models", name);
  if (own || own.error().code != errc::not_found || builtin_models_dir().empty())
    return own;
  auto builtin = find_in(fs::path(builtin_models_dir()), name);
  if (!builtin)
    return builtin.error().code == errc::not_found ? own : builtin;
  builtin->builtin = true;
  return builtin;
}

std::vector<installed_model> list_installed_models(const std::string& data_dir) {
  std::vector<installed_model> out;
  list_in(fs::path(data_dir) / "models", out);
  const auto own = out.size();
  if (!builtin_models_dir().empty())
    list_in(fs::path(builtin_models_dir()), out);
  for (size_t i = own; i < out.size(); ++i)
    out[i].builtin = true;
  std::sort(out.begin(), out.end(),
            [](const installed_model& a, const installed_model& b) { return a.name < b.name; });
  return out;
}

status remove_model(const std::string& data_dir, const std::string& name) {
  if (!valid_model_name(name))
    return fail(errc::not_found, "no model '" + name + "'");
  auto root = fs::path(data_dir) / "models" / name;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    if (auto b = find_installed_model(data_dir, name); b && b->builtin)
      return fail(errc::forbidden, "model '" + name + "' is built in (" + b->dir
                                     + ") and cannot be removed");
    return fail(errc::not_found, "no model '" + name + "'");
  }
  fs::remove_all(root, ec);
  if (ec)
    return fail(errc::internal, "cannot remove " + root.string() + ": " + ec.message());
  return {};
}

} // namespace rookery

// The model repository on disk, Triton-style:
//   <data>/models/<name>/<version>/{config.json, model.pth | model.ts}
// config.json: {"arch", "format", "weights", "dim", "options", "preprocess"} and
// optionally "output" ("softmax": forward() gives probabilities), "classes" and
// "provenance" (where the weights come from, e.g. "nsfwjs@4.4.0 inception_v3").
//
// Built-in models: a second, read-only directory of the same layout without the
// models/ level (<builtin>/<name>/<version>/), by default the one
// scripts/setup.sh fills (ROOKERY_BUILTIN_MODELS_DIR at CMake time; the
// `builtin_models` setting). Every look-up sees them whatever the data
// directory; a data directory's own model of the same name wins. They are
// never written: import_model() versions only the data directory's copy and
// remove_model() refuses them.
//
// Torch-free header; the import validates weights by loading them (models/embedding_model).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace rookery {

struct installed_model {
  std::string name;
  uint32_t version = 0;
  std::string dir;
  std::string arch;
  std::string format;       // state_dict | torchscript
  std::string weights;      // absolute path of the weights file
  std::string config_json;  // the whole config.json
  uint32_t dim = 0;         // embedding dimension, when known
  std::string options_json;    // zoo::model_options the weights were made with ("" = defaults)
  std::string preprocess_json; // image preprocessing for pipelines ("" = ImageNet's)
  std::string output;          // "" (raw outputs) | "softmax" (config.json "output")
  std::string provenance;      // where the weights come from ("" = not recorded)
  bool builtin = false;        // from the built-in directory (read-only)
  bool optimize = true;        // config.json "optimize" (false: serve the eager module)
};

/// The built-in model directory every look-up also searches ("" = none).
/// PROCESS-GLOBAL; defaults to the directory compiled in (see default_builtin_models_dir()).
void set_builtin_models_dir(std::string dir);
const std::string& builtin_models_dir();
/// ROOKERY_BUILTIN_MODELS_DIR as CMake configured it (where scripts/setup.sh installs).
std::string default_builtin_models_dir();

/// The newest installed version of `name`: the data directory's, else the
/// built-in one (not_found when neither has it).
result<installed_model> find_installed_model(const std::string& data_dir, const std::string& name);

/// Newest version of every installed model, by name (built-ins included).
std::vector<installed_model> list_installed_models(const std::string& data_dir);

struct import_request {
  std::string name;    // repository name: letters, digits, '_', '-', '.'
  std::string arch;    // zoo architecture or "torchscript"
  std::string format;  // state_dict | torchscript; empty: from arch
  std::string weights; // file to import (copied)
  std::string options_json;    // zoo::model_options as a JSON object (e.g. a 10-class,
                               // 1-channel fine-tune); "" = torchvision's defaults
  std::string preprocess_json; // {"resize","crop","channels","mean","std"}; "" = ImageNet's
  uint64_t owner_id = 0;       // 0: an operator
};

/// Checks the name, loads the weights (every name and shape checked), and
/// installs them as the next version. Errors: bad_request (name, arch),
/// unprocessable (weights that do not load, with the key report), internal (I/O).
result<installed_model> import_model(const std::string& data_dir, const import_request& req);

/// Removes every version of `name` from the data directory (not_found when
/// none; forbidden for a built-in model, which is read-only).
status remove_model(const std::string& data_dir, const std::string& name);

/// Repository names: 1-64 of letters, digits, '_', '-', '.', not starting with '.'.
bool valid_model_name(const std::string& name);

} // namespace rookery

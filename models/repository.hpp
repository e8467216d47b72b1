// The model repository on disk, Triton-style:
//   <data>/models/<name>/<version>/{config.json, model.pth | model.ts}
// config.json: {"arch", "format", "weights", "dim", "options", "preprocess"}. Torch-free
// header; the import validates weights by loading them (models/embedding_model).
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
};

/// The newest installed version of `name` (not_found when none).
result<installed_model> find_installed_model(const std::string& data_dir, const std::string& name);

/// Newest version of every installed model, by name.
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

/// Removes every version of `name` (not_found when none).
status remove_model(const std::string& data_dir, const std::string& name);

/// Repository names: 1-64 of letters, digits, '_', '-', '.', not starting with '.'.
bool valid_model_name(const std::string& name);

} // namespace rookery

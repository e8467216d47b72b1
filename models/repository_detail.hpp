// What repository.cpp (the read side) and repository_import.cpp share.
// Internal to models/.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "models/repository.hpp"

namespace rookery::detail {

/// One installed version: <dir>/config.json read into an installed_model.
result<installed_model> read_version(const std::filesystem::path& dir, const std::string& name,
                                     uint32_t version);
/// The newest version of `name` under a models directory (<root>/<name>/<version>).
result<installed_model> find_in(const std::filesystem::path& root_dir, const std::string& name);
/// Every model's newest version under a models directory.
void list_in(const std::filesystem::path& root, std::vector<installed_model>& out);

} // namespace rookery::detail

// A job's directory, <jobs>/<id>/, as plain functions: the embedding job's
// input, a training run's metric history, and its artifacts as clients see
// them. The job manager (actors/job_manager.cpp) and the trainer hosts use
// them; they touch nothing but the directory they are given.
#pragma once
#include <cstddef>
#include <string>

#include "common/result.hpp"

namespace rookery::jobs {

/// <jobs_dir>/<id>.
std::string dir_of(const std::string& jobs_dir, const std::string& id);

/// Where an embedding job's input bytes wait: <jobs_dir>/<id>/input.bin.
std::string input_path(const std::string& jobs_dir, const std::string& id);

/// Writes `bytes` to `path` (parents created) through a temporary file and a
/// rename, so a crash never leaves half a file.
status write_atomically(const std::string& path, const std::string& bytes);

/// Reads a whole file; not_found when it cannot be read.
result<std::string> read_all(const std::string& path);

/// The metric history of a training run (<dir>/metrics.jsonl) as a JSON
/// array: the last `max_points` well-formed lines, malformed ones skipped.
std::string read_history(const std::string& dir, std::size_t max_points = 5000);

/// The content type an artifact is served with, from its extension.
const char* content_type_of(const std::string& path);

/// The listing of a job's artifacts, {"job", "artifacts": [{path, bytes,
/// content_type, href}]} sorted by path, as JSON text. Temporary files and
/// the job's input are not artifacts.
std::string list_artifacts(const std::string& dir, const std::string& id);

/// The file behind artifact `rel` of the job in `dir`: only regular files
/// inside the directory (no "..", no absolute path, no link out, not the
/// input); not_found otherwise.
result<std::string> artifact_file(const std::string& dir, const std::string& id,
                                  const std::string& rel);

} // namespace rookery::jobs

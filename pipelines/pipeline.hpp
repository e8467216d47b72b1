// Pipelines as configuration: a pipeline is a JSON chain of named operators,
//   [{"op": "decode_image"}, {"op": "resize", "size": 342}, ...,
//    {"op": "model", "name": "inception_v3"}, {"op": "l2_normalize"}]
// compiled once into typed operators (a 400 names the bad op or field). The
// `model` operator splits it into three stages: the operators before it run
// in the pipeline's preprocessing actors, the model in the model's shared
// replica pool, and the operators after it back in the preprocessing actor.
// Torch-, OpenCV- and CAF-free: actors include it.
#pragma once
#include <cstdint>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace rookery {

struct pipeline_limits {
  int64_t max_pixels = 40'000'000;
  int64_t max_frames = 256;
  double max_video_s = 3600;
  std::string temp_dir = "/tmp";
  int torch_threads = 0; // for operators that run networks of their own (faces)
};

/// What serves a pipeline whose operator runs networks of its own instead of
/// a repository model (faces: face-api's three networks).
struct own_model_info {
  std::string name;    // shown as the pipeline's "model"
  uint32_t dim = 0;    // of each vector it answers
  bool ready = false;  // its weights are installed
  std::string weights; // provenance, e.g. "@vladmandic/face-api@1.7.15"
  std::string status;  // what serves it, or why it cannot
};

/// A pipeline's definition, as stored and shown.
struct pipeline_def {
  std::string name;
  std::string ops_json;                // the operator array as given
  std::vector<std::string> mime_types; // uploads this pipeline takes by default
  bool builtin = false;                // shipped in pipelines/builtin/
};

class compiled_pipeline {
public:
  /// Compiles `def`; bad_request naming the position, op and field.
  static result<std::shared_ptr<const compiled_pipeline>> compile(const pipeline_def& def,
                                                                  const pipeline_limits& lim);
  ~compiled_pipeline();

  const pipeline_def& def() const;
  /// The model the chain names ("" for a chain without one).
  const std::string& model() const;
  /// A chain without a model op embeds with an operator's own networks
  /// (faces): what serves it. Null for a chain with a model op.
  const own_model_info* own_model() const;
  /// The operators with every parameter filled in, as a JSON array.
  std::string describe_json() const;

  /// A value in flight between the stages.
  struct state;
  struct tensors {
    int64_t c = 0, h = 0, w = 0;
    std::vector<std::vector<float>> data; // one CHW tensor per picture/frame
  };
  /// Stage 1: bytes -> what the model takes (runs the operators before it).
  result<std::shared_ptr<state>> before_model(std::string bytes, std::string mime) const;
  /// The model's inputs (moved out of `s`).
  tensors take_inputs(state& s) const;
  /// Stage 3: the model's outputs -> the answer's embedding and its extra
  /// fields (JSON object text: segments, frames, ...).
  struct answer {
    std::vector<float> embedding;
    std::string extra_json;
  };
  result<answer> after_model(state& s, std::vector<std::vector<float>> features) const;
  /// The whole chain of a pipeline without a model op (own_model() set):
  /// bytes -> the answer. Its fields are all in extra_json when it answers
  /// no single vector (faces: {"faces": [...]}, embedding empty).
  result<answer> run_inline(std::string bytes, std::string mime) const;

private:
  struct impl;
  explicit compiled_pipeline(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

/// Built-in pipeline definitions (pipelines/builtin/*.json, compiled into the
/// binary).
std::vector<pipeline_def> builtin_pipelines();

/// A pipeline definition from its JSON text {"name", "ops", "mime_types"?}
/// (POST /v1/pipelines, files in <data>/pipelines/); checks the shape only,
/// compile() checks the operators.
result<pipeline_def> parse_pipeline_def(const std::string& json_text);
std::string to_json_text(const pipeline_def& d);

/// The chain of an image pipeline for a repository model trained or imported
/// with preprocessing `preprocess_json` (a model's config.json "preprocess").
result<std::string> image_ops_for_model(const std::string& model, const std::string& preprocess_json);

/// <data>/pipelines: where pipelines added at run time are stored.
std::string stored_pipelines_dir(const std::string& data_dir);

/// Every pipeline definition a node serves, by name: the built-ins, then
/// `extra` (name -> repository model: image pipelines preprocessed as the
/// model's config says; the configuration's `pipelines`), then those stored
/// under <data>/pipelines. Later ones replace earlier ones of the same name;
/// a stored file that does not parse is logged and skipped.
std::map<std::string, pipeline_def> node_pipeline_defs(const std::string& data_dir,
                                                       const std::map<std::string, std::string>& extra);

/// The models the built-in pipelines name (an untrained stand-in may serve
/// them before setup has installed them).
std::set<std::string> builtin_pipeline_models();

/// Operator names, for errors and the docs.
std::vector<std::string> pipeline_op_names();

} // namespace rookery

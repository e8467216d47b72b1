// What flows between pipeline operators, and the operator interface.
// Internal to pipelines/ (it includes OpenCV's core header); actors and HTTP
// code use pipelines/pipeline.hpp.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>

#include "common/result.hpp"
#include "pipelines/pipeline.hpp"

namespace rookery::pipe {

/// The kinds of value an operator takes and gives; a chain is type-checked
/// once, when its spec is compiled.
enum class kind { bytes, image, tensor, embedding, faces, series, text };
const char* to_string(kind k);

/// A decoded picture whose geometry is applied lazily: `resize` sets the
/// size the picture is resampled to and `center_crop` the window of that
/// result that is kept. Pixels are computed when a later operator needs
/// them (to_tensor), and then only inside the window, so resize + crop
/// costs what the crop costs and gives exactly the full resize's pixels.
struct image {
  cv::Mat src;              // 8UC3, BGR (OpenCV's order), continuous
  int64_t rw = 0, rh = 0;   // size after the pending resize (src size: none)
  std::string filter;       // the pending resize's filter ("" when none)
  bool align_corners = false; // tf_bilinear only
  int64_t left = 0, top = 0; // the window in the resized picture: may start
  int64_t cw = 0, ch = 0;    //   before it or end past it (zero padding)
  int64_t max_pixels = 0;    // what materialise() may allocate (0: no limit)

  static image of(cv::Mat m);
  bool pending() const;
  /// The window, resampled: 8UC3 BGR, ch x cw.
  result<cv::Mat> materialise() const;
};

/// One value in flight: the upload, then what the operators made of it.
/// `images` holds one picture for a photo and the sampled frames of a video
/// (with their times); operators on images and tensors apply to each.
struct item {
  kind k = kind::bytes;
  std::string bytes;
  std::string mime;
  std::vector<image> images;
  std::vector<double> times_s; // frame times (video); empty for a photo
  double duration_s = 0;       // video: the clip's length
  int64_t c = 0, h = 0, w = 0; // tensor shape (CHW), the same for every image
  std::vector<std::vector<float>> tensors;
  std::vector<std::vector<float>> embeddings;
  std::vector<std::vector<double>> series; // a time series: channels x length
  std::string text;                        // a text (UTF-8)
  nlohmann::json extra = nlohmann::json::object(); // answer fields beyond the embedding
};

/// Limits every operator honours, from the node's configuration.
struct limits {
  int64_t max_pixels = 40'000'000;  // per decoded picture
  int64_t max_frames = 256;         // per video, whatever an op asks for
  double max_video_s = 3600;        // longest clip accepted
  std::string temp_dir = "/tmp";    // where video bytes are spooled for the demuxer
  int torch_threads = 0;            // intra-op threads of networks an op runs itself (0: as set)
  int64_t max_series_points = 1'000'000; // per uploaded series, all channels
};


class op {
public:
  virtual ~op() = default;
  virtual kind input() const = 0;
  virtual kind output() const = 0;
  /// Transforms `x` in place. Errors are the client's (bad_request,
  /// unsupported_media, payload_too_large) or internal.
  virtual status run(item& x) const = 0;
  /// {"op": name, every parameter with its value}: GET /v1/pipelines/{name}.
  virtual nlohmann::json describe() const = 0;
  /// Non-null for an operator that embeds with networks of its own: the
  /// chain then runs whole in the pipeline's stage actors, without a model op.
  virtual const own_model_info* runs_own_model() const { return nullptr; }
};

/// Builds one operator from its JSON object ({"op": name, params...});
/// bad_request naming the operator and the field otherwise.
using op_factory = result<std::unique_ptr<op>> (*)(const nlohmann::json& spec, const limits& lim);

/// The registry of operators by name (pipelines/pipeline.cpp lists them).
op_factory find_op(const std::string& name);
std::vector<std::string> op_names();

// Helpers for the factories: read optional parameters with clear errors.
struct params {
  const nlohmann::json& j;
  std::string op;
  /// Every key of `j` must be "op" or one of `known`.
  status only(std::initializer_list<const char*> known) const;
  status integer(const char* key, int64_t& out, int64_t lo, int64_t hi) const;
  status number(const char* key, double& out, double lo, double hi) const;
  status text(const char* key, std::string& out, std::initializer_list<const char*> allowed) const;
  status floats(const char* key, std::vector<float>& out, size_t min_n, size_t max_n) const;
  failure bad(const std::string& what) const;
};

} // namespace rookery::pipe

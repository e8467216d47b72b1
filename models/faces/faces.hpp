// Faces: face-api's (@vladmandic/face-api, MIT) detector -> 68 landmarks ->
// face crop -> 128-d descriptor, reimplemented in LibTorch on face-api's own
// weights (converted by scripts/faces/convert.js), step for step as face-api
// computes them on a tf.Tensor3D input, so results match face-api in Node.
//
// Each step is a plain function of the image and the previous step's output
// (detect -> landmarks -> descriptor_rect -> descriptor), so a pipeline of
// operators can wrap them one by one; analyse() chains them like face-api's
// detectAllFaces(img).withFaceLandmarks().withFaceDescriptors().
//
// Torch-free header: actor code includes it.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace rookery::faces {

/// 8-bit RGB, row-major HWC.
struct rgb_image {
  int64_t width = 0, height = 0;
  std::vector<uint8_t> pixels; // width * height * 3
};

/// A rectangle in pixels of the image (face-api's Box: x, y, width, height).
struct rect {
  double x = 0, y = 0, width = 0, height = 0;
};

using point = std::array<double, 2>;

struct detection {
  rect box;
  double score = 0;
};

struct face {
  rect box;                    // the detector's box
  double score = 0;            // the detector's score
  std::vector<point> landmarks; // 68 points (iBUG 300-W order), image pixels
  std::vector<float> descriptor; // 128 floats, as face-api returns them (not re-normalised)
};

struct detector_options {
  double min_confidence = 0.5; // face-api's SsdMobilenetv1Options defaults
  int max_results = 100;
};

/// Where scripts/setup.sh puts the converted weights (<repo>/build/
/// builtin-models/faces): $ROOKERY_FACES_MODELS if set; else
/// <directory of the running executable>/builtin-models/faces (the binaries
/// live in build/), or <exe dir>/../build/builtin-models/faces when only that
/// one exists. Independent of --data.
std::string builtin_models_dir();

/// What meta.json says about the converted weights.
struct weights_info {
  std::string dir;
  std::string package; // "@vladmandic/face-api"
  std::string version; // e.g. "1.7.15"
  std::string license; // "MIT"
  std::string label() const { return package + "@" + version; }
};

/// The three networks (SSD MobileNetV1, 68-point landmarks, face recognition
/// ResNet). Not thread-safe: one caller at a time; distinct instances may run
/// concurrently.
class face_models {
public:
  /// Loads <dir>/{meta.json, ssd_mobilenetv1_model.rktw,
  /// face_landmark_68_model.rktw, face_recognition_model.rktw}.
  /// threads > 0: at::set_num_threads (process-global; re-applied per call).
  /// Errors: not_found (a missing file), unprocessable (bad file, missing or
  /// mis-shaped tensor).
  static result<std::unique_ptr<face_models>> load(const std::string& dir, int threads = 0);

  /// SSD MobileNetV1 on the image padded (bottom/right, zeros) to a square
  /// and resized to 512x512 (TF's bilinear, no half-pixel centres), scaled to
  /// [-1, 1]; box decoding and face-api's own NMS (IoU 0.5). Boxes in pixels,
  /// best first.
  result<std::vector<detection>> detect(const rgb_image& img, const detector_options& opt = {});

  /// 68 landmarks of each detection, image pixels: the detection box clipped
  /// to the image and floored is cropped, padded to a square (centred),
  /// resized to 112x112 and run through the landmark net; points are shifted
  /// by the (unfloored) box origin, as face-api does.
  result<std::vector<std::vector<point>>> landmarks(const rgb_image& img,
                                                    const std::vector<detection>& dets);

  /// 128-d descriptors: each rect is clipped to the image, floored, cropped,
  /// padded to a square (centred), resized to 150x150 and run through the
  /// recognition ResNet. An empty rect gives 128 zeros (as face-api).
  result<std::vector<std::vector<float>>> descriptors(const rgb_image& img,
                                                      const std::vector<rect>& rects);

  /// The whole chain; no face -> an empty vector.
  result<std::vector<face>> analyse(const rgb_image& img, const detector_options& opt = {});

  const weights_info& info() const;

  ~face_models();
  face_models(const face_models&) = delete;
  face_models& operator=(const face_models&) = delete;

private:
  struct impl;
  explicit face_models(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

/// The square face-api crops for the descriptor (FaceLandmarks.align with
/// useDlibAlignment): side floor(mean eye-to-mouth distance / 0.45), placed so
/// the centre of the eye and mouth centres sits at (0.5, 0.43) of it; no
/// rotation. crop_w/crop_h: size of the detection crop the landmarks came
/// from (face-api caps the side with them).
rect descriptor_rect(const std::vector<point>& landmarks68, double crop_w, double crop_h);

/// face-api's Box.clipAtImageBorders(w, h): clip, then floor x, y, width, height.
rect clip_at_image_borders(const rect& r, int64_t width, int64_t height);

/// Intersection over union of two rects (for tests and clients).
double iou(const rect& a, const rect& b);

} // namespace rookery::faces

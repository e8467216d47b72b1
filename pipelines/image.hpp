// Image bytes -> normalised CHW float tensor, matching torchvision's ImageNet
// eval transform  Resize(resize) -> CenterCrop(crop) -> ToTensor -> Normalize,
// or (resize_mode tf_bilinear) TF.js's tf.image.resizeBilinear as nsfwjs uses it.
// Torch-free and OpenCV-free header: actor code includes it.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace rookery {

/// How the decoded image is resized.
enum class resize_mode {
  shorter_side, // torchvision: Resize(resize) of the shorter side (PIL's antialiased
                // bilinear filter), then CenterCrop(crop)
  tf_bilinear,  // TF.js: the whole image stretched to resize x resize by
                // tf.image.resizeBilinear (no antialiasing, no crop; align_corners as set,
                // half_pixel_centers false) on the values scaled to [0, 1], as nsfwjs does
};

struct image_options {
  int resize = 256;  // shorter side after resizing (tf_bilinear: the output side); <= 0: no resize
  int crop = 224;    // centre crop (square); <= 0: no crop
  std::array<float, 3> mean{0.485f, 0.456f, 0.406f};
  std::array<float, 3> std{0.229f, 0.224f, 0.225f};
  int64_t max_pixels = 40'000'000; // width * height limit, checked before decoding; <= 0: none
  int channels = 3; // 3: RGB; 1: greyscale (PIL's convert("L"); mean[0]/std[0] apply)
  resize_mode mode = resize_mode::shorter_side;
  bool align_corners = false; // tf_bilinear: tf.image.resizeBilinear's alignCorners

  /// Side of the square tensor preprocess_image() gives (224 when that depends
  /// on the image: shorter_side without a crop).
  int64_t input_side() const;
};

/// image_options from a model's "preprocess" JSON object text (model
/// repository config.json): {"resize", "crop", "channels", "mean", "std",
/// "resize_mode": "shorter_side" | "tf_bilinear", "align_corners"}; absent keys
/// keep ImageNet's defaults. tf_bilinear needs resize > 0, 3 channels and no
/// crop (0); mean 0 / std 1 then give nsfwjs's RGB / 255. bad_request on wrong
/// types/values.
result<image_options> parse_image_options(const std::string& json_text);

/// CHW, RGB (or one grey channel), normalised.
struct image_tensor {
  std::vector<float> data;
  int64_t c = 3, h = 0, w = 0;
};

struct image_size {
  int64_t width = 0, height = 0;
};

/// Reads width/height from the header bytes without decoding, for PNG, JPEG
/// (SOFn markers), GIF, BMP, WebP (VP8/VP8L/VP8X) and TIFF (first IFD);
/// nullopt when the format is unknown/unsupported or the header is truncated.
std::optional<image_size> peek_image_size(const std::string& bytes);

/// Decodes JPEG, PNG, BMP, WebP or TIFF (cv::imdecode IMREAD_COLOR, so EXIF
/// orientation is applied and alpha is dropped, as PIL's convert("RGB") does),
/// resizes the shorter side to `resize` with PIL's antialiased bilinear filter
/// reimplemented exactly (torchvision.transforms.Resize on a PIL image; longer
/// side int(resize * long / short)), centre-crops `crop` x `crop` with
/// torchvision's rounding (top = round_half_even((h - crop) / 2), zero padding
/// when the image is smaller), scales to [0,1] and normalises with mean/std.
/// Only the cropped window is resampled, so cost does not depend on the
/// aspect ratio. With resize_mode tf_bilinear: the whole image is stretched to
/// resize x resize as TF.js's CPU kernel does it (values v / 255 in float32,
/// interpolated in double, stored as float32), then normalised with mean/std.
/// Single-threaded; see init_image_pipeline().
///
/// Errors: empty input -> bad_request "empty body"; header says more than
/// max_pixels -> payload_too_large (before decoding, so decompression bombs
/// are never decoded; re-checked after decoding); truncated JPEG (no EOI) or
/// PNG (no IEND), corrupt data, unrecognised format -> bad_request "could not
/// decode image: ..."; GIF (recognised, but OpenCV 4.6 cannot decode it) ->
/// unsupported_media.
result<image_tensor> preprocess_image(const std::string& bytes, const image_options& opt);

/// 8-bit RGB pixels, row-major HWC, as decoded.
struct rgb8_image {
  int64_t width = 0, height = 0;
  std::vector<uint8_t> pixels; // width * height * 3
};

/// Decodes like decode_image (the same formats, checks, limits and errors)
/// without resizing: the pixels in RGB order (the faces tests' input).
result<rgb8_image> decode_rgb(const std::string& bytes, int64_t max_pixels);

/// Sets OpenCV's own thread pool to one thread (cv::setNumThreads(1)):
/// decoders run in parallel actors already, and OpenCV's threads would only
/// oversubscribe the cores. PROCESS-GLOBAL. preprocess_image() calls it once
/// itself (std::call_once); calling it earlier at start-up is harmless.
void init_image_pipeline();

} // namespace rookery

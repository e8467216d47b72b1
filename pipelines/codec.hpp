// Still-image decoding and PIL-exact resampling, shared by the operators
// (internal to pipelines/; implemented in pipelines/image.cpp).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "common/result.hpp"

namespace rookery::pipe {

/// JPEG, PNG, BMP, WebP or TIFF -> 8UC3 BGR, with the header checks of
/// preprocess_image (pixel limit before decoding, truncation, format).
result<cv::Mat> decode_still(const std::string& bytes, int64_t max_pixels);

/// w x h over `limit` pixels (limit <= 0: no limit), overflow-safe.
bool too_many_pixels(int64_t w, int64_t h, int64_t limit);

/// Pillow's antialiased bilinear resize of `img` to rw x rh, computed only
/// for the window [x0, x0+cw) x [y0, y0+ch): 3 bytes a pixel, BGR.
std::vector<uint8_t> pil_resize_window(const cv::Mat& img, int64_t rw, int64_t rh, int64_t x0,
                                       int64_t cw, int64_t y0, int64_t ch);

/// TF.js's tf.image.resizeBilinear (tfjs-backend-cpu, half_pixel_centers off)
/// of the whole picture scaled to [0, 1]: CHW RGB floats, out_h x out_w. The
/// kernel reads float32 values, interpolates in double and stores float32;
/// so does this (nsfwjs's preprocessing).
std::vector<float> tf_bilinear_tensor(const cv::Mat& img, int64_t out_w, int64_t out_h, bool align_corners);

/// torchvision's CenterCrop offset (round half to even; negative: padding).
int64_t center_offset(int64_t size, int64_t crop);

} // namespace rookery::pipe

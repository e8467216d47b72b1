// Pictures a run leaves as artifacts: image grids (GAN samples, autoencoder
// reconstructions) and metric curves, drawn with OpenCV.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

#include "trainers/trainer.hpp"

namespace rookery::train {

bool save_image_grid(const torch::Tensor& images, const std::string& path, int64_t cols) {
  if (!images.defined() || images.dim() != 4 || images.size(0) == 0)
    return false;
  auto x = images.detach().to(torch::kCPU, torch::kFloat32).clamp(0, 1);
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  if (c != 1 && c != 3)
    return false;
  cols = std::max<int64_t>(1, std::min(cols, n));
  const int64_t rows = (n + cols - 1) / cols, gap = 2;
  // HWC uint8 per image, pasted into a grey canvas.
  auto u8 = x.mul(255).round().to(torch::kUInt8).permute({0, 2, 3, 1}).contiguous();
  cv::Mat canvas(static_cast<int>(rows * (h + gap) + gap), static_cast<int>(cols * (w + gap) + gap),
                 c == 1 ? CV_8UC1 : CV_8UC3, cv::Scalar::all(128));
  for (int64_t i = 0; i < n; ++i) {
    cv::Mat tile(static_cast<int>(h), static_cast<int>(w), c == 1 ? CV_8UC1 : CV_8UC3,
                 u8[i].data_ptr<uint8_t>());
    cv::Mat bgr;
    if (c == 3)
      cv::cvtColor(tile, bgr, cv::COLOR_RGB2BGR);
    else
      bgr = tile;
    auto r = i / cols, k = i % cols;
    bgr.copyTo(canvas(cv::Rect(static_cast<int>(gap + k * (w + gap)),
                               static_cast<int>(gap + r * (h + gap)), static_cast<int>(w),
                               static_cast<int>(h))));
  }
  // Small images are hard to see: scale up so the grid is at least ~400 px wide.
  int scale = std::max(1, static_cast<int>(400 / std::max<int64_t>(1, canvas.cols)));
  if (scale > 1)
    cv::resize(canvas, canvas, cv::Size(), scale, scale, cv::INTER_NEAREST);
  try {
    return cv::imwrite(path, canvas);
  } catch (const cv::Exception&) {
    return false;
  }
}

namespace {

std::string fmt_num(double v) {
  char buf[32];
  if (v != 0 && (std::fabs(v) >= 1e4 || std::fabs(v) < 1e-2))
    std::snprintf(buf, sizeof buf, "%.1e", v);
  else
    std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

} // namespace

bool save_curves(const std::map<std::string, std::vector<std::pair<double, double>>>& series,
                 const std::string& path, const std::string& title) {
  const int W = 900, H = 520, left = 80, right = 200, top = 40, bottom = 50;
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  for (auto& [name, pts] : series)
    for (auto& [x, y] : pts) {
      if (!std::isfinite(y))
        continue;
      x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
    }
  if (x0 > x1)
    return false;
  if (x1 - x0 < 1e-12)
    x1 = x0 + 1;
  if (y1 - y0 < 1e-12)
    y1 = y0 + 1;
  double pad = (y1 - y0) * 0.05;
  y0 -= pad, y1 += pad;
  cv::Mat img(H, W, CV_8UC3, cv::Scalar(255, 255, 255));
  const int pw = W - left - right, ph = H - top - bottom;
  auto px = [&](double x) { return left + static_cast<int>((x - x0) / (x1 - x0) * pw); };
  auto py = [&](double y) { return top + ph - static_cast<int>((y - y0) / (y1 - y0) * ph); };
  const auto axis = cv::Scalar(60, 60, 60), grid = cv::Scalar(225, 225, 225);
  for (int k = 0; k <= 5; ++k) {
    double y = y0 + (y1 - y0) * k / 5.0, x = x0 + (x1 - x0) * k / 5.0;
    cv::line(img, {left, py(y)}, {left + pw, py(y)}, grid, 1);
    cv::line(img, {px(x), top}, {px(x), top + ph}, grid, 1);
    cv::putText(img, fmt_num(y), {4, py(y) + 4}, cv::FONT_HERSHEY_SIMPLEX, 0.4, axis, 1, cv::LINE_AA);
    cv::putText(img, fmt_num(x), {px(x) - 12, top + ph + 18}, cv::FONT_HERSHEY_SIMPLEX, 0.4, axis,
                1, cv::LINE_AA);
  }
  cv::rectangle(img, {left, top}, {left + pw, top + ph}, axis, 1);
  cv::putText(img, title, {left, 26}, cv::FONT_HERSHEY_SIMPLEX, 0.6, axis, 1, cv::LINE_AA);
  cv::putText(img, "step", {left + pw / 2 - 14, H - 10}, cv::FONT_HERSHEY_SIMPLEX, 0.45, axis, 1,
              cv::LINE_AA);
  static const cv::Scalar palette[] = {{180, 119, 31}, {14, 127, 255}, {44, 160, 44},
                                       {40, 39, 214},  {189, 103, 148}, {75, 86, 140},
                                       {194, 119, 227}, {127, 127, 127}};
  int idx = 0;
  for (auto& [name, pts] : series) {
    auto color = palette[idx % 8];
    std::vector<cv::Point> poly;
    for (auto& [x, y] : pts)
      if (std::isfinite(y))
        poly.emplace_back(px(x), py(y));
    if (poly.size() == 1)
      cv::circle(img, poly[0], 3, color, cv::FILLED, cv::LINE_AA);
    else if (!poly.empty())
      cv::polylines(img, poly, false, color, 2, cv::LINE_AA);
    for (auto& p : poly)
      if (pts.size() <= 30)
        cv::circle(img, p, 3, color, cv::FILLED, cv::LINE_AA);
    int ly = top + 16 + idx * 20;
    cv::line(img, {left + pw + 12, ly - 4}, {left + pw + 36, ly - 4}, color, 3, cv::LINE_AA);
    cv::putText(img, name, {left + pw + 42, ly}, cv::FONT_HERSHEY_SIMPLEX, 0.45, axis, 1,
                cv::LINE_AA);
    ++idx;
  }
  try {
    return cv::imwrite(path, img);
  } catch (const cv::Exception&) {
    return false;
  }
}

} // namespace rookery::train

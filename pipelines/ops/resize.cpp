// resize: sets the size each picture is resampled to (applied lazily, see
// pipe::image). Modes: "shorter" (torchvision's Resize(int): the shorter side
// becomes `size`, the longer int(size * long / short)) and "exact" (width x
// height, aspect ratio not kept, like tf.image.resize). Filters: "pil_bilinear"
// (Pillow's antialiased bilinear, bit-exact; torchvision on PIL images),
// "bilinear", "area" and "nearest" (OpenCV's), and "tf_bilinear" (TF.js's
// resizeBilinear on [0, 1] floats, `align_corners` as given: nsfwjs's
// preprocessing; to_tensor computes it, so nothing may come in between).
#include "pipelines/codec.hpp"
#include "pipelines/value.hpp"

namespace rookery::pipe {

namespace {

class resize_op : public op {
public:
  resize_op(std::string mode, int64_t size, int64_t width, int64_t height, std::string filter,
            bool align_corners, int64_t max_pixels)
    : mode_(std::move(mode)), size_(size), width_(width), height_(height),
      filter_(std::move(filter)), align_(align_corners), max_pixels_(max_pixels) {}
  kind input() const override { return kind::image; }
  kind output() const override { return kind::image; }
  status run(item& x) const override {
    for (auto& im : x.images) {
      if (im.pending()) { // resize after a crop: resample what was made so far
        auto m = im.materialise();
        if (!m)
          return m.error();
        auto limit = im.max_pixels;
        im = image::of(std::move(*m));
        im.max_pixels = limit;
      }
      const int64_t iw = im.src.cols, ih = im.src.rows;
      int64_t rw = width_, rh = height_;
      if (mode_ == "shorter") {
        if (iw <= ih) {
          rw = size_;
          rh = static_cast<int64_t>(static_cast<double>(size_ * ih) / static_cast<double>(iw));
        } else {
          rh = size_;
          rw = static_cast<int64_t>(static_cast<double>(size_ * iw) / static_cast<double>(ih));
        }
      }
      rw = std::max<int64_t>(1, rw);
      rh = std::max<int64_t>(1, rh);
      // The size is virtual (only what a crop keeps is computed): the pixel
      // limit applies when pixels are made (image::materialise).
      if (rw > (int64_t{1} << 31) || rh > (int64_t{1} << 31))
        return fail(errc::payload_too_large, "resizing gives " + std::to_string(rw) + "x"
                                               + std::to_string(rh) + " pixels");
      im.rw = rw;
      im.rh = rh;
      im.filter = filter_;
      im.align_corners = align_;
      im.left = im.top = 0;
      im.cw = rw;
      im.ch = rh;
    }
    return {};
  }
  nlohmann::json describe() const override {
    nlohmann::json j{{"op", "resize"}, {"mode", mode_}, {"filter", filter_}};
    if (filter_ == "tf_bilinear")
      j["align_corners"] = align_;
    if (mode_ == "shorter")
      j["size"] = size_;
    else {
      j["width"] = width_;
      j["height"] = height_;
    }
    return j;
  }

private:
  std::string mode_;
  int64_t size_, width_, height_;
  std::string filter_;
  bool align_;
  int64_t max_pixels_;
};

} // namespace

result<std::unique_ptr<op>> make_resize(const nlohmann::json& j, const limits& lim) {
  params p{j, "resize"};
  if (auto s = p.only({"size", "mode", "width", "height", "filter", "align_corners"}); !s)
    return s.error();
  std::string mode = j.contains("width") || j.contains("height") ? "exact" : "shorter";
  std::string filter = "pil_bilinear";
  int64_t size = 0, width = 0, height = 0;
  if (auto s = p.text("mode", mode, {"shorter", "exact"}); !s)
    return s.error();
  if (auto s = p.text("filter", filter, {"pil_bilinear", "bilinear", "area", "nearest", "tf_bilinear"}); !s)
    return s.error();
  bool align = false;
  if (auto i = j.find("align_corners"); i != j.end() && !i->is_null()) {
    if (!i->is_boolean() || filter != "tf_bilinear")
      return p.bad("'align_corners' is true or false, and applies to filter 'tf_bilinear' only");
    align = i->get<bool>();
  }
  for (auto [key, out] : {std::pair<const char*, int64_t*>{"size", &size}, {"width", &width}, {"height", &height}})
    if (auto s = p.integer(key, *out, 1, 16384); !s)
      return s.error();
  if (mode == "shorter" && size == 0) {
    if (width > 0 && width == height)
      size = width;
    else
      return p.bad("mode 'shorter' needs 'size' (the shorter side, 1 to 16384)");
  }
  if (mode == "exact") {
    if (size > 0 && width == 0 && height == 0)
      width = height = size;
    if (width == 0 || height == 0)
      return p.bad("mode 'exact' needs 'width' and 'height' (or 'size' for a square)");
  }
  return std::unique_ptr<op>(new resize_op(mode, size, width, height, filter, align, lim.max_pixels));
}

} // namespace rookery::pipe

// decode_image: the upload's bytes -> one picture (JPEG, PNG, BMP, WebP,
// TIFF; EXIF orientation applied, alpha dropped, as PIL's convert("RGB")).
#include "pipelines/codec.hpp"
#include "pipelines/value.hpp"

namespace rookery::pipe {

namespace {

class decode_image_op : public op {
public:
  explicit decode_image_op(int64_t max_pixels) : max_pixels_(max_pixels) {}
  kind input() const override { return kind::bytes; }
  kind output() const override { return kind::image; }
  status run(item& x) const override {
    auto m = decode_still(x.bytes, max_pixels_);
    if (!m)
      return m.error();
    x.images.clear();
    x.images.push_back(image::of(std::move(*m)));
    x.images.back().max_pixels = max_pixels_;
    x.bytes.clear();
    x.bytes.shrink_to_fit();
    x.k = kind::image;
    return {};
  }
  nlohmann::json describe() const override {
    return {{"op", "decode_image"}, {"max_pixels", max_pixels_}};
  }

private:
  int64_t max_pixels_;
};

} // namespace

result<std::unique_ptr<op>> make_decode_image(const nlohmann::json& j, const limits& lim) {
  params p{j, "decode_image"};
  if (auto s = p.only({"max_pixels"}); !s)
    return s.error();
  int64_t max_pixels = lim.max_pixels;
  if (auto s = p.integer("max_pixels", max_pixels, 1, lim.max_pixels > 0 ? lim.max_pixels : INT64_MAX); !s)
    return s.error();
  return std::unique_ptr<op>(new decode_image_op(max_pixels));
}

} // namespace rookery::pipe

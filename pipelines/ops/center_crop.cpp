// center_crop: keeps the centre `size` x `size` (or width x height) window of
// each picture, with torchvision's rounding and zero padding when the
// picture is smaller. Applied lazily together with a preceding resize.
#include "pipelines/codec.hpp"
#include "pipelines/value.hpp"

namespace rookery::pipe {

namespace {

class center_crop_op : public op {
public:
  center_crop_op(int64_t w, int64_t h) : w_(w), h_(h) {}
  kind input() const override { return kind::image; }
  kind output() const override { return kind::image; }
  status run(item& x) const override {
    for (auto& im : x.images) {
      if (im.filter == "tf_bilinear")
        return fail(errc::bad_request, "center_crop cannot follow a tf_bilinear resize (it stretches "
                                       "the whole picture)");
      if (im.left != 0 || im.top != 0 || im.cw != im.rw || im.ch != im.rh) {
        auto m = im.materialise(); // a second crop: make the first one real
        if (!m)
          return m.error();
        auto limit = im.max_pixels;
        im = image::of(std::move(*m));
        im.max_pixels = limit;
      }
      im.left = center_offset(im.rw, w_);
      im.top = center_offset(im.rh, h_);
      im.cw = w_;
      im.ch = h_;
    }
    return {};
  }
  nlohmann::json describe() const override {
    if (w_ == h_)
      return {{"op", "center_crop"}, {"size", w_}};
    return {{"op", "center_crop"}, {"width", w_}, {"height", h_}};
  }

private:
  int64_t w_, h_;
};

} // namespace

result<std::unique_ptr<op>> make_center_crop(const nlohmann::json& j, const limits&) {
  params p{j, "center_crop"};
  if (auto s = p.only({"size", "width", "height"}); !s)
    return s.error();
  int64_t size = 0, w = 0, h = 0;
  if (auto s = p.integer("size", size, 1, 16384); !s)
    return s.error();
  if (auto s = p.integer("width", w, 1, 16384); !s)
    return s.error();
  if (auto s = p.integer("height", h, 1, 16384); !s)
    return s.error();
  if (size > 0)
    w = h = size;
  if (w == 0 || h == 0)
    return p.bad("needs 'size' (or 'width' and 'height'), 1 to 16384");
  return std::unique_ptr<op>(new center_crop_op(w, h));
}

} // namespace rookery::pipe

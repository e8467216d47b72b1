// to_tensor: pictures -> CHW float tensors in [0, 1] (torchvision's ToTensor
// on a PIL image): RGB, or one grey channel with PIL's convert("L") luma
// (ITU-R 601-2, rounded). Resamples what resize/center_crop left pending.
#include "pipelines/codec.hpp"
#include "pipelines/value.hpp"

namespace rookery::pipe {

namespace {

class to_tensor_op : public op {
public:
  explicit to_tensor_op(int64_t channels) : channels_(channels) {}
  kind input() const override { return kind::image; }
  kind output() const override { return kind::tensor; }
  status run(item& x) const override {
    float lut[256];
    for (int v = 0; v < 256; ++v)
      lut[v] = static_cast<float>(v) / 255.0f;
    x.tensors.clear();
    for (auto& im : x.images) {
      if (im.filter == "tf_bilinear") { // floats straight from the decoded picture
        if (channels_ != 3)
          return fail(errc::bad_request, "a tf_bilinear resize gives RGB: to_tensor needs channels 3");
        if (!x.tensors.empty() && (im.rh != x.h || im.rw != x.w))
          return fail(errc::bad_request, "the pictures differ in size after preprocessing");
        x.tensors.push_back(tf_bilinear_tensor(im.src, im.rw, im.rh, im.align_corners));
        x.c = 3;
        x.h = im.rh;
        x.w = im.rw;
        continue;
      }
      auto m = im.materialise();
      if (!m)
        return m.error();
      const cv::Mat& px = *m;
      const int64_t h = px.rows, w = px.cols, plane = h * w;
      if (!x.tensors.empty() && (h != x.h || w != x.w))
        return fail(errc::bad_request, "the pictures differ in size after preprocessing");
      std::vector<float> t(static_cast<size_t>(channels_ * plane));
      for (int64_t y = 0; y < h; ++y) {
        const auto* row = px.ptr<unsigned char>(static_cast<int>(y));
        for (int64_t xx = 0; xx < w; ++xx) {
          const unsigned char* p = row + xx * 3;
          const size_t o = static_cast<size_t>(y * w + xx);
          if (channels_ == 1) {
            t[o] = lut[(299 * p[2] + 587 * p[1] + 114 * p[0] + 500) / 1000];
          } else {
            t[o] = lut[p[2]]; // BGR -> RGB
            t[static_cast<size_t>(plane) + o] = lut[p[1]];
            t[static_cast<size_t>(2 * plane) + o] = lut[p[0]];
          }
        }
      }
      x.c = channels_;
      x.h = h;
      x.w = w;
      x.tensors.push_back(std::move(t));
    }
    x.images.clear();
    x.k = kind::tensor;
    return {};
  }
  nlohmann::json describe() const override { return {{"op", "to_tensor"}, {"channels", channels_}}; }

private:
  int64_t channels_;
};

} // namespace

result<std::unique_ptr<op>> make_to_tensor(const nlohmann::json& j, const limits&) {
  params p{j, "to_tensor"};
  if (auto s = p.only({"channels"}); !s)
    return s.error();
  int64_t channels = 3;
  if (auto s = p.integer("channels", channels, 1, 3); !s)
    return s.error();
  if (channels == 2)
    return p.bad("'channels' must be 1 (grey) or 3 (RGB)");
  return std::unique_ptr<op>(new to_tensor_op(channels));
}

} // namespace rookery::pipe

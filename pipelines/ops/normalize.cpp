// normalize: (x - mean[c]) / std[c] per channel (torchvision's Normalize).
// One value for mean or std applies to every channel.
#include "pipelines/value.hpp"

namespace rookery::pipe {

namespace {

class normalize_op : public op {
public:
  normalize_op(std::vector<float> mean, std::vector<float> std) : mean_(std::move(mean)), std_(std::move(std)) {}
  kind input() const override { return kind::tensor; }
  kind output() const override { return kind::tensor; }
  status run(item& x) const override {
    const int64_t plane = x.h * x.w;
    for (auto& t : x.tensors)
      for (int64_t c = 0; c < x.c; ++c) {
        const float m = mean_[std::min<size_t>(static_cast<size_t>(c), mean_.size() - 1)];
        const float s = std_[std::min<size_t>(static_cast<size_t>(c), std_.size() - 1)];
        float* p = t.data() + c * plane;
        for (int64_t i = 0; i < plane; ++i)
          p[i] = (p[i] - m) / s;
      }
    return {};
  }
  nlohmann::json describe() const override { return {{"op", "normalize"}, {"mean", mean_}, {"std", std_}}; }

private:
  std::vector<float> mean_, std_;
};

} // namespace

result<std::unique_ptr<op>> make_normalize(const nlohmann::json& j, const limits&) {
  params p{j, "normalize"};
  if (auto s = p.only({"mean", "std"}); !s)
    return s.error();
  std::vector<float> mean{0.485f, 0.456f, 0.406f}, std{0.229f, 0.224f, 0.225f};
  if (auto s = p.floats("mean", mean, 1, 3); !s)
    return s.error();
  if (auto s = p.floats("std", std, 1, 3); !s)
    return s.error();
  for (float v : std)
    if (!(v > 0))
      return p.bad("'std' must be positive");
  return std::unique_ptr<op>(new normalize_op(mean, std));
}

} // namespace rookery::pipe

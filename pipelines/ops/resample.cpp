// resample: each channel of a series linearly resampled to `length` points
// (its first and last values kept), so series of any length embed alike.
#include "models/minirocket.hpp"
#include "pipelines/value.hpp"

namespace rookery::pipe {

namespace {

class resample_op : public op {
public:
  explicit resample_op(int64_t length) : length_(length) {}
  kind input() const override { return kind::series; }
  kind output() const override { return kind::series; }
  status run(item& x) const override {
    for (auto& c : x.series) {
      if (c.size() < 2)
        return fail(errc::bad_request, "a series needs at least 2 points to resample");
      c = minirocket::resample(c, length_);
    }
    return {};
  }
  nlohmann::json describe() const override { return {{"op", "resample"}, {"length", length_}}; }

private:
  int64_t length_;
};

} // namespace

result<std::unique_ptr<op>> make_resample(const nlohmann::json& j, const limits&) {
  params p{j, "resample"};
  if (auto s = p.only({"length"}); !s)
    return s.error();
  int64_t length = 128;
  if (auto s = p.integer("length", length, 9, 65536); !s)
    return s.error();
  return std::unique_ptr<op>(new resample_op(length));
}

} // namespace rookery::pipe

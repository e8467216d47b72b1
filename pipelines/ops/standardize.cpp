// standardize: each channel of a series to mean 0 and standard deviation 1
// (a constant channel becomes 0), so shape, not level or scale, is embedded.
#include "models/minirocket.hpp"
#include "pipelines/value.hpp"

namespace rookery::pipe {

namespace {

class standardize_op : public op {
public:
  kind input() const override { return kind::series; }
  kind output() const override { return kind::series; }
  status run(item& x) const override {
    for (auto& c : x.series)
      c = minirocket::standardise(std::move(c));
    return {};
  }
  nlohmann::json describe() const override { return {{"op", "standardize"}}; }
};

} // namespace

result<std::unique_ptr<op>> make_standardize(const nlohmann::json& j, const limits&) {
  params p{j, "standardize"};
  if (auto s = p.only({}); !s)
    return s.error();
  return std::unique_ptr<op>(new standardize_op());
}

} // namespace rookery::pipe

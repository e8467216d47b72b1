// l2_normalize: each embedding divided by its Euclidean norm (eps 1e-12, as
// torch.nn.functional.normalize), so cosine similarity is a dot product.
#include <cmath>

#include "pipelines/value.hpp"

namespace rookery::pipe {

namespace {

class l2_normalize_op : public op {
public:
  kind input() const override { return kind::embedding; }
  kind output() const override { return kind::embedding; }
  status run(item& x) const override {
    for (auto& e : x.embeddings) {
      double ss = 0;
      for (float v : e)
        ss += static_cast<double>(v) * v;
      const float n = static_cast<float>(std::max(std::sqrt(ss), 1e-12));
      for (float& v : e)
        v /= n;
    }
    return {};
  }
  nlohmann::json describe() const override { return {{"op", "l2_normalize"}}; }
};

} // namespace

result<std::unique_ptr<op>> make_l2_normalize(const nlohmann::json& j, const limits&) {
  params p{j, "l2_normalize"};
  if (auto s = p.only({}); !s)
    return s.error();
  return std::unique_ptr<op>(new l2_normalize_op());
}

} // namespace rookery::pipe

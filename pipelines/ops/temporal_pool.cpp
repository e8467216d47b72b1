// temporal_pool: the embeddings of a video's frames -> one mean-pooled vector
// (L2-normalised) and segments: a new segment starts where a frame's cosine
// similarity to the running mean of the current segment drops below
// `threshold`. Each segment answers its own mean vector and its time span.
#include <cmath>

#include "pipelines/value.hpp"

namespace rookery::pipe {

namespace {

std::vector<float> unit_mean(const std::vector<std::vector<float>>& es, size_t b, size_t e) {
  std::vector<double> acc(es[b].size(), 0.0);
  for (size_t i = b; i < e; ++i)
    for (size_t k = 0; k < acc.size(); ++k)
      acc[k] += es[i][k];
  double ss = 0;
  for (double v : acc)
    ss += v * v;
  const double n = std::max(std::sqrt(ss), 1e-12);
  std::vector<float> out(acc.size());
  for (size_t k = 0; k < acc.size(); ++k)
    out[k] = static_cast<float>(acc[k] / n);
  return out;
}

double cosine(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0, na = 0, nb = 0;
  for (size_t k = 0; k < a.size(); ++k) {
    d += static_cast<double>(a[k]) * b[k];
    na += static_cast<double>(a[k]) * a[k];
    nb += static_cast<double>(b[k]) * b[k];
  }
  return d / std::max(std::sqrt(na * nb), 1e-24);
}

class temporal_pool_op : public op {
public:
  explicit temporal_pool_op(double threshold) : threshold_(threshold) {}
  kind input() const override { return kind::embedding; }
  kind output() const override { return kind::embedding; }
  status run(item& x) const override {
    auto& es = x.embeddings;
    if (es.empty())
      return fail(errc::bad_request, "no frames to pool");
    std::vector<double> times = x.times_s;
    if (times.size() != es.size()) { // a still image: one "frame" at 0
      times.assign(es.size(), 0.0);
    }
    const double end_all = std::max(x.duration_s, times.back());
    nlohmann::json segments = nlohmann::json::array();
    size_t begin = 0;
    for (size_t i = 1; i <= es.size(); ++i) {
      bool cut = i == es.size();
      if (!cut)
        cut = cosine(unit_mean(es, begin, i), es[i]) < threshold_;
      if (!cut)
        continue;
      segments.push_back({{"start_s", times[begin]},
                          {"end_s", i < es.size() ? times[i] : end_all},
                          {"frames", i - begin},
                          {"embedding", unit_mean(es, begin, i)}});
      begin = i;
    }
    auto pooled = unit_mean(es, 0, es.size());
    x.extra["segments"] = std::move(segments);
    x.extra["frames"] = es.size();
    es.assign(1, std::move(pooled));
    return {};
  }
  nlohmann::json describe() const override { return {{"op", "temporal_pool"}, {"threshold", threshold_}}; }

private:
  double threshold_;
};

} // namespace

result<std::unique_ptr<op>> make_temporal_pool(const nlohmann::json& j, const limits&) {
  params p{j, "temporal_pool"};
  if (auto s = p.only({"threshold"}); !s)
    return s.error();
  double threshold = 0.85;
  if (auto s = p.number("threshold", threshold, -1, 1); !s)
    return s.error();
  return std::unique_ptr<op>(new temporal_pool_op(threshold));
}

} // namespace rookery::pipe

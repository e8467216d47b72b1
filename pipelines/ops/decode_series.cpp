// decode_series: the upload's bytes -> a time series (channels x length):
// numeric CSV/TSV with an optional header (non-numeric columns such as dates
// dropped, missing cells interpolated), one row of numbers, or JSON
// ([...], [[...], ...], {"series": ...}); common/series_text.hpp.
#include "common/series_text.hpp"
#include "pipelines/value.hpp"

namespace rookery::pipe {

namespace {

class decode_series_op : public op {
public:
  decode_series_op(int64_t max_points, int64_t max_channels) : max_points_(max_points), max_channels_(max_channels) {}
  kind input() const override { return kind::bytes; }
  kind output() const override { return kind::series; }
  status run(item& x) const override {
    auto t = parse_series(x.bytes, series_limits{max_points_, max_channels_});
    if (!t)
      return t.error();
    x.series = std::move(t->channels);
    x.extra["channels"] = t->names;
    x.extra["length"] = x.series.front().size();
    x.bytes.clear();
    x.bytes.shrink_to_fit();
    x.k = kind::series;
    return {};
  }
  nlohmann::json describe() const override {
    return {{"op", "decode_series"}, {"max_points", max_points_}, {"max_channels", max_channels_}};
  }

private:
  int64_t max_points_, max_channels_;
};

} // namespace

result<std::unique_ptr<op>> make_decode_series(const nlohmann::json& j, const limits& lim) {
  params p{j, "decode_series"};
  if (auto s = p.only({"max_points", "max_channels"}); !s)
    return s.error();
  int64_t max_points = lim.max_series_points, max_channels = 64;
  if (auto s = p.integer("max_points", max_points, 9, lim.max_series_points); !s)
    return s.error();
  if (auto s = p.integer("max_channels", max_channels, 1, 4096); !s)
    return s.error();
  return std::unique_ptr<op>(new decode_series_op(max_points, max_channels));
}

} // namespace rookery::pipe

#include "trainers/blocks.hpp"

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

#include "datasets/series.hpp"
#include "trainers/spec.hpp"

using json = nlohmann::json;

namespace rookery::train {

namespace {

std::vector<double> resample_linear(const std::vector<double>& x, int64_t n) {
  std::vector<double> out(static_cast<size_t>(n));
  if (x.size() == 1 || n == 1) {
    std::fill(out.begin(), out.end(), x.front());
    return out;
  }
  const double scale = static_cast<double>(x.size() - 1) / static_cast<double>(n - 1);
  for (int64_t i = 0; i < n; ++i) {
    double p = static_cast<double>(i) * scale;
    auto lo = static_cast<size_t>(std::floor(p));
    auto hi = std::min(lo + 1, x.size() - 1);
    double f = p - static_cast<double>(lo);
    out[static_cast<size_t>(i)] = x[lo] * (1 - f) + x[hi] * f;
  }
  return out;
}

void mean_std(const std::vector<double>& v, double& m, double& s) {
  m = 0;
  for (double x : v)
    m += x;
  m /= static_cast<double>(std::max<size_t>(1, v.size()));
  double q = 0;
  for (double x : v)
    q += (x - m) * (x - m);
  s = std::sqrt(q / static_cast<double>(std::max<size_t>(1, v.size())));
}

} // namespace

result<std::vector<float>> series_block::encode(const std::vector<std::vector<double>>& x) const {
  if (static_cast<int64_t>(x.size()) != channels)
    return fail(errc::bad_request, "the series has " + std::to_string(x.size())
                                     + " channel(s); this model takes " + std::to_string(channels));
  std::vector<float> out(static_cast<size_t>(channels * length), 0.0f);
  for (int64_t c = 0; c < channels; ++c) {
    const auto& src = x[static_cast<size_t>(c)];
    if (src.empty())
      return fail(errc::bad_request, "channel " + std::to_string(c + 1) + " is empty");
    double m = 0, s = 1;
    if (standardize == "per_channel" && static_cast<size_t>(c) < mean.size()) {
      m = mean[static_cast<size_t>(c)];
      s = std[static_cast<size_t>(c)];
    } else if (standardize == "per_series") {
      mean_std(src, m, s);
    }
    if (!(s > 1e-12))
      s = 1;
    std::vector<double> v;
    if (fit == "resample" && static_cast<int64_t>(src.size()) != length)
      v = resample_linear(src, length);
    else if (static_cast<int64_t>(src.size()) > length) // crop (and pad's long ones): the last points
      v.assign(src.end() - length, src.end());
    else
      v = src;
    float* row = out.data() + c * length;
    for (size_t i = 0; i < v.size() && static_cast<int64_t>(i) < length; ++i)
      row[i] = static_cast<float>((v[i] - m) / s);
    // Shorter ones: the rest stays 0, the standardised mean.
  }
  return out;
}

void series_block::fit_to(const std::vector<std::vector<std::vector<double>>>& train) {
  if (train.empty())
    return;
  channels = static_cast<int64_t>(train.front().size());
  if (length == 0)
    for (auto& item : train)
      for (auto& ch : item)
        length = std::max<int64_t>(length, static_cast<int64_t>(ch.size()));
  mean.assign(static_cast<size_t>(channels), 0.0);
  std.assign(static_cast<size_t>(channels), 1.0);
  if (standardize != "per_channel")
    return;
  for (int64_t c = 0; c < channels; ++c) {
    double sum = 0, sq = 0, n = 0;
    for (auto& item : train)
      for (double v : item[static_cast<size_t>(c)]) {
        sum += v;
        sq += v * v;
        n += 1;
      }
    double m = sum / std::max(1.0, n);
    mean[static_cast<size_t>(c)] = m;
    std[static_cast<size_t>(c)] = std::sqrt(std::max(0.0, sq / std::max(1.0, n) - m * m));
  }
}

std::string series_block::to_json() const {
  return json{{"block", "timeseries"}, {"channels", channels}, {"length", length},
              {"standardize", standardize}, {"fit", fit}, {"mean", mean}, {"std", std}}
    .dump();
}

result<series_block> series_block::from_json(const json& j) {
  series_block b;
  spec_reader r(j, "input");
  r.integer("channels", b.channels, 1, 64)
    .integer("length", b.length, 1, 100000)
    .choice("standardize", b.standardize, {"per_channel", "per_series", "none"})
    .choice("fit", b.fit, {"pad", "crop", "resample"});
  if (auto st = r.done(); !st)
    return st.error();
  try {
    b.mean = j.value("mean", std::vector<double>{});
    b.std = j.value("std", std::vector<double>{});
  } catch (const std::exception&) {
    return fail(errc::bad_request, "input.mean and input.std must be arrays of numbers");
  }
  if (b.standardize == "per_channel"
      && (b.mean.size() != static_cast<size_t>(b.channels) || b.std.size() != b.mean.size()))
    return fail(errc::bad_request, "input.mean and input.std need one value per channel");
  return b;
}

namespace {

/// spec["task"]'s "input" and "target" objects (empty when absent), once the
/// input block, if named, is `block` (whose items are `items`): otherwise a
/// 400 naming the block and the data set.
result<std::pair<const json*, const json*>> task_objects(const json& spec, const data::dataset_info& ds,
                                                         const std::string& block, const std::string& items) {
  auto task = spec_object(spec, "task");
  if (!task)
    return task.error();
  auto input = spec_object(**task, "input");
  if (!input)
    return fail(errc::bad_request, "'task.input' must be an object");
  auto target = spec_object(**task, "target");
  if (!target)
    return fail(errc::bad_request, "'task.target' must be an object");
  std::string in_block = block;
  spec_reader ri(**input, "task.input");
  ri.string("block", in_block);
  if (auto st = ri.done(); !st)
    return st.error();
  if (in_block != block)
    return fail(errc::bad_request, "task.input.block '" + in_block + "' does not suit data set '"
                                     + ds.name + "' (" + ds.kind + "): its items are " + items
                                     + ", the input block is '" + block + "'");
  return std::pair<const json*, const json*>{*input, *target};
}

} // namespace

result<series_task> parse_series_task(const json& spec, const data::dataset_info& ds) {
  const bool forecasting = ds.kind == "series_forecasting";
  if (ds.kind != "series_classification" && !forecasting)
    return fail(errc::bad_request, "the timeseries trainer needs a series data set "
                                   "(series_classification or series_forecasting); '"
                                     + ds.name + "' is " + ds.kind);
  auto objs = task_objects(spec, ds, "timeseries", "series");
  if (!objs)
    return objs.error();
  const json* input = objs->first;
  const json* target = objs->second;
  series_task t;
  spec_reader ri(*input, "task.input");
  int64_t season = 1;
  if (forecasting) {
    season = data::series_season(ds.name);
    t.input.length = std::max<int64_t>(8, 2 * season);
  }
  ri.integer("length", t.input.length, 1, 100000)
    .choice("standardize", t.input.standardize, {"per_channel", "per_series", "none"})
    .choice("fit", t.input.fit, {"pad", "crop", "resample"});
  if (auto st = ri.done(); !st)
    return st.error();

  t.target.block = forecasting ? "continuous" : "label";
  spec_reader rt(*target, "task.target");
  rt.choice("block", t.target.block, {"label", "continuous"});
  if (auto st = rt.done(); !st)
    return st.error();
  if (t.target.block == "label" && forecasting)
    return fail(errc::bad_request, "task.target.block 'label' does not suit data set '" + ds.name
                                     + "' (series_forecasting): its targets are the series' next "
                                       "values; use {\"block\": \"continuous\", \"horizon\": H}");
  if (t.target.block == "continuous" && !forecasting)
    return fail(errc::bad_request, "task.target.block 'continuous' does not suit data set '"
                                     + ds.name + "' (series_classification): its targets are the "
                                       "classes " + json(ds.classes).dump()
                                     + "; use {\"block\": \"label\"}");
  if (forecasting) {
    t.target.horizon = std::max<int64_t>(1, season);
    rt.integer("horizon", t.target.horizon, 1, 10000)
      .string("column", t.target.column)
      .boolean("standardize", t.target.standardize);
    if (auto st = rt.done(); !st)
      return st.error();
    if (!t.target.column.empty()
        && std::find(ds.columns.begin(), ds.columns.end(), t.target.column) == ds.columns.end())
      return fail(errc::bad_request, "task.target.column '" + t.target.column + "' is not a column of '"
                                       + ds.name + "' (" + json(ds.columns).dump() + ")");
    if (ds.item_shape.size() == 2 && t.input.length + t.target.horizon * 2 > ds.item_shape[1] / 2)
      return fail(errc::bad_request, "task.input.length + 2 x task.target.horizon must be at most "
                                     "half of '" + ds.name + "' (" + std::to_string(ds.item_shape[1])
                                       + " points), so training and held-out windows both exist");
  } else {
    t.target.classes = ds.classes;
  }
  return t;
}

std::string text_block::to_json() const {
  return json{{"block", "text"}, {"vocab", vocab}, {"max_len", max_len}}.dump();
}

result<text_task> parse_text_task(const json& spec, const data::dataset_info& ds) {
  if (ds.kind != "text_classification")
    return fail(errc::bad_request, "the text trainer needs a text data set (text_classification); '"
                                     + ds.name + "' is " + ds.kind);
  auto objs = task_objects(spec, ds, "text", "texts");
  if (!objs)
    return objs.error();
  const json* input = objs->first;
  const json* target = objs->second;
  text_task t;
  spec_reader ri(*input, "task.input");
  ri.integer("vocab", t.input.vocab, 260, 64000).integer("max_len", t.input.max_len, 2, 4096);
  for (auto& [k, v] : input->items())
    ri.check(k == "block" || k == "vocab" || k == "max_len", k, "is not a text block key (block, vocab, max_len)");
  if (auto st = ri.done(); !st)
    return st.error();
  spec_reader rt(*target, "task.target");
  rt.string("block", t.target);
  if (auto st = rt.done(); !st)
    return st.error();
  if (t.target == "continuous")
    return fail(errc::bad_request, "task.target.block 'continuous' does not suit data set '" + ds.name
                                     + "' (text_classification): its targets are the classes "
                                     + json(ds.classes).dump() + "; use {\"block\": \"label\"} or "
                                       "{\"block\": \"lm\"}");
  if (t.target != "label" && t.target != "lm")
    return fail(errc::bad_request, "task.target.block must be 'label' or 'lm', not '" + t.target + "'");
  for (auto& [k, v] : target->items())
    rt.check(k == "block", k, "is not a key of the " + t.target + " block");
  if (auto st = rt.done(); !st)
    return st.error();
  t.classes = ds.classes;
  if (t.target == "label" && t.classes.size() < 2)
    return fail(errc::bad_request, "data set '" + ds.name + "' has fewer than two classes to learn");
  return t;
}

} // namespace rookery::train

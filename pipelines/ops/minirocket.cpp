// minirocket: a series -> MiniRocket's PPV features (models/minirocket.hpp),
// fitted on first use (once per process), deterministically: the kernels are
// fixed, the dilations follow from `length`, and the biases are quantiles of
// convolution outputs of series of the synthetic control chart data set
// (seeded; each standardised and resampled to `length`), the examples picked
// with `seed`. With "center" (the default) the features are centred on their
// mean over that fit set, so cosines between embeddings tell series apart.
// Univariate: a series of several channels is a 400 naming them.
#include <map>
#include <mutex>
#include <tuple>

#include "models/minirocket.hpp"
#include "pipelines/value.hpp"

namespace rookery::pipe {

namespace {

struct fitted {
  minirocket::params params;
  std::vector<double> mean; // of the features over the fit set
};

/// One fit per (length, features, seed) and process: compiling a pipeline
/// again (a listing, a restart of its stages) costs nothing.
result<std::shared_ptr<const fitted>> fit_once(int64_t length, int64_t features, uint64_t seed) {
  static std::mutex mu;
  static std::map<std::tuple<int64_t, int64_t, uint64_t>, std::shared_ptr<const fitted>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto key = std::make_tuple(length, features, seed);
  if (auto i = cache.find(key); i != cache.end())
    return i->second;
  auto set = synthetic_control::generate(100, 60, seed);
  for (auto& s : set.x)
    s = minirocket::resample(minirocket::standardise(std::move(s)), length);
  auto p = minirocket::fit(set.x, features, seed);
  if (!p)
    return p.error();
  auto f = std::make_shared<fitted>();
  f->params = std::move(*p);
  // The mean over every fifth series (20 of each class): enough for a centre.
  f->mean.assign(f->params.num_features(), 0.0);
  const double n = static_cast<double>((set.x.size() + 4) / 5);
  for (size_t i = 0; i < set.x.size(); i += 5) {
    auto v = minirocket::transform(f->params, set.x[i]);
    if (!v)
      return v.error();
    for (size_t k = 0; k < v->size(); ++k)
      f->mean[k] += (*v)[k] / n;
  }
  cache.emplace(key, f);
  return std::shared_ptr<const fitted>(f);
}

class minirocket_op : public op {
public:
  minirocket_op(int64_t length, int64_t features, uint64_t seed, bool center)
      : length_(length), features_(features), seed_(seed), center_(center) {
    minirocket::params shape; // the dimension, without fitting
    minirocket::fit_dilations(length, features, shape);
    int64_t per_kernel = 0;
    for (auto f : shape.features_per_dilation)
      per_kernel += f;
    dim_ = static_cast<uint32_t>(per_kernel * static_cast<int64_t>(minirocket::kernels().size()));
    info_.name = "minirocket";
    info_.dim = dim_;
    info_.ready = true;
    info_.weights = "none to install: MiniRocket's fixed kernels, biases fitted on the synthetic control chart "
                    "data (seed " + std::to_string(seed) + ", series resampled to " + std::to_string(length) + ")";
    info_.status = "serving MiniRocket features (Dempster et al. 2021), deterministic; " + info_.weights;
  }
  const own_model_info* runs_own_model() const override { return &info_; }
  kind input() const override { return kind::series; }
  kind output() const override { return kind::embedding; }
  status run(item& x) const override {
    if (x.series.size() != 1) {
      std::string names;
      if (x.extra.contains("channels"))
        for (auto& n : x.extra["channels"])
          names += (names.empty() ? "" : ", ") + n.get<std::string>();
      return fail(errc::bad_request, "op 'minirocket' embeds one series, this one has "
                                       + std::to_string(x.series.size()) + " numeric columns ("
                                       + names + "): send one column");
    }
    // Fitted on first use (about a second), once per process.
    auto f = fit_once(length_, features_, seed_);
    if (!f)
      return f.error();
    auto v = minirocket::transform((*f)->params, x.series.front());
    if (!v)
      return v.error();
    if (center_)
      for (size_t k = 0; k < v->size(); ++k)
        (*v)[k] = static_cast<float>((*v)[k] - (*f)->mean[k]);
    x.embeddings.assign(1, std::move(*v));
    x.series.clear();
    x.k = kind::embedding;
    return {};
  }
  nlohmann::json describe() const override {
    return {{"op", "minirocket"},   {"length", length_}, {"features", features_},
            {"dim", dim_}, {"seed", seed_}, {"fit", "synthetic_control"},
            {"center", center_}};
  }

private:
  int64_t length_, features_;
  uint32_t dim_ = 0;
  uint64_t seed_;
  bool center_;
  own_model_info info_;
};

} // namespace

result<std::unique_ptr<op>> make_minirocket(const nlohmann::json& j, const limits&) {
  params p{j, "minirocket"};
  if (auto s = p.only({"length", "features", "seed", "fit", "center"}); !s)
    return s.error();
  int64_t length = 128, features = 2016, seed = 0;
  if (auto s = p.integer("length", length, 9, 4096); !s)
    return s.error();
  if (auto s = p.integer("features", features, 84, 20000); !s)
    return s.error();
  if (auto s = p.integer("seed", seed, 0, INT64_MAX); !s)
    return s.error();
  std::string fit_set = "synthetic_control";
  if (auto s = p.text("fit", fit_set, {"synthetic_control"}); !s)
    return s.error();
  bool center = true;
  if (auto c = j.find("center"); c != j.end()) {
    if (!c->is_boolean())
      return p.bad("'center' must be true or false");
    center = c->get<bool>();
  }
  return std::unique_ptr<op>(new minirocket_op(length, features, static_cast<uint64_t>(seed), center));
}

} // namespace rookery::pipe

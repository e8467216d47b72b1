// center: each embedding minus a reference mean feature vector. Pooled CNN
// features share a large common component (nsfwjs's InceptionV3: unrelated
// photos score cosine 0.99), so cosines between raw features barely tell
// pictures apart; subtracting the mean over a reference set of real photos
// before l2_normalize makes them discriminative again (the video pipeline's
// segments rely on it).
//
// "mean" is either the name of a vector shipped in pipelines/builtin/vectors/
// (compiled into the binary, each with the recipe that made it) or an inline
// array of numbers.
#include <set>

#include "common/json_limits.hpp"
#include "pipelines/value.hpp"

namespace rookery {
// Generated from pipelines/builtin/vectors/*.json (CMakeLists.txt).
const std::vector<std::pair<std::string, std::string>>& builtin_vector_texts();
} // namespace rookery

namespace rookery::pipe {

namespace {

class center_op : public op {
public:
  center_op(std::string name, std::vector<float> mean) : name_(std::move(name)), mean_(std::move(mean)) {}
  kind input() const override { return kind::embedding; }
  kind output() const override { return kind::embedding; }
  status run(item& x) const override {
    for (auto& e : x.embeddings) {
      if (e.size() != mean_.size())
        return fail(errc::internal, "op 'center': the mean has " + std::to_string(mean_.size())
                                      + " values, the embedding " + std::to_string(e.size()));
      for (size_t k = 0; k < e.size(); ++k)
        e[k] -= mean_[k];
    }
    return {};
  }
  nlohmann::json describe() const override {
    if (!name_.empty())
      return {{"op", "center"}, {"mean", name_}, {"dim", mean_.size()}};
    return {{"op", "center"}, {"mean", mean_}};
  }

private:
  std::string name_; // a shipped vector's name; "" for an inline one
  std::vector<float> mean_;
};

} // namespace

result<std::unique_ptr<op>> make_center(const nlohmann::json& j, const limits&) {
  params p{j, "center"};
  if (auto s = p.only({"mean"}); !s)
    return s.error();
  auto m = j.find("mean");
  if (m == j.end())
    return p.bad("'mean' is required: the name of a shipped vector or an array of numbers");
  if (m->is_array()) {
    std::vector<float> mean;
    if (auto s = p.floats("mean", mean, 1, 65536); !s)
      return s.error();
    return std::unique_ptr<op>(new center_op("", std::move(mean)));
  }
  if (!m->is_string())
    return p.bad("'mean' must be the name of a shipped vector or an array of numbers");
  const auto name = m->get<std::string>();
  std::string known;
  for (auto& [file, text] : builtin_vector_texts()) {
    known += (known.empty() ? "" : ", ") + file;
    if (file != name)
      continue;
    std::string why;
    auto v = jsonx::parse_bounded(text, &why);
    if (!v || !v->is_object() || !(*v)["values"].is_array())
      return p.bad("the shipped vector '" + name + "' is not valid");
    std::vector<float> mean;
    for (auto& x : (*v)["values"])
      mean.push_back(x.get<float>());
    return std::unique_ptr<op>(new center_op(name, std::move(mean)));
  }
  return p.bad("no shipped vector '" + name + "' (shipped: " + (known.empty() ? "none" : known) + ")");
}

} // namespace rookery::pipe

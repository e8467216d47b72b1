// model: tensors -> one feature vector each, from a model of the repository
// (its pooled penultimate features). This operator marks the stage boundary
// of a pipeline: what comes before it runs in the pipeline's preprocessing
// actors, the model itself in the model's replica pool (one pool per model,
// shared by every pipeline that names it and by /v2 inference), and what
// comes after it back in the preprocessing actor (pipelines/pipeline.cpp).
#include "pipelines/value.hpp"

namespace rookery::pipe {

namespace {

bool plain_name(const std::string& s) {
  if (s.empty() || s.size() > 128 || s[0] == '.')
    return false;
  for (char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.')
      return false;
  return true;
}

} // namespace

class model_op : public op {
public:
  explicit model_op(std::string name) : name_(std::move(name)) {}
  kind input() const override { return kind::tensor; }
  kind output() const override { return kind::embedding; }
  status run(item&) const override {
    return fail(errc::internal, "op 'model' runs in the model's replica pool, not inline");
  }
  nlohmann::json describe() const override { return {{"op", "model"}, {"name", name_}}; }
  const std::string& name() const { return name_; }

private:
  std::string name_;
};

result<std::unique_ptr<op>> make_model(const nlohmann::json& j, const limits&) {
  params p{j, "model"};
  if (auto s = p.only({"name"}); !s)
    return s.error();
  auto i = j.find("name");
  if (i == j.end() || !i->is_string() || !plain_name(i->get<std::string>()))
    return p.bad("'name' must name a model of the repository (letters, digits, '_', '-', '.')");
  return std::unique_ptr<op>(new model_op(i->get<std::string>()));
}

const std::string* model_name_of(const op& o) {
  auto* m = dynamic_cast<const model_op*>(&o);
  return m ? &m->name() : nullptr;
}

} // namespace rookery::pipe

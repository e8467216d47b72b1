// zoo::model_options <-> JSON, for the model repository's config.json and job specs.
#include <nlohmann/json.hpp>

#include "models/zoo/zoo.hpp"

namespace rookery::zoo {

result<model_options> parse_model_options(const std::string& json_text) {
  model_options o;
  if (json_text.empty())
    return o;
  auto j = nlohmann::json::parse(json_text, nullptr, false);
  if (j.is_null())
    return o;
  if (!j.is_object())
    return fail(errc::bad_request, "model options must be a JSON object");
  std::string bad;
  auto num = [&](const char* k, auto& out, bool integer) {
    auto i = j.find(k);
    if (i == j.end() || i->is_null())
      return;
    if (!i->is_number() || (integer && !i->is_number_integer()))
      bad = std::string("model option '") + k + "' must be " + (integer ? "an integer" : "a number");
    else
      out = i->get<std::decay_t<decltype(out)>>();
  };
  auto flag = [&](const char* k, bool& out) {
    auto i = j.find(k);
    if (i == j.end() || i->is_null())
      return;
    if (!i->is_boolean())
      bad = std::string("model option '") + k + "' must be true or false";
    else
      out = i->get<bool>();
  };
  num("num_classes", o.num_classes, true);
  num("in_channels", o.in_channels, true);
  num("dropout", o.dropout, false);
  num("drop_path", o.drop_path, false);
  num("width_mult", o.width_mult, false);
  num("image_size", o.image_size, true);
  num("latent_dim", o.latent_dim, true);
  flag("features_only", o.features_only);
  flag("aux_logits", o.aux_logits);
  flag("transform_input", o.transform_input);
  if (auto i = j.find("out_indices"); i != j.end() && !i->is_null()) {
    if (!i->is_array())
      bad = "model option 'out_indices' must be an array of integers";
    else
      for (auto& v : *i) {
        if (!v.is_number_integer()) {
          bad = "model option 'out_indices' must be an array of integers";
          break;
        }
        o.out_indices.push_back(v.get<int64_t>());
      }
  }
  if (!bad.empty())
    return fail(errc::bad_request, bad);
  if (o.num_classes < 0 || o.in_channels < 1 || o.latent_dim < 0)
    return fail(errc::bad_request,
                "model options need num_classes >= 0, in_channels >= 1 and latent_dim >= 0");
  return o;
}

std::string model_options_json(const model_options& o) {
  return nlohmann::json{{"num_classes", o.num_classes},   {"in_channels", o.in_channels},
                        {"dropout", o.dropout},           {"drop_path", o.drop_path},
                        {"width_mult", o.width_mult},     {"image_size", o.image_size},
                        {"latent_dim", o.latent_dim},
                        {"features_only", o.features_only}, {"out_indices", o.out_indices},
                        {"aux_logits", o.aux_logits},     {"transform_input", o.transform_input}}
    .dump();
}

} // namespace rookery::zoo

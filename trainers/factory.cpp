// The trainer table: every kind of training a job can name, one entry each.
// A new kind is one file with its make function and one line here.
#include <nlohmann/json.hpp>

#include "trainers/autoencoder_trainer.hpp"
#include "trainers/classifier_trainer.hpp"
#include "trainers/gan_trainer.hpp"
#include "trainers/rnn_trainer.hpp"
#include "trainers/spec.hpp"
#include "trainers/text_trainer.hpp"
#include "trainers/timeseries_trainer.hpp"
#include "trainers/trainer.hpp"

namespace rookery::train {

const std::vector<trainer_kind>& trainer_kinds() {
  using json = nlohmann::json;
  static const std::vector<trainer_kind> kinds = {
    {"classifier", "image_classification", make_classifier_trainer},
    {"gan", "image_classification",
     [](const json& spec, const data::dataset_info& ds, const data::dataset_paths&) {
       return make_gan_trainer(spec, ds);
     }},
    {"autoencoder", "image_classification",
     [](const json& spec, const data::dataset_info& ds, const data::dataset_paths&) {
       return make_autoencoder_trainer(spec, ds);
     }},
    {"rnn", "text_classification",
     [](const json& spec, const data::dataset_info& ds, const data::dataset_paths&) {
       return make_rnn_trainer(spec, ds);
     }},
    {"timeseries", "series_classification, series_regression, series_forecasting",
     make_timeseries_trainer},
    {"text", "text_classification", make_text_trainer},
  };
  return kinds;
}

std::string known_trainers() {
  std::string out;
  for (auto& k : trainer_kinds())
    out += (out.empty() ? "" : ", ") + k.name;
  return out;
}

result<std::unique_ptr<Trainer>> make_trainer(const nlohmann::json& spec,
                                              const data::dataset_paths& paths, uint64_t user_id,
                                              bool is_admin) {
  if (!spec.is_object())
    return fail(errc::bad_request, "the job spec must be a JSON object");
  auto t = spec.find("trainer");
  if (t == spec.end() || !t->is_string())
    return fail(errc::bad_request, "field 'trainer' (string) is required: one of " + known_trainers());
  const auto name = t->get<std::string>();
  const trainer_kind* kind = nullptr;
  for (auto& k : trainer_kinds())
    if (k.name == name)
      kind = &k;
  if (!kind)
    return fail(errc::bad_request, "unknown trainer '" + name + "'; known: " + known_trainers());
  auto d = spec.find("dataset");
  if (d == spec.end() || !d->is_string())
    return fail(errc::bad_request, "field 'dataset' (string) is required: see GET /v1/datasets");
  if (auto h = spec_object(spec, "hyper"); !h)
    return h.error();
  auto ds = data::find_dataset(paths, d->get<std::string>(), user_id, is_admin);
  if (!ds)
    return ds.error();
  if (!ds->available)
    return fail(errc::unavailable, "dataset '" + ds->name + "' is not available: " + ds->status);
  return kind->make(spec, *ds, paths);
}

} // namespace rookery::train

// make_trainer: the trainer a job spec names.
#include <nlohmann/json.hpp>

#include "trainers/autoencoder_trainer.hpp"
#include "trainers/classifier_trainer.hpp"
#include "trainers/gan_trainer.hpp"
#include "trainers/rnn_trainer.hpp"
#include "trainers/trainer.hpp"

namespace rookery::train {

result<std::unique_ptr<Trainer>> make_trainer(const nlohmann::json& spec,
                                              const data::dataset_paths& paths, uint64_t user_id,
                                              bool is_admin) {
  if (!spec.is_object())
    return fail(errc::bad_request, "the job spec must be a JSON object");
  auto t = spec.find("trainer");
  if (t == spec.end() || !t->is_string())
    return fail(errc::bad_request, "field 'trainer' (string) is required: one of classifier, gan, "
                                   "autoencoder, rnn");
  auto d = spec.find("dataset");
  if (d == spec.end() || !d->is_string())
    return fail(errc::bad_request, "field 'dataset' (string) is required: see GET /v1/datasets");
  if (auto h = spec.find("hyper"); h != spec.end() && !h->is_null() && !h->is_object())
    return fail(errc::bad_request, "'hyper' must be an object");
  auto ds = data::find_dataset(paths, d->get<std::string>(), user_id, is_admin);
  if (!ds)
    return ds.error();
  if (!ds->available)
    return fail(errc::unavailable, "dataset '" + ds->name + "' is not available: " + ds->status);
  const auto kind = t->get<std::string>();
  if (kind == "classifier")
    return make_classifier_trainer(spec, *ds, paths);
  if (kind == "gan")
    return make_gan_trainer(spec, *ds);
  if (kind == "autoencoder")
    return make_autoencoder_trainer(spec, *ds);
  if (kind == "rnn")
    return make_rnn_trainer(spec, *ds);
  return fail(errc::bad_request, "unknown trainer '" + kind + "'; known: " + known_trainers());
}

std::string known_trainers() {
  return "classifier, gan, autoencoder, rnn";
}

} // namespace rookery::train

// make_trainer: the trainer a job spec names. The GAN, autoencoder and RNN
// trainers register through their own make_* functions; each is referenced
// only when its source exists (the same weak-reference scheme as the zoo
// registry), so this file builds while a trainer is being written.
#include <nlohmann/json.hpp>

#include "trainers/classifier_trainer.hpp"
#include "trainers/trainer.hpp"

#if __has_include("trainers/gan_trainer.hpp")
#include "trainers/gan_trainer.hpp"
#define ROOKERY_HAS_GAN 1
#endif
#if __has_include("trainers/autoencoder_trainer.hpp")
#include "trainers/autoencoder_trainer.hpp"
#define ROOKERY_HAS_AE 1
#endif
#if __has_include("trainers/rnn_trainer.hpp")
#include "trainers/rnn_trainer.hpp"
#define ROOKERY_HAS_RNN 1
#endif

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
#ifdef ROOKERY_HAS_GAN
  if (kind == "gan")
    return make_gan_trainer(spec, *ds);
#endif
#ifdef ROOKERY_HAS_AE
  if (kind == "autoencoder")
    return make_autoencoder_trainer(spec, *ds);
#endif
#ifdef ROOKERY_HAS_RNN
  if (kind == "rnn")
    return make_rnn_trainer(spec, *ds);
#endif
  return fail(errc::bad_request, "unknown trainer '" + kind + "'; known: " + known_trainers());
}

std::string known_trainers() {
  std::string out = "classifier";
#ifdef ROOKERY_HAS_GAN
  out += ", gan";
#endif
#ifdef ROOKERY_HAS_AE
  out += ", autoencoder";
#endif
#ifdef ROOKERY_HAS_RNN
  out += ", rnn";
#endif
  return out;
}

} // namespace rookery::train

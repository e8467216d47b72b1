#include "actors/model_registry.hpp"

#include <caf/all.hpp>

#include "actors/replica.hpp"
#include "common/log.hpp"
#include "messages/registration.hpp"
#include "models/embedding_model.hpp"
#include "models/repository.hpp"
#include "pipelines/image.hpp"

namespace rookery {

namespace {

constexpr auto kLoadTimeout = std::chrono::minutes(5);

model_meta meta_of(const installed_model& m) {
  model_meta meta;
  meta.name = m.name;
  meta.version = m.version;
  meta.arch = m.arch;
  meta.format = m.format;
  meta.dim = m.dim;
  meta.status = "installed, not loaded yet";
  meta.weights = m.provenance;
  meta.builtin = m.builtin;
  if (auto p = parse_image_options(m.preprocess_json); p && !m.preprocess_json.empty())
    meta.input_shape = {p->channels, p->input_side(), p->input_side()};
  return meta;
}

/// The replica serving `name`, spawned (and loading) on first use.
caf::expected<replica_actor> replica_for(model_registry_actor::stateful_pointer<model_registry_state> self,
                                         const std::string& name) {
  auto& st = self->state;
  if (auto i = st.replicas.find(name); i != st.replicas.end())
    return i->second;
  auto m = find_installed_model(st.data_dir, name);
  if (!m)
    return to_error(errc::not_found, "no model '" + name + "' in the repository");
  model_spec spec;
  spec.name = m->name;
  spec.arch = m->arch;
  spec.weights_path = m->weights;
  spec.format = m->format;
  spec.options_json = m->options_json;
  spec.output = m->output;
  spec.threads = st.torch_threads;
  auto r = self->spawn<caf::detached + caf::linked>(replica_loading, spec, meta_of(*m),
                                                    st.max_batch);
  st.replicas.emplace(name, r);
  log::info("model registry: loading {} version {}", m->name, m->version);
  return r;
}

void forget(model_registry_actor::stateful_pointer<model_registry_state> self,
            const std::string& name) {
  auto i = self->state.replicas.find(name);
  if (i == self->state.replicas.end())
    return;
  self->unlink_from(i->second);
  self->send_exit(i->second, caf::exit_reason::user_shutdown);
  self->state.replicas.erase(i);
}

} // namespace

model_registry_actor::behavior_type
model_registry_impl(model_registry_actor::stateful_pointer<model_registry_state> self,
                    std::string data_dir, uint32_t max_batch, int torch_threads) {
  self->state.data_dir = std::move(data_dir);
  self->state.max_batch = max_batch;
  self->state.torch_threads = torch_threads;
  return {
    [=](infer_atom, const std::string& name, tensor_msg& input) -> caf::result<tensor_msg> {
      auto r = replica_for(self, name);
      if (!r)
        return r.error();
      return self->delegate(*r, infer_atom::value, std::move(input));
    },
    [=](info_atom, const std::string& name) -> caf::result<model_meta> {
      auto r = replica_for(self, name);
      if (!r)
        return r.error();
      return self->delegate(*r, info_atom::value);
    },
    [=](list_atom) {
      std::vector<model_meta> out;
      for (auto& m : list_installed_models(self->state.data_dir)) {
        auto meta = meta_of(m);
        if (self->state.replicas.count(m.name) != 0)
          meta.status = "loaded (or loading)";
        out.push_back(std::move(meta));
      }
      return out;
    },
    [=](caf::put_atom, const model_import& req) -> caf::result<model_meta> {
      auto rp = self->make_response_promise<model_meta>();
      auto data_dir = self->state.data_dir;
      // Loading weights to check them takes seconds: a one-shot detached actor.
      auto importer = self->spawn<caf::detached>([=](caf::event_based_actor* worker) -> caf::behavior {
        return {[=](const model_import& r) -> caf::result<model_meta> {
          worker->quit();
          import_request ir;
          ir.name = r.name;
          ir.arch = r.arch;
          ir.format = r.format;
          ir.weights = r.weights_path;
          ir.options_json = r.options_json;
          ir.preprocess_json = r.preprocess_json;
          auto m = import_model(data_dir, ir);
          if (!m)
            return to_error(m.error());
          return meta_of(*m);
        }};
      });
      self->request(importer, kLoadTimeout, req)
        .then(
          [=](model_meta& meta) mutable {
            forget(self, meta.name); // the next request loads the new version
            log::info("model registry: installed {} version {}", meta.name, meta.version);
            rp.deliver(meta);
          },
          [=](caf::error& e) mutable { rp.deliver(e); });
      return rp;
    },
    [=](caf::delete_atom, const std::string& name) -> caf::result<caf::ok_atom> {
      if (auto m = find_installed_model(self->state.data_dir, name); m && m->builtin)
        return to_error(remove_model(self->state.data_dir, name).error()); // forbidden; keep it loaded
      forget(self, name);
      if (auto st = remove_model(self->state.data_dir, name); !st)
        return to_error(st.error());
      return caf::ok_atom::value;
    },
  };
}

} // namespace rookery

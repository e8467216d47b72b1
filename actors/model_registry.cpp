#include "actors/model_registry.hpp"

#include <filesystem>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "actors/replica.hpp"
#include "common/crypto.hpp"
#include "common/job_files.hpp"
#include "common/log.hpp"
#include "messages/registration.hpp"
#include "models/embedding_model.hpp"
#include "models/repository.hpp"
#include "pipelines/image.hpp"

namespace fs = std::filesystem;

namespace rookery {

namespace {

constexpr auto kLoadTimeout = std::chrono::minutes(5);

using self_ptr = model_registry_actor::stateful_pointer<model_registry_state>;

model_meta meta_of(const installed_model& m) {
  model_meta meta;
  meta.name = m.name;
  meta.version = m.version;
  meta.arch = m.arch;
  meta.format = m.format;
  meta.dim = m.dim;
  meta.status = "installed, not loaded yet";
  meta.pretrained = true;
  meta.weights = m.provenance.empty() ? "repository model " + m.name + " version " + std::to_string(m.version)
                                      : m.provenance;
  meta.builtin = m.builtin;
  if (auto p = parse_image_options(m.preprocess_json); p && !m.preprocess_json.empty())
    meta.input_shape = {p->channels, p->input_side(), p->input_side()};
  return meta;
}

/// The pool serving `name`, spawned (and loading) on first use.
caf::expected<model_registry_state::pool*> pool_for(self_ptr self, const std::string& name) {
  auto& st = self->state;
  if (auto i = st.pools.find(name); i != st.pools.end())
    return &i->second;
  model_spec spec;
  model_meta meta;
  auto m = find_installed_model(st.settings.data_dir, name);
  if (m) {
    spec.name = m->name;
    spec.arch = m->arch;
    spec.weights_path = m->weights;
    spec.format = m->format;
    spec.options_json = m->options_json;
    spec.output = m->output;
    spec.optimize = m->optimize;
    meta = meta_of(*m);
    log::info("model registry: loading {} version {} ({} replicas)", m->name, m->version,
              st.settings.replicas);
  } else if (st.settings.allow_untrained && (embedding_model::can_create_untrained(name)
                                              || st.settings.stand_in.count(name) != 0)) {
    // Seeded random weights exist for the ResNets; any other model (the
    // built-in nsfwjs networks before scripts/setup.sh converted them) is
    // stood in for by an untrained ResNet-18, and says so.
    const bool same = embedding_model::can_create_untrained(name);
    spec.name = name;
    spec.arch = same ? name : "resnet18";
    spec.format = "untrained";
    meta.name = name;
    meta.arch = spec.arch;
    meta.format = "untrained";
    meta.pretrained = false;
    meta.weights = same ? "none: seeded random initialisation (no weights installed)"
                        : "none: an untrained resnet18 stands in for '" + name
                            + "' (not installed; scripts/setup.sh installs the built-in models)";
    log::warn("model registry: no weights for {}; serving UNTRAINED random weights "
              "(embeddings are not meaningful)", name);
  } else {
    return to_error(errc::not_found, "no model '" + name + "' in the repository");
  }
  spec.threads = st.settings.torch_threads;
  if (!st.settings.optimize)
    spec.optimize = false;
  model_registry_state::pool p;
  p.meta = meta;
  for (uint32_t i = 0; i < std::max<uint32_t>(1, st.settings.replicas); ++i)
    p.replicas.push_back(self->spawn<caf::detached + caf::linked>(replica_loading, spec, meta,
                                                                  st.settings.max_batch));
  return &st.pools.emplace(name, std::move(p)).first->second;
}

void forget(self_ptr self, const std::string& name) {
  auto i = self->state.pools.find(name);
  if (i == self->state.pools.end())
    return;
  for (auto& r : i->second.replicas) {
    self->unlink_from(r);
    self->send_exit(r, caf::exit_reason::user_shutdown);
  }
  self->state.pools.erase(i);
}

} // namespace

model_registry_actor::behavior_type
model_registry_impl(model_registry_actor::stateful_pointer<model_registry_state> self,
                    model_registry_settings settings) {
  self->state.settings = std::move(settings);
  return {
    [=](infer_atom, const std::string& name, tensor_msg& input) -> caf::result<tensor_msg> {
      auto p = pool_for(self, name);
      if (!p)
        return p.error();
      auto& pool = **p;
      auto r = pool.replicas[pool.next++ % pool.replicas.size()];
      return self->delegate(r, infer_atom::value, std::move(input));
    },
    [=](info_atom, const std::string& name) -> caf::result<model_meta> {
      auto p = pool_for(self, name);
      if (!p)
        return p.error();
      return self->delegate((*p)->replicas.front(), info_atom::value);
    },
    [=](caf::get_atom, const std::string& name) -> caf::result<model_pool> {
      auto p = pool_for(self, name);
      if (!p)
        return p.error();
      model_pool out;
      for (auto& r : (*p)->replicas)
        out.replicas.push_back(caf::actor_cast<caf::actor>(r));
      out.meta = (*p)->meta;
      return out;
    },
    [=](list_atom) -> caf::result<std::vector<model_meta>> {
      // Installed models; a loaded one as its replica reports it (ready,
      // pretrained, input shape), asked without blocking the registry.
      struct gather {
        std::vector<model_meta> out;
        size_t left = 0;
      };
      auto g = std::make_shared<gather>();
      std::vector<std::pair<size_t, replica_actor>> ask;
      for (auto& m : list_installed_models(self->state.settings.data_dir)) {
        auto meta = meta_of(m);
        if (auto p = self->state.pools.find(m.name); p != self->state.pools.end()) {
          meta.status = "loading, or busy (its replica did not answer within 2 s)";
          ask.emplace_back(g->out.size(), p->second.replicas.front());
        }
        g->out.push_back(std::move(meta));
      }
      if (ask.empty())
        return g->out;
      g->left = ask.size();
      auto rp = self->make_response_promise<std::vector<model_meta>>();
      for (auto& [i, r] : ask) {
        auto finish = [=]() mutable {
          if (--g->left == 0)
            rp.deliver(std::move(g->out));
        };
        self->request(r, std::chrono::seconds(2), info_atom::value)
          .then(
            [=](model_meta& m) mutable {
              auto& have = g->out[i];
              if (m.version == have.version) { // not an older version still serving
                m.builtin = have.builtin;
                have = std::move(m);
              }
              finish();
            },
            [=](caf::error&) mutable { finish(); });
      }
      return rp;
    },
    [=](caf::put_atom, const model_import& req) -> caf::result<model_meta> {
      auto rp = self->make_response_promise<model_meta>();
      auto data_dir = self->state.settings.data_dir;
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
          // Bytes forwarded by a gateway: spooled under <data>/uploads (a
          // crash leaves it to the start-up clean-up), removed after.
          std::string spool;
          if (ir.weights.empty()) {
            if (r.weights.empty())
              return to_error(errc::bad_request, "the model import carries no weights");
            spool = (fs::path(data_dir) / "uploads" / ("forwarded_" + crypto::random_id("w_"))).string();
            if (!jobs::write_atomically(spool, r.weights))
              return to_error(errc::internal, "cannot spool the forwarded weights");
            ir.weights = spool;
          }
          auto m = import_model(data_dir, ir);
          if (!spool.empty()) {
            std::error_code ec;
            fs::remove(spool, ec);
          }
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
      if (auto m = find_installed_model(self->state.settings.data_dir, name); m && m->builtin)
        return to_error(remove_model(self->state.settings.data_dir, name).error()); // forbidden; keep it loaded
      forget(self, name);
      if (auto st = remove_model(self->state.settings.data_dir, name); !st)
        return to_error(st.error());
      return caf::ok_atom::value;
    },
  };
}

} // namespace rookery

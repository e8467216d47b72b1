#include "actors/embed_service.hpp"

#include <filesystem>
#include <set>
#include <fstream>
#include <sstream>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "actors/replica.hpp"
#include "common/inflight.hpp"
#include "common/json_limits.hpp"
#include "common/log.hpp"
#include "messages/registration.hpp"
#include "models/repository.hpp"
#include "pipelines/pipeline.hpp"
#include "pipelines/series_model.hpp"

namespace fs = std::filesystem;

namespace rookery {

namespace {

/// A pipeline's preprocessing stage: a detached actor that runs the
/// operators before the model, sends each tensor to the model's shared
/// replica pool, and runs the operators after the model on the answers.
using stage_actor = caf::typed_actor<caf::replies_to<embed_request>::with<embed_result>>;

struct stage_state {
  static inline const char* name = "pipeline_stage";
  std::shared_ptr<const compiled_pipeline> pipeline;
  std::vector<replica_actor> replicas;
  size_t next = 0;
};

replica_actor next_replica(stage_state& st) {
  return st.replicas[st.next++ % st.replicas.size()];
}

stage_actor::behavior_type pipeline_stage(stage_actor::stateful_pointer<stage_state> self,
                                          std::shared_ptr<const compiled_pipeline> pipeline,
                                          std::vector<replica_actor> replicas,
                                          model_registry_actor registry,
                                          std::chrono::milliseconds timeout) {
  self->state.pipeline = std::move(pipeline);
  self->state.replicas = std::move(replicas);
  for (auto& r : self->state.replicas)
    self->monitor(r);
  // A replica that goes away (its model was re-imported, or it failed): take
  // the model's pool again, which the registry re-creates with the newest
  // version. Requests meanwhile use the replicas that are left.
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    st.replicas.erase(std::remove_if(st.replicas.begin(), st.replicas.end(),
                                     [&](const replica_actor& r) { return r.address() == dm.source; }),
                      st.replicas.end());
    self->request(registry, timeout, caf::get_atom::value, st.pipeline->model())
      .then(
        [=](model_pool& pool) {
          auto& st = self->state;
          for (auto& a : pool.replicas) {
            auto r = caf::actor_cast<replica_actor>(a);
            bool known = false;
            for (auto& have : st.replicas)
              known = known || have == r;
            if (!known) {
              self->monitor(r);
              st.replicas.push_back(r);
            }
          }
        },
        [=](caf::error& e) {
          log::error("pipeline {}: cannot renew the pool of model {}: {}",
                     self->state.pipeline->def().name, self->state.pipeline->model(),
                     to_failure(e).message);
        });
  });
  return {
    [=](embed_request& req) -> caf::result<embed_result> {
      auto guard = std::make_shared<inflight::guard>(inflight::embeds()); // until answered
      auto& st = self->state;
      if (st.pipeline->own_model()) { // its operator's own networks: the whole chain, here
        const auto t0 = std::chrono::steady_clock::now();
        auto a = st.pipeline->run_inline(std::move(req.data), req.mime);
        if (!a)
          return to_error(a.error());
        embed_result r;
        r.pipeline = st.pipeline->def().name;
        r.mime = req.mime;
        r.model = st.pipeline->own_model()->name;
        r.dim = static_cast<uint32_t>(a->embedding.size());
        r.embedding = std::move(a->embedding);
        r.extra_json = std::move(a->extra_json);
        r.compute_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        return r;
      }
      if (st.replicas.empty())
        return to_error(errc::unavailable, "model '" + st.pipeline->model() + "' is being replaced; retry");
      auto prepared = st.pipeline->before_model(std::move(req.data), req.mime);
      if (!prepared)
        return to_error(prepared.error());
      auto state = *prepared;
      auto inputs = st.pipeline->take_inputs(*state);
      const size_t n = inputs.data.size();
      struct gather {
        std::vector<std::vector<float>> features;
        size_t left = 0;
        bool failed = false;
        double queue_ms = 0, compute_ms = 0;
      };
      auto g = std::make_shared<gather>();
      g->features.resize(n);
      g->left = n;
      auto rp = self->make_response_promise<embed_result>();
      auto pipeline = st.pipeline;
      auto mime = req.mime;
      for (size_t i = 0; i < n; ++i) {
        tensor_msg t;
        t.shape = {inputs.c, inputs.h, inputs.w};
        t.data = std::move(inputs.data[i]);
        self->request(next_replica(st), timeout, embed_atom::value, std::move(t))
          .then(
            [=](embedding_msg& m) mutable {
              if (g->failed)
                return;
              g->features[i] = std::move(m.values);
              g->queue_ms = std::max(g->queue_ms, m.queue_ms);
              g->compute_ms += m.compute_ms / std::max<uint32_t>(1, m.batch);
              if (--g->left > 0)
                return;
              auto held = guard;
              auto a = pipeline->after_model(*state, std::move(g->features));
              if (!a)
                { rp.deliver(to_error(a.error())); return; }
              embed_result r;
              r.pipeline = pipeline->def().name;
              r.mime = mime;
              r.model = pipeline->model();
              r.dim = static_cast<uint32_t>(a->embedding.size());
              r.embedding = std::move(a->embedding);
              r.extra_json = std::move(a->extra_json);
              r.queue_ms = g->queue_ms;
              r.compute_ms = g->compute_ms;
              rp.deliver(std::move(r));
            },
            [=](caf::error& e) mutable {
              if (g->failed)
                return;
              g->failed = true;
              rp.deliver(e);
            });
      }
      return rp;
    },
  };
}

struct pipeline_entry {
  pipeline_info info;
  std::shared_ptr<const compiled_pipeline> compiled;
  std::vector<stage_actor> stages;
  size_t next = 0;
};

struct service_state {
  static inline const char* name = "embed_service";
  std::map<std::string, pipeline_entry> pipelines;
  std::map<std::string, std::string> mime_overrides; // from the configuration: win over pipelines'
  std::string node;
};

std::string stored_dir(const config& cfg) {
  return stored_pipelines_dir(cfg.data);
}

/// The operators' limits (the uploads directory, where videos are spooled,
/// is made once at start: spawn_embed_service).
pipeline_limits limits_of(const config& cfg) {
  pipeline_limits l;
  l.max_pixels = cfg.max_image_pixels;
  l.temp_dir = (fs::path(cfg.data) / "uploads").string();
  l.torch_threads = static_cast<int>(cfg.torch_threads);
  return l;
}

pipeline_info info_of(const pipeline_def& def, const compiled_pipeline* c) {
  pipeline_info info;
  info.name = def.name;
  info.kind = "pipeline";
  info.mime_types = def.mime_types;
  info.builtin = def.builtin;
  if (c) {
    info.model = c->model();
    info.ops_json = c->describe_json();
    auto ops = nlohmann::json::parse(info.ops_json, nullptr, false);
    if (ops.is_array() && !ops.empty() && ops[0].is_object()) {
      const auto first = ops[0].value("op", "");
      info.kind = first == "decode_video" ? "video" : first == "decode_series" ? "timeseries"
                  : first == "decode_text" ? "text" : "image";
      for (auto& o : ops)
        if (o.value("op", "") == "faces")
          info.kind = "faces";
    }
    if (auto* own = c->own_model()) { // served by its operator's own computation, not the registry
      info.model = own->name;
      info.dim = own->dim;
      info.ready = own->ready;
      info.pretrained = own->ready;
      info.weights = own->weights;
      info.status = own->status;
    }
  }
  return info;
}

/// Fills `info` from the model's metadata once its replicas have loaded.
void apply_meta(pipeline_info& info, const model_meta& m, size_t replicas) {
  info.ready = m.ready;
  info.pretrained = m.pretrained;
  info.weights = m.weights;
  info.dim = m.dim;
  info.replicas = static_cast<uint32_t>(replicas);
  info.inference_json = m.inference_json;
  info.status = m.ready ? (m.pretrained ? "serving " + m.name + " (" + m.weights + ")"
                                        : "serving UNTRAINED random weights for " + m.name
                                            + ": embeddings are not meaningful. Install weights "
                                              "with `rookery models import`.")
                        : "model " + m.name + " is not ready: " + m.status;
}

/// The operators, stored where a restart finds them (run-time pipelines).
status store_def(const config& cfg, const pipeline_def& def) {
  std::error_code ec;
  fs::create_directories(stored_dir(cfg), ec);
  auto path = fs::path(stored_dir(cfg)) / (def.name + ".json");
  auto tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << to_json_text(def) << "\n";
    if (!out)
      return fail(errc::internal, "cannot store pipeline " + def.name);
  }
  fs::rename(tmp, path, ec);
  if (ec)
    return fail(errc::internal, "cannot store pipeline " + def.name + ": " + ec.message());
  return {};
}

std::vector<stage_actor> spawn_stages(caf::actor_system& sys, const config& cfg,
                                      std::shared_ptr<const compiled_pipeline> c, const model_pool& pool,
                                      model_registry_actor registry) {
  std::vector<replica_actor> replicas;
  for (auto& a : pool.replicas)
    replicas.push_back(caf::actor_cast<replica_actor>(a));
  std::vector<stage_actor> stages;
  auto timeout = std::chrono::milliseconds(cfg.request_timeout_ms);
  for (uint32_t i = 0; i < std::max<uint32_t>(1, cfg.decoders); ++i)
    stages.push_back(sys.spawn<caf::detached>(pipeline_stage, c, replicas, registry, timeout));
  return stages;
}

void stop(std::vector<stage_actor>& stages) {
  for (auto& s : stages)
    caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
  stages.clear();
}

using service_ptr = embed_service_actor::stateful_pointer<service_state>;

/// Adds (or replaces) pipeline `def` without blocking the service: the
/// model's pool comes from the registry, whose replicas load on their own
/// threads; `done` gets the pipeline's info once the model answered.
void add_pipeline(service_ptr self, const config& cfg, model_registry_actor registry,
                  pipeline_def def, std::function<void(caf::expected<pipeline_info>)> done) {
  auto c = compiled_pipeline::compile(def, limits_of(cfg));
  if (!c)
    return done(to_error(c.error()));
  auto compiled = *c;
  if (auto* own = compiled->own_model()) { // no model to wait for
    if (!own->ready)
      return done(to_error(errc::unavailable, "pipeline '" + def.name + "' cannot serve: " + own->status));
    pipeline_entry e;
    e.compiled = compiled;
    e.info = info_of(def, compiled.get());
    e.info.replicas = std::max<uint32_t>(1, cfg.decoders);
    e.stages = spawn_stages(self->system(), cfg, compiled, model_pool{}, registry);
    auto& st = self->state;
    if (auto old = st.pipelines.find(def.name); old != st.pipelines.end())
      stop(old->second.stages);
    auto info = e.info;
    st.pipelines[def.name] = std::move(e);
    log::info("pipeline {}: added, {}", def.name, info.status);
    return done(info);
  }
  auto load_timeout = std::chrono::milliseconds(cfg.import_timeout_ms);
  self->request(registry, load_timeout, caf::get_atom::value, compiled->model())
    .then(
      [=](model_pool& pool) mutable {
        auto first = caf::actor_cast<replica_actor>(pool.replicas.front());
        self->request(first, load_timeout, info_atom::value)
          .then(
            [=](model_meta& meta) mutable {
              if (!meta.ready)
                return done(to_error(errc::unprocessable, "model '" + meta.name + "' cannot serve: "
                                                            + meta.status));
              pipeline_entry e;
              e.compiled = compiled;
              e.info = info_of(def, compiled.get());
              apply_meta(e.info, meta, pool.replicas.size());
              e.stages = spawn_stages(self->system(), cfg, compiled, pool, registry);
              auto& st = self->state;
              if (auto old = st.pipelines.find(def.name); old != st.pipelines.end())
                stop(old->second.stages);
              auto info = e.info;
              st.pipelines[def.name] = std::move(e);
              log::info("pipeline {}: added, {}", def.name, info.status);
              done(info);
            },
            [=](caf::error& err) mutable { done(err); });
      },
      [=](caf::error& err) mutable { done(err); });
}

embed_service_actor::behavior_type
service_impl(service_ptr self, std::map<std::string, pipeline_entry> pipelines, std::string node,
             config cfg, model_registry_actor registry, trainer_host_actor trainer) {
  self->state.pipelines = std::move(pipelines);
  self->state.mime_overrides = cfg.mime_table;
  self->state.node = std::move(node);
  // Stages die with the service. The hook runs after the state is destroyed:
  // it gets its own list, refreshed as pipelines come and go.
  auto all_stages = std::make_shared<std::vector<stage_actor>>();
  auto remember = [=] {
    all_stages->clear();
    for (auto& [n, e] : self->state.pipelines)
      all_stages->insert(all_stages->end(), e.stages.begin(), e.stages.end());
  };
  remember();
  self->attach_functor([all_stages](const caf::error&) {
    for (auto& s : *all_stages)
      caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
  });
  auto pick = [=](const std::string& mime) -> std::string {
    auto& st = self->state;
    if (auto i = st.mime_overrides.find(mime); i != st.mime_overrides.end() && st.pipelines.count(i->second))
      return i->second;
    // Pipelines added at run time win over built-ins for the same type.
    std::string found;
    for (auto& [name, e] : st.pipelines)
      for (auto& m : e.info.mime_types)
        if (m == mime && (found.empty() || (st.pipelines.at(found).info.builtin && !e.info.builtin)))
          found = name;
    return found;
  };
  return {
    [=](embed_request& req) -> caf::result<embed_result> {
      auto& st = self->state;
      std::string name = req.pipeline;
      if (name.empty()) {
        name = pick(req.mime);
        if (name.empty()) {
          std::set<std::string> supported;
          for (auto& [n, e] : st.pipelines)
            supported.insert(e.info.mime_types.begin(), e.info.mime_types.end());
          std::string list;
          for (auto& m : supported)
            list += (list.empty() ? "" : ", ") + m;
          return to_error(errc::unsupported_media,
                          "no pipeline embeds '" + req.mime + "'; supported types: " + list);
        }
      }
      auto p = st.pipelines.find(name);
      if (p == st.pipelines.end())
        return to_error(errc::not_found, "unknown pipeline '" + name + "'");
      auto& entry = p->second;
      if (!entry.info.ready || entry.stages.empty())
        return to_error(errc::unavailable, "pipeline '" + name + "' is not ready: " + entry.info.status);
      req.pipeline = name;
      auto stage = entry.stages[entry.next++ % entry.stages.size()];
      return self->delegate(stage, std::move(req));
    },
    [=](list_atom) {
      std::vector<pipeline_info> out;
      for (auto& [name, e] : self->state.pipelines)
        out.push_back(e.info);
      return out;
    },
    [=](caf::put_atom, const std::string& name, const std::string& model) -> caf::result<pipeline_info> {
      // A registered model: an image pipeline with the model's own preprocessing.
      auto installed = find_installed_model(cfg.data, model);
      if (!installed)
        return to_error(installed.error());
      auto ops = image_ops_for_model(model, installed->preprocess_json);
      if (!ops)
        return to_error(ops.error());
      pipeline_def def;
      def.name = name;
      def.ops_json = *ops;
      auto rp = self->make_response_promise<pipeline_info>();
      add_pipeline(self, cfg, registry, def, [=](caf::expected<pipeline_info> r) mutable {
        if (!r)
          { rp.deliver(r.error()); return; }
        if (auto s = store_def(cfg, def); !s)
          log::error("pipeline {}: {}", name, s.error().message);
        remember();
        rp.deliver(*r);
      });
      return rp;
    },
    [=](caf::put_atom, const pipeline_spec_msg& spec) -> caf::result<pipeline_info> {
      pipeline_def def;
      def.name = spec.name;
      def.ops_json = spec.ops_json;
      def.mime_types = spec.mime_types;
      if (auto i = self->state.pipelines.find(def.name);
          i != self->state.pipelines.end() && i->second.info.builtin)
        return to_error(errc::conflict, "'" + def.name + "' is a built-in pipeline; choose another name");
      auto rp = self->make_response_promise<pipeline_info>();
      add_pipeline(self, cfg, registry, def, [=](caf::expected<pipeline_info> r) mutable {
        if (!r)
          { rp.deliver(r.error()); return; }
        if (auto s = store_def(cfg, def); !s)
          { rp.deliver(to_error(s.error())); return; }
        remember();
        rp.deliver(*r);
      });
      return rp;
    },
    [=](caf::delete_atom, const std::string& name) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      auto i = st.pipelines.find(name);
      if (i == st.pipelines.end())
        return to_error(errc::not_found, "unknown pipeline '" + name + "'");
      if (i->second.info.builtin)
        return to_error(errc::forbidden, "'" + name + "' is a built-in pipeline and cannot be removed");
      std::error_code ec;
      fs::remove(fs::path(stored_dir(cfg)) / (name + ".json"), ec);
      stop(i->second.stages);
      st.pipelines.erase(i);
      remember();
      log::info("pipeline {}: removed", name);
      return caf::ok_atom::value;
    },
    [=](caf::get_atom, model_atom) -> caf::result<model_registry_actor> {
      if (!registry)
        return to_error(errc::unavailable, "this node serves no models");
      return registry;
    },
    [=](caf::get_atom, job_atom) -> caf::result<trainer_host_actor> {
      if (!trainer)
        return to_error(errc::unavailable, "this node hosts no training for gateways");
      return trainer;
    },
  };
}

} // namespace

result<embed_service_actor> spawn_embed_service(caf::actor_system& sys, const config& cfg,
                                                std::vector<caf::actor>& spawned,
                                                model_registry_actor registry,
                                                trainer_host_actor trainer) {
  // Series models that time-series jobs registered (series_model operator).
  pipe::set_series_models_dir((fs::path(cfg.data) / "series-models").string());
  pipe::set_text_models_dir((fs::path(cfg.data) / "text-models").string());
  // Every definition: built-ins, then the configuration's model pipelines,
  // then what admins added at run time (stored under <data>/pipelines).
  auto defs = node_pipeline_defs(cfg.data, cfg.pipelines);

  // At start the node waits for its pipelines' models (it is not listening
  // yet); at run time the same steps run without blocking (add_pipeline).
  caf::scoped_actor self{sys};
  std::map<std::string, pipeline_entry> pipelines;
  const auto load_timeout = std::chrono::milliseconds(cfg.import_timeout_ms);
  std::error_code ec;
  fs::create_directories(limits_of(cfg).temp_dir, ec); // videos are spooled there
  for (auto& [name, def] : defs) {
    pipeline_entry e;
    auto c = compiled_pipeline::compile(def, limits_of(cfg));
    if (!c) {
      e.info = info_of(def, nullptr);
      e.info.status = "invalid pipeline: " + c.error().message;
      log::error("pipeline {}: {}", name, e.info.status);
      pipelines[name] = std::move(e);
      continue;
    }
    e.compiled = *c;
    e.info = info_of(def, e.compiled.get());
    if (e.compiled->own_model()) { // its operator's networks: nothing to wait for
      if (e.info.ready) {
        e.info.replicas = std::max<uint32_t>(1, cfg.decoders);
        e.stages = spawn_stages(sys, cfg, e.compiled, model_pool{}, registry);
        log::info("pipeline {}: {}", name, e.info.status);
      } else {
        log::warn("pipeline {} is not ready: {}", name, e.info.status);
      }
      pipelines[name] = std::move(e);
      continue;
    }
    caf::expected<model_pool> pool = caf::make_error(caf::sec::bad_function_call);
    self->request(registry, load_timeout, caf::get_atom::value, e.compiled->model())
      .receive([&](model_pool& p) { pool = std::move(p); },
               [&](caf::error& err) { pool = std::move(err); });
    if (!pool) {
      e.info.status = "model '" + e.compiled->model() + "' is not available: " + to_failure(pool.error()).message;
      log::error("pipeline {}: {}", name, e.info.status);
      pipelines[name] = std::move(e);
      continue;
    }
    auto first = caf::actor_cast<replica_actor>(pool->replicas.front());
    model_meta meta;
    self->request(first, load_timeout, info_atom::value)
      .receive([&](model_meta& m) { meta = std::move(m); },
               [&](caf::error& err) { meta.status = to_failure(err).message; });
    apply_meta(e.info, meta, pool->replicas.size());
    if (meta.ready) {
      e.stages = spawn_stages(sys, cfg, e.compiled, *pool, registry);
      log::info("pipeline {}: {}", name, e.info.status);
      if (!meta.pretrained)
        log::warn("pipeline {}: {}", name, e.info.status);
    } else {
      log::error("pipeline {} is not ready: {}", name, e.info.status);
    }
    pipelines[name] = std::move(e);
  }
  auto node = cfg.cluster_host + ":" + std::to_string(cfg.cluster_port);
  return sys.spawn(service_impl, std::move(pipelines), node, cfg, registry, trainer);
}

} // namespace rookery

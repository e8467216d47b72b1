#include "actors/embed_service.hpp"

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "actors/replica.hpp"
#include "common/inflight.hpp"
#include "common/log.hpp"
#include "messages/registration.hpp"
#include "models/embedding_model.hpp"
#include "pipelines/image.hpp"

namespace rookery {

namespace {

/// Decoder: a detached actor that preprocesses and forwards to a replica.
using decoder_actor = caf::typed_actor<caf::replies_to<embed_request>::with<embed_result>>;

struct pipeline_entry {
  pipeline_info info;
  std::vector<decoder_actor> decoders;
  size_t next = 0;
  std::vector<caf::actor> owned; // pipelines added at run time: their replicas and decoders
};

struct service_state {
  static inline const char* name = "embed_service";
  std::map<std::string, pipeline_entry> pipelines;
  std::map<std::string, std::string> mime_table;
  std::string node;
};

struct decoder_state {
  static inline const char* name = "image_decoder";
  std::vector<replica_actor> replicas;
  size_t next = 0;
};

decoder_actor::behavior_type
image_decoder(decoder_actor::stateful_pointer<decoder_state> self,
              std::vector<replica_actor> replicas, image_options opts, pipeline_info info,
              std::chrono::milliseconds timeout) {
  self->state.replicas = std::move(replicas);
  return {
    [=](embed_request& req) -> caf::result<embed_result> {
      auto guard = std::make_shared<inflight::guard>(inflight::embeds()); // until answered
      auto img = preprocess_image(req.data, opts);
      if (!img)
        return to_error(img.error());
      tensor_msg t;
      t.shape = {img->c, img->h, img->w};
      t.data = std::move(img->data);
      auto& st = self->state;
      auto replica = st.replicas[st.next++ % st.replicas.size()];
      auto rp = self->make_response_promise<embed_result>();
      self->request(replica, timeout, embed_atom::value, std::move(t))
        .then(
          [=](embedding_msg& m) mutable {
            auto held = guard;
            embed_result r;
            r.pipeline = info.name;
            r.mime = req.mime;
            r.model = info.model;
            r.dim = static_cast<uint32_t>(m.values.size());
            r.embedding = std::move(m.values);
            r.queue_ms = m.queue_ms;
            r.compute_ms = m.compute_ms;
            rp.deliver(std::move(r));
          },
          [=](caf::error& e) mutable { rp.deliver(e); });
      return rp;
    },
  };
}

pipeline_entry make_image_pipeline(caf::actor_system& sys, const config& cfg,
                                   const std::string& name, const std::string& model,
                                   std::vector<caf::actor>& spawned);

embed_service_actor::behavior_type
service_impl(embed_service_actor::stateful_pointer<service_state> self,
             std::map<std::string, pipeline_entry> pipelines,
             std::map<std::string, std::string> mime_table, std::string node, config cfg) {
  self->state.pipelines = std::move(pipelines);
  // Pipelines added at run time die with the service. The hook runs after
  // the state is destroyed: it gets its own list.
  auto owned = std::make_shared<std::vector<caf::actor>>();
  self->attach_functor([owned](const caf::error&) {
    for (auto& a : *owned)
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  });
  self->state.mime_table = std::move(mime_table);
  self->state.node = std::move(node);
  return {
    [=](embed_request& req) -> caf::result<embed_result> {
      auto& st = self->state;
      std::string name = req.pipeline;
      if (name.empty()) {
        auto i = st.mime_table.find(req.mime);
        if (i == st.mime_table.end()) {
          std::string supported;
          for (auto& [mime, p] : st.mime_table)
            supported += (supported.empty() ? "" : ", ") + mime;
          return to_error(errc::unsupported_media, "no pipeline embeds '" + req.mime
                                                     + "'; supported types: " + supported);
        }
        name = i->second;
      }
      auto p = st.pipelines.find(name);
      if (p == st.pipelines.end())
        return to_error(errc::not_found, "unknown pipeline '" + name + "'");
      auto& entry = p->second;
      if (!entry.info.ready)
        return to_error(errc::unavailable, "pipeline '" + name + "' is not ready: "
                                             + entry.info.status);
      req.pipeline = name;
      auto dec = entry.decoders[entry.next++ % entry.decoders.size()];
      return self->delegate(dec, std::move(req));
    },
    [=](list_atom) {
      std::vector<pipeline_info> out;
      for (auto& [name, e] : self->state.pipelines)
        out.push_back(e.info);
      return out;
    },
    [=](caf::put_atom, const std::string& name,
        const std::string& model) -> caf::result<pipeline_info> {
      // Loads the model here, on this actor's thread: the models trainers
      // export are small (milliseconds); registering a large model this way
      // delays other pipeline requests for as long as the load takes.
      std::vector<caf::actor> spawned;
      auto entry = make_image_pipeline(self->system(), cfg, name, model, spawned);
      if (!entry.info.ready) {
        for (auto& a : spawned)
          caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
        return to_error(errc::unprocessable, "cannot serve model '" + model + "': "
                                               + entry.info.status);
      }
      owned->insert(owned->end(), spawned.begin(), spawned.end());
      entry.owned = std::move(spawned);
      auto& st = self->state;
      if (auto old = st.pipelines.find(name); old != st.pipelines.end()) {
        for (auto& a : old->second.owned) // the replaced version's actors
          caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
        st.pipelines.erase(old);
      }
      auto info = entry.info;
      st.pipelines.emplace(name, std::move(entry));
      log::info("pipeline {}: added, {}", name, info.status);
      return info;
    },
  };
}

} // namespace

namespace {

/// One image pipeline backed by repository model `model`.
pipeline_entry make_image_pipeline(caf::actor_system& sys, const config& cfg,
                                   const std::string& name, const std::string& model,
                                   std::vector<caf::actor>& spawned) {
  pipeline_entry image;
  auto& info = image.info;
  info.name = name;
  info.kind = "image";
  for (auto& [mime, p] : cfg.mime_table)
    if (p == name)
      info.mime_types.push_back(mime);
  info.model = model;

  std::vector<std::shared_ptr<embedding_model>> models;
  auto installed = find_installed_model(cfg.data, model);
  if (installed) {
    model_spec spec;
    spec.name = installed->name;
    spec.arch = installed->arch;
    spec.weights_path = installed->weights;
    spec.format = installed->format;
    spec.options_json = installed->options_json;
    spec.threads = static_cast<int>(cfg.torch_threads);
    for (uint32_t i = 0; i < cfg.replicas; ++i) {
      auto m = embedding_model::load(spec);
      if (!m) {
        log::error("pipeline {}: cannot load {} v{}: {}", name, installed->name,
                   installed->version, m.error().message);
        info.status = "weights failed to load: " + m.error().message;
        models.clear();
        break;
      }
      models.emplace_back(std::move(m.value()));
    }
    if (!models.empty()) {
      info.pretrained = true;
      info.weights = installed->provenance;
      info.status = "serving " + std::string(installed->builtin ? "built-in " : "") + installed->name
                    + " version " + std::to_string(installed->version) + " (" + installed->arch
                    + ", " + installed->format
                    + (installed->provenance.empty() ? "" : ", weights " + installed->provenance)
                    + ") from " + installed->weights;
      log::info("pipeline {}: {}", name, info.status);
    }
  } else {
    info.status = "no weights installed for model '" + model + "' ("
                  + installed.error().message + ")";
  }
  if (models.empty() && cfg.allow_untrained && !installed) {
    // Random weights exist for the ResNets only; any other model (the default
    // built-in nsfwjs_inception_v3 before scripts/setup.sh converted it) falls
    // back to an untrained ResNet-18.
    std::string untrained = model;
    for (uint32_t i = 0; i < cfg.replicas; ++i) {
      auto m = embedding_model::create_untrained(untrained);
      if (!m && i == 0 && untrained != "resnet18") {
        untrained = "resnet18";
        info.status += "; scripts/setup.sh installs the built-in models";
        m = embedding_model::create_untrained(untrained);
      }
      if (!m) {
        info.status += "; no untrained fallback: " + m.error().message;
        models.clear();
        break;
      }
      models.emplace_back(std::move(m.value()));
    }
    if (!models.empty()) {
      info.status += "; serving UNTRAINED random weights"
                     + (untrained == model ? std::string() : " of " + untrained)
                     + ": embeddings are not meaningful. Install weights with `rookery models import`.";
      log::warn("pipeline {}: {}", name, info.status);
    }
  }
  if (models.empty()) {
    log::error("pipeline {} is not ready: {}", name, info.status);
    return image;
  }
  info.ready = true;
  info.dim = models.front()->dim();
  info.replicas = static_cast<uint32_t>(models.size());
  image_options opts;
  if (installed && !installed->preprocess_json.empty()) {
    // The preprocessing the model was trained with (e.g. 28x28 greyscale).
    auto p = parse_image_options(installed->preprocess_json);
    if (p)
      opts = *p;
    else
      log::warn("pipeline {}: ignoring the model's preprocess settings: {}", name,
                p.error().message);
  }
  opts.max_pixels = cfg.max_image_pixels;
  const std::vector<int64_t> input_shape = {opts.channels == 1 ? 1 : 3, opts.input_side(),
                                            opts.input_side()};
  std::vector<replica_actor> replicas;
  model_meta meta;
  meta.name = model;
  meta.version = installed ? installed->version : 0;
  meta.arch = installed ? installed->arch : model;
  meta.format = installed ? installed->format : "untrained";
  meta.input_shape = input_shape;
  meta.dim = info.dim;
  meta.ready = true;
  meta.status = info.status;
  meta.weights = info.weights;
  meta.builtin = installed && installed->builtin;
  for (auto& m : models) {
    replicas.push_back(sys.spawn<caf::detached>(replica_impl, m, meta, cfg.max_batch));
    spawned.push_back(caf::actor_cast<caf::actor>(replicas.back()));
  }
  auto timeout = std::chrono::milliseconds(cfg.request_timeout_ms);
  for (uint32_t i = 0; i < cfg.decoders; ++i) {
    image.decoders.push_back(sys.spawn<caf::detached>(image_decoder, replicas, opts, info, timeout));
    spawned.push_back(caf::actor_cast<caf::actor>(image.decoders.back()));
  }
  return image;
}

} // namespace

result<embed_service_actor> spawn_embed_service(caf::actor_system& sys, const config& cfg,
                                                std::vector<caf::actor>& spawned) {
  std::map<std::string, pipeline_entry> pipelines;
  for (auto& [name, model] : cfg.pipelines)
    pipelines.emplace(name, make_image_pipeline(sys, cfg, name, model, spawned));
  auto node = cfg.cluster_host + ":" + std::to_string(cfg.cluster_port);
  return sys.spawn(service_impl, std::move(pipelines), cfg.mime_table, node, cfg);
}

} // namespace rookery

#include "actors/replica.hpp"

#include <caf/all.hpp>

#include "common/log.hpp"
#include "common/metrics.hpp"
#include "messages/registration.hpp"
#include "models/embedding_model.hpp"

namespace rookery {

namespace {

double ms_between(std::chrono::steady_clock::time_point a,
                  std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// Counts the forward pass just run by the path it took (the optimised graph or eager).
void count_path(const replica_state& st, const char* route) {
  metrics::instance().add_counter("rookery_model_forward_total",
                                  "model=\"" + st.meta.name + "\",route=\"" + route + "\",path=\""
                                    + st.model->last_path() + "\"");
}

// Runs one batch: the longest prefix of the queue whose items share a shape.
void run_batch(replica_state& st) {
  if (st.queue.empty())
    return;
  const auto shape = st.queue.front().input.shape;
  std::vector<replica_state::item> batch;
  while (!st.queue.empty() && batch.size() < st.max_batch && st.queue.front().input.shape == shape) {
    batch.push_back(std::move(st.queue.front()));
    st.queue.pop_front();
  }
  std::vector<const float*> ptrs;
  ptrs.reserve(batch.size());
  for (auto& it : batch)
    ptrs.push_back(it.input.data.data());
  auto start = std::chrono::steady_clock::now();
  auto out = st.model->features(ptrs, shape[0], shape[1], shape[2]);
  auto end = std::chrono::steady_clock::now();
  count_path(st, "embed");
  double compute_ms = ms_between(start, end);
  for (size_t i = 0; i < batch.size(); ++i) {
    auto& it = batch[i];
    if (!out) {
      it.promise.deliver(to_error(out.error()));
      continue;
    }
    embedding_msg m;
    m.values = std::move(out.value()[i]);
    m.queue_ms = ms_between(it.enqueued, start);
    m.compute_ms = compute_ms;
    m.batch = static_cast<uint32_t>(batch.size());
    metrics::instance().model_item(st.meta.name, m.queue_ms / 1000, compute_ms / 1000, m.batch);
    it.promise.deliver(std::move(m));
  }
  metrics::instance().set_gauge("rookery_model_queue_length",
                                "model=\"" + st.meta.name + "\"",
                                static_cast<double>(st.queue.size()));
}

} // namespace

replica_actor::behavior_type replica_impl(replica_actor::stateful_pointer<replica_state> self,
                                          std::shared_ptr<embedding_model> model, model_meta meta,
                                          uint32_t max_batch) {
  self->state.model = std::move(model);
  self->state.meta = std::move(meta);
  self->state.max_batch = std::max<uint32_t>(1, max_batch);
  return {
    [=](embed_atom, tensor_msg& input) -> caf::result<embedding_msg> {
      if (input.shape.size() != 3
          || input.data.size()
               != static_cast<size_t>(input.shape[0] * input.shape[1] * input.shape[2]))
        return to_error(errc::bad_request, "replica expects one CHW tensor");
      auto rp = self->make_response_promise<embedding_msg>();
      self->state.queue.push_back(
        replica_state::item{std::move(input), rp, std::chrono::steady_clock::now()});
      self->send(self, batch_atom::value);
      return rp;
    },
    [=](infer_atom, const tensor_msg& input) -> caf::result<tensor_msg> {
      auto& s = input.shape;
      if (s.size() != 4 || s[0] <= 0 || s[1] <= 0 || s[2] <= 0 || s[3] <= 0)
        return to_error(errc::bad_request, "the input must be a 4-D tensor [N, C, H, W]");
      auto item = s[1] * s[2] * s[3];
      if (input.data.size() != static_cast<size_t>(s[0] * item))
        return to_error(errc::bad_request, "the input has " + std::to_string(input.data.size())
                                             + " values; its shape needs "
                                             + std::to_string(s[0] * item));
      std::vector<const float*> ptrs;
      for (int64_t i = 0; i < s[0]; ++i)
        ptrs.push_back(input.data.data() + i * item);
      auto& st = self->state;
      if (!st.model->infer_prepared() && std::vector<int64_t>{s[1], s[2], s[3]} == st.meta.input_shape
          && st.optimize) {
        // The /v2 path is prepared on its first request of the model's input shape.
        prepare_options po;
        po.shape = st.meta.input_shape;
        po.embed = false;
        po.logits = true;
        st.model->prepare(po);
        st.meta.inference_json = st.model->inference_json();
        log::info("model {}: /v2 path {}", st.meta.name, st.meta.inference_json);
      }
      auto start = std::chrono::steady_clock::now();
      auto out = self->state.model->forward(ptrs, s[1], s[2], s[3]);
      count_path(st, "infer");
      if (!out)
        return to_error(out.error());
      auto secs = ms_between(start, std::chrono::steady_clock::now()) / 1000;
      metrics::instance().model_item(self->state.meta.name, 0, secs, static_cast<uint32_t>(s[0]));
      tensor_msg r;
      auto d = out->empty() ? 0 : static_cast<int64_t>(out->front().size());
      r.shape = {s[0], d};
      r.data.reserve(static_cast<size_t>(s[0] * d));
      for (auto& row : *out)
        r.data.insert(r.data.end(), row.begin(), row.end());
      return r;
    },
    [=](info_atom) { return self->state.meta; },
    [=](batch_atom) { run_batch(self->state); },
  };
}

replica_actor::behavior_type replica_loading(replica_actor::stateful_pointer<replica_state> self,
                                             model_spec spec, model_meta meta,
                                             uint32_t max_batch) {
  auto m = spec.format == "untrained" ? embedding_model::create_untrained(spec.arch)
                                      : embedding_model::load(spec);
  if (m) {
    // Probe once for the output shape (OIP metadata).
    if (meta.input_shape.size() != 3)
      meta.input_shape = {3, 224, 224};
    const auto c = meta.input_shape[0], h = meta.input_shape[1], w = meta.input_shape[2];
    std::vector<float> zeros(static_cast<size_t>(c * h * w), 0.0f);
    auto out = (*m)->forward({zeros.data()}, c, h, w);
    if (out && !out->empty())
      meta.output_shape = {static_cast<int64_t>(out->front().size())};
    meta.dim = (*m)->dim();
    // The inference-optimised path for the model's input shape (models/inference.hpp).
    prepare_options po;
    po.shape = meta.input_shape;
    po.enabled = spec.optimize;
    po.why_disabled = "disabled (the `inference` setting is \"eager\", or the model's config.json "
                      "sets \"optimize\": false)";
    (*m)->prepare(po);
    meta.inference_json = (*m)->inference_json();
    if ((*m)->optimized_for(meta.input_shape) || !spec.optimize)
      log::info("model {}: inference {}", meta.name, meta.inference_json);
    else // a model that should have been optimised and was not: say so
      log::warn("model {}: serving the eager module: {}", meta.name, meta.inference_json);
    meta.ready = true;
    meta.status = spec.format == "untrained"
                    ? "serving UNTRAINED random weights: embeddings are not meaningful; install "
                      "weights with `rookery models import`"
                    : "loaded";
    self->state.optimize = spec.optimize;
    return replica_impl(self, std::shared_ptr<embedding_model>(std::move(m.value())),
                        std::move(meta), max_batch);
  }
  auto err = m.error();
  meta.ready = false;
  meta.status = "failed to load: " + err.message;
  self->state.meta = meta;
  return {
    [=](embed_atom, const tensor_msg&) -> caf::result<embedding_msg> { return to_error(err); },
    [=](infer_atom, const tensor_msg&) -> caf::result<tensor_msg> { return to_error(err); },
    [=](info_atom) { return self->state.meta; },
    [=](batch_atom) {},
  };
}

} // namespace rookery

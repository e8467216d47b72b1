#include "actors/replica.hpp"

#include <caf/all.hpp>

#include "common/metrics.hpp"
#include "messages/registration.hpp"
#include "models/embedding_model.hpp"

namespace rookery {

namespace {

double ms_between(std::chrono::steady_clock::time_point a,
                  std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
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
  auto out = st.model->embed(ptrs, shape[0], shape[1], shape[2]);
  auto end = std::chrono::steady_clock::now();
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
    metrics::instance().model_item(st.model_name, m.queue_ms / 1000, compute_ms / 1000, m.batch);
    it.promise.deliver(std::move(m));
  }
  metrics::instance().set_gauge("rookery_model_queue_length",
                                "model=\"" + st.model_name + "\"",
                                static_cast<double>(st.queue.size()));
}

} // namespace

replica_actor::behavior_type replica_impl(replica_actor::stateful_pointer<replica_state> self,
                                          std::shared_ptr<embedding_model> model,
                                          std::string model_name, uint32_t max_batch) {
  self->state.model = std::move(model);
  self->state.model_name = std::move(model_name);
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
    [=](batch_atom) { run_batch(self->state); },
  };
}

} // namespace rookery

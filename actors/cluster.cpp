#include "actors/cluster.hpp"

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include "common/log.hpp"
#include "common/metrics.hpp"
#include "messages/registration.hpp"

namespace rookery {

namespace {

void update_gauge(const cluster_state& st) {
  double n = 0;
  for (auto& w : st.workers)
    n += w.service ? 1 : 0;
  metrics::instance().set_gauge("rookery_cluster_workers_connected", "", n);
}

} // namespace

cluster_actor::behavior_type cluster_impl(cluster_actor::stateful_pointer<cluster_state> self,
                                          std::vector<std::string> seeds,
                                          std::chrono::milliseconds reconnect,
                                          std::chrono::milliseconds timeout) {
  auto& st = self->state;
  st.reconnect = reconnect;
  st.timeout = timeout;
  for (auto& s : seeds) {
    cluster_state::worker w;
    auto colon = s.rfind(':');
    w.host = s.substr(0, colon);
    w.port = static_cast<uint16_t>(std::stoul(s.substr(colon + 1)));
    st.workers.push_back(std::move(w));
  }
  // A worker went down: fail what is in flight to it, forget it, reconnect.
  self->set_down_handler([=](const caf::down_msg& dm) {
    auto& st = self->state;
    for (uint64_t i = 0; i < st.workers.size(); ++i) {
      auto& w = st.workers[i];
      if (!w.service || w.service.address() != dm.source)
        continue;
      log::warn("cluster: worker {}:{} is down ({}); {} requests in flight failed", w.host,
                w.port, caf::to_string(dm.reason), w.pending.size());
      for (auto& [id, rp] : w.pending)
        rp.deliver(to_error(errc::unavailable, "the worker computing this request went down"));
      w.pending.clear();
      w.service = nullptr;
      update_gauge(st);
      self->delayed_send(self, st.reconnect, retry_atom::value, i);
    }
  });
  for (uint64_t i = 0; i < st.workers.size(); ++i)
    self->send(self, retry_atom::value, i);

  return {
    [=](retry_atom, uint64_t i) {
      auto& w = self->state.workers.at(i);
      if (w.service || w.connecting)
        return;
      w.connecting = true;
      auto mm = self->home_system().middleman().actor_handle();
      self->request(mm, caf::infinite, caf::connect_atom::value, w.host, w.port)
        .then(
          [=](const caf::node_id&, caf::strong_actor_ptr& ptr,
              const std::set<std::string>&) {
            auto& w = self->state.workers.at(i);
            w.connecting = false;
            if (!ptr) {
              self->delayed_send(self, self->state.reconnect, retry_atom::value, i);
              return;
            }
            w.service = caf::actor_cast<embed_service_actor>(ptr);
            self->monitor(w.service);
            log::info("cluster: connected to worker {}:{}", w.host, w.port);
            update_gauge(self->state);
          },
          [=](caf::error& e) {
            auto& w = self->state.workers.at(i);
            w.connecting = false;
            log::debug("cluster: cannot reach worker {}:{}: {}", w.host, w.port,
                       self->system().render(e));
            self->delayed_send(self, self->state.reconnect, retry_atom::value, i);
          });
    },
    [=](workers_atom) {
      uint32_t n = 0;
      for (auto& w : self->state.workers)
        n += w.service ? 1 : 0;
      return n;
    },
    [=](embed_request& req) -> caf::result<embed_result> {
      auto& st = self->state;
      // Round-robin over connected workers.
      for (size_t k = 0; k < st.workers.size(); ++k) {
        auto i = st.next++ % st.workers.size();
        auto& w = st.workers[i];
        if (!w.service)
          continue;
        auto id = st.next_request++;
        auto rp = self->make_response_promise<embed_result>();
        w.pending.emplace(id, rp);
        self->request(w.service, st.timeout, std::move(req))
          .then(
            [=](embed_result& r) {
              auto& w = self->state.workers[i];
              auto p = w.pending.find(id);
              if (p == w.pending.end())
                return; // already failed by the down handler
              r.node = w.host + ":" + std::to_string(w.port);
              p->second.deliver(std::move(r));
              w.pending.erase(p);
            },
            [=](caf::error& e) {
              auto& w = self->state.workers[i];
              auto p = w.pending.find(id);
              if (p == w.pending.end())
                return;
              p->second.deliver(e);
              w.pending.erase(p);
            });
        return rp;
      }
      return to_error(errc::unavailable, "no worker is reachable");
    },
    [=](list_atom) -> caf::result<std::vector<pipeline_info>> {
      for (auto& w : self->state.workers)
        if (w.service)
          return self->delegate(w.service, list_atom::value);
      return to_error(errc::unavailable, "no worker is reachable");
    },
  };
}

} // namespace rookery

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

bool dispatch(cluster_actor::stateful_pointer<cluster_state> self, embed_request req,
              caf::typed_response_promise<embed_result> rp, uint32_t attempts) {
  auto& st = self->state;
  for (size_t k = 0; k < st.workers.size(); ++k) {
    auto i = st.next++ % st.workers.size();
    auto& w = st.workers[i];
    if (!w.service)
      continue;
    auto id = st.next_request++;
    w.pending.emplace(id, cluster_state::worker::in_flight{rp, req, attempts});
    self->request(w.service, st.timeout, std::move(req))
      .then(
        [=](embed_result& r) {
          auto& w = self->state.workers[i];
          auto p = w.pending.find(id);
          if (p == w.pending.end())
            return; // re-sent or failed by the down handler
          r.node = w.host + ":" + std::to_string(w.port);
          p->second.promise.deliver(std::move(r));
          w.pending.erase(p);
        },
        [=](caf::error& e) {
          auto& w = self->state.workers[i];
          auto p = w.pending.find(id);
          if (p == w.pending.end())
            return;
          p->second.promise.deliver(e);
          w.pending.erase(p);
        });
    return true;
  }
  return false;
}

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
  // A worker went down: re-send what was in flight to it to another worker
  // (once), fail the rest at once, forget it, and reconnect.
  self->set_down_handler([=](const caf::down_msg& dm) {
    auto& st = self->state;
    for (uint64_t i = 0; i < st.workers.size(); ++i) {
      auto& w = st.workers[i];
      if (!w.service || w.service.address() != dm.source)
        continue;
      auto orphans = std::move(w.pending);
      w.pending.clear();
      w.service = nullptr;
      update_gauge(st);
      log::warn("cluster: worker {}:{} is down ({}); {} requests in flight re-sent", w.host,
                w.port, caf::to_string(dm.reason), orphans.size());
      for (auto& [id, f] : orphans) {
        if (f.attempts >= 2 || !dispatch(self, std::move(f.request), f.promise, f.attempts + 1))
          f.promise.deliver(to_error(errc::unavailable, "the worker computing this request went down"));
      }
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
      // Once a promise exists it must answer: a returned error would be dropped.
      auto rp = self->make_response_promise<embed_result>();
      if (!dispatch(self, std::move(req), rp, 1))
        rp.deliver(to_error(errc::unavailable, "no worker is reachable"));
      return rp;
    },
    [=](list_atom) -> caf::result<std::vector<pipeline_info>> {
      // Ask every connected worker and merge: a pipeline is ready when some
      // worker serves it, pretrained only when every worker has real weights.
      std::vector<embed_service_actor> live;
      for (auto& w : self->state.workers)
        if (w.service)
          live.push_back(w.service);
      if (live.empty())
        return to_error(errc::unavailable, "no worker is reachable");
      auto rp = self->make_response_promise<std::vector<pipeline_info>>();
      auto merged = std::make_shared<std::map<std::string, pipeline_info>>();
      auto waiting = std::make_shared<size_t>(live.size());
      auto finish = [=]() mutable {
        if (--*waiting > 0)
          return;
        std::vector<pipeline_info> out;
        for (auto& [name, p] : *merged)
          out.push_back(p);
        rp.deliver(std::move(out));
      };
      for (auto& w : live)
        self->request(w, std::chrono::seconds(5), list_atom::value)
          .then(
            [=](std::vector<pipeline_info>& ps) mutable {
              for (auto& p : ps) {
                auto [it, fresh] = merged->emplace(p.name, p);
                if (fresh)
                  continue;
                auto& m = it->second;
                if (m.pretrained != p.pretrained || m.status != p.status)
                  m.status = "workers differ: " + m.status + " | " + p.status;
                m.ready = m.ready || p.ready;
                m.pretrained = m.pretrained && p.pretrained;
                m.replicas += p.replicas;
              }
              finish();
            },
            [=](caf::error&) mutable { finish(); });
      return rp;
    },
    [=](caf::put_atom, const std::string& name, const std::string&) -> caf::result<pipeline_info> {
      // Models live on the workers' disks: a gateway cannot add a pipeline.
      return to_error(errc::unavailable, "pipeline '" + name + "' cannot be added through a "
                                         "gateway: register models on the workers");
    },
    [=](caf::put_atom, const pipeline_spec_msg& spec) -> caf::result<pipeline_info> {
      return to_error(errc::unavailable, "pipeline '" + spec.name + "' cannot be added through a "
                                         "gateway: add pipelines on the workers");
    },
    [=](caf::delete_atom, const std::string& name) -> caf::result<caf::ok_atom> {
      return to_error(errc::unavailable, "pipeline '" + name + "' cannot be removed through a "
                                         "gateway: remove it on the workers");
    },
  };
}

} // namespace rookery

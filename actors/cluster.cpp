#include "actors/cluster.hpp"

#include "actors/model_router.hpp"

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include "common/log.hpp"
#include "common/metrics.hpp"
#include "messages/registration.hpp"

#include <algorithm>
#include <filesystem>
#include <functional>
#include <memory>

#include <nlohmann/json.hpp>

#include "common/job_files.hpp"

namespace fs = std::filesystem;

namespace rookery {

namespace {

void update_gauge(const cluster_state& st) {
  double n = 0;
  for (auto& w : st.workers)
    n += w.service ? 1 : 0;
  metrics::instance().set_gauge("rookery_cluster_workers_connected", "", n);
}

using self_ptr = cluster_actor::stateful_pointer<cluster_state>;

std::string name_of(const cluster_state::worker& w) {
  return w.host + ":" + std::to_string(w.port);
}

/// Notes on a pipeline that some workers refused.
void note_partial(pipeline_info& p, size_t ok, const std::vector<std::string>& failed) {
  p.status += partial_note("added", ok, failed);
}

void note_partial(caf::ok_atom&, size_t, const std::vector<std::string>&) {}

/// Sends one request to every connected worker; answers the first success
/// (noting the workers that refused), or the first error when all refused.
/// `on_success` runs once when at least one worker took the change.
template <class T, class... Ts>
void broadcast(self_ptr self, caf::typed_response_promise<T> rp, std::function<void()> on_success,
               Ts... xs) {
  std::vector<std::pair<std::string, embed_service_actor>> live;
  for (auto& w : self->state.workers)
    if (w.service)
      live.emplace_back(name_of(w), w.service);
  if (live.empty()) {
    rp.deliver(to_error(errc::unavailable, "no worker is reachable"));
    return;
  }
  struct gather {
    size_t left = 0;
    size_t ok = 0;
    std::optional<T> first;
    std::vector<std::string> failed;
    caf::error err;
  };
  auto g = std::make_shared<gather>();
  g->left = live.size();
  auto finish = [=]() mutable {
    if (--g->left > 0)
      return;
    if (!g->first) {
      rp.deliver(g->err);
      return;
    }
    note_partial(*g->first, g->ok, g->failed);
    if (on_success)
      on_success();
    rp.deliver(std::move(*g->first));
  };
  for (auto& [name, svc] : live)
    self->request(svc, self->state.import_timeout, xs...)
      .then(
        [=](T& r) mutable {
          ++g->ok;
          if (!g->first)
            g->first = std::move(r);
          finish();
        },
        [=, name = name](caf::error& e) mutable {
          g->failed.push_back(name + ": " + to_failure(e).message);
          if (!g->err)
            g->err = e;
          finish();
        });
}

/// Asks worker i's service for what it lends (its model registry, its
/// trainer host) and keeps it in `member` while that connection lasts.
/// `then` runs after either answer.
template <class Atom, class Handle>
void fetch_lent(self_ptr self, size_t i, Atom what, Handle cluster_state::worker::*member,
                const char* name, std::function<void(const Handle&)> then = nullptr) {
  auto svc = self->state.workers.at(i).service;
  self->request(svc, std::chrono::seconds(10), caf::get_atom::value, what)
    .then(
      [=](Handle& h) {
        auto& w = self->state.workers.at(i);
        if (w.service == svc)
          w.*member = h;
        if (then)
          then(h);
      },
      [=](caf::error& e) {
        auto& w = self->state.workers.at(i);
        log::warn("cluster: worker {} lends no {}: {}", name_of(w), name, to_failure(e).message);
        if (then)
          then(Handle{});
      });
}

/// The handles that the connected workers lend (`member`), with their names.
template <class Handle>
caf::result<std::vector<caf::actor>, std::vector<std::string>>
lent(self_ptr self, Handle cluster_state::worker::*member) {
  std::vector<caf::actor> handles;
  std::vector<std::string> names;
  for (auto& w : self->state.workers)
    if (w.service && w.*member) {
      handles.push_back(caf::actor_cast<caf::actor>(w.*member));
      names.push_back(name_of(w));
    }
  return {std::move(handles), std::move(names)};
}

/// A pipeline name that is safe as a file name.
bool file_safe(const std::string& n) {
  return !n.empty() && n[0] != '.' && n.size() <= 128
         && n.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
              == std::string::npos;
}

/// The changes the gateways keep on their shared volume (<data>/gateway-pipelines/<name>.json).
std::vector<cluster_state::pipeline_change> stored_changes(const std::string& dir) {
  std::vector<cluster_state::pipeline_change> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() != ".json")
      continue;
    auto text = jobs::read_all(it->path().string());
    auto j = text ? nlohmann::json::parse(*text, nullptr, false) : nlohmann::json();
    if (!j.is_object() || !j.contains("name") || !j["name"].is_string())
      continue;
    cluster_state::pipeline_change c;
    c.name = j["name"].get<std::string>();
    c.removed = j.value("removed", false);
    if (j.contains("model") && j["model"].is_string())
      c.model = j["model"].get<std::string>();
    if (j.contains("spec") && j["spec"].is_object()) {
      pipeline_spec_msg spec;
      spec.name = c.name;
      spec.ops_json = j["spec"].value("ops_json", "");
      if (j["spec"].contains("mime_types") && j["spec"]["mime_types"].is_array())
        for (auto& m : j["spec"]["mime_types"])
          if (m.is_string())
            spec.mime_types.push_back(m.get<std::string>());
      c.spec = std::move(spec);
    }
    out.push_back(std::move(c));
  }
  return out;
}

/// Remembers the last run-time pipeline change per name, for replays: here,
/// and on the gateways' shared volume so that every gateway replays it.
void remember(self_ptr self, cluster_state::pipeline_change c) {
  auto& st = self->state;
  if (!st.changes_dir.empty() && file_safe(c.name)) {
    nlohmann::json j{{"name", c.name}, {"removed", c.removed}};
    if (c.model)
      j["model"] = *c.model;
    if (c.spec)
      j["spec"] = {{"ops_json", c.spec->ops_json}, {"mime_types", c.spec->mime_types}};
    auto path = (fs::path(st.changes_dir) / (c.name + ".json")).string();
    if (auto s = jobs::write_atomically(path, j.dump()); !s)
      log::warn("cluster: cannot keep pipeline change '{}': {}", c.name, s.error().message);
  }
  auto& ch = st.changes;
  ch.erase(std::remove_if(ch.begin(), ch.end(), [&](auto& x) { return x.name == c.name; }),
           ch.end());
  ch.push_back(std::move(c));
}

/// Brings a worker that (re)connected up to date with the run-time pipeline
/// changes made through any gateway (kept on the shared volume), and those
/// made through this one that could not be kept there.
void replay(self_ptr self, size_t i) {
  auto& w = self->state.workers[i];
  if (!w.service)
    return;
  auto changes = self->state.changes_dir.empty() ? std::vector<cluster_state::pipeline_change>{}
                                                 : stored_changes(self->state.changes_dir);
  for (auto& c : self->state.changes)
    if (std::none_of(changes.begin(), changes.end(), [&](auto& x) { return x.name == c.name; }))
      changes.push_back(c);
  if (changes.empty())
    return;
  log::info("cluster: replaying {} pipeline changes to worker {}", changes.size(), name_of(w));
  auto who = name_of(w);
  auto report = [=](const std::string& name) {
    return [=](caf::error& e) {
      log::warn("cluster: worker {} refused pipeline '{}' on replay: {}", who, name,
                to_failure(e).message);
    };
  };
  auto t = self->state.import_timeout; // a pipeline's model may load first
  for (auto& c : changes) {
    if (c.removed)
      self->request(w.service, t, caf::delete_atom::value, c.name)
        .then([](caf::ok_atom) {}, [=](caf::error& e) {
          if (to_failure(e).code != errc::not_found)
            report(c.name)(e);
        });
    else if (c.spec)
      self->request(w.service, t, caf::put_atom::value, *c.spec)
        .then([](pipeline_info&) {}, report(c.name));
    else if (c.model)
      self->request(w.service, t, caf::put_atom::value, c.name, *c.model)
        .then([](pipeline_info&) {}, report(c.name));
  }
}

} // namespace

std::string partial_note(const std::string& verb, size_t ok, const std::vector<std::string>& failed) {
  if (failed.empty())
    return {};
  std::string all;
  for (auto& f : failed)
    all += (all.empty() ? "" : "; ") + f;
  return "; " + verb + " on " + std::to_string(ok) + " of " + std::to_string(ok + failed.size())
         + " workers (failed: " + all + ")";
}

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
                                          std::chrono::milliseconds timeout,
                                          std::chrono::milliseconds import_timeout,
                                          std::string data_dir) {
  auto& st = self->state;
  st.reconnect = reconnect;
  st.timeout = timeout;
  st.import_timeout = import_timeout;
  if (!data_dir.empty())
    st.changes_dir = (fs::path(data_dir) / "gateway-pipelines").string();
  st.router = self->spawn<caf::linked>(model_router_impl, caf::actor_cast<worker_directory_actor>(self),
                                       timeout, import_timeout,
                                       data_dir.empty() ? std::string{}
                                                        : (fs::path(data_dir) / "gateway-models").string());
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
      w.models = nullptr;
      w.trainer = nullptr;
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
            fetch_lent(self, i, job_atom::value, &cluster_state::worker::trainer, "trainer host");
            // Models first (the router back-fills what the worker lacks),
            // then the pipelines that may use them.
            auto svc = w.service;
            fetch_lent<model_atom, model_registry_actor>(
              self, i, model_atom::value, &cluster_state::worker::models, "model registry",
              [=](const model_registry_actor& reg) {
                if (!reg)
                  return replay(self, i);
                self->request(self->state.router, self->state.import_timeout, backfill_atom::value,
                              caf::actor_cast<caf::actor>(reg), name_of(self->state.workers.at(i)))
                  .then([=](caf::ok_atom) {
                          if (self->state.workers.at(i).service == svc)
                            replay(self, i);
                        },
                        [=](caf::error&) {
                          if (self->state.workers.at(i).service == svc)
                            replay(self, i);
                        });
              });
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
    // Run-time pipelines: every connected worker gets the change, and a
    // worker that connects later gets it replayed.
    [=](caf::put_atom, const std::string& name, const std::string& model) -> caf::result<pipeline_info> {
      auto rp = self->make_response_promise<pipeline_info>();
      broadcast<pipeline_info>(self, rp, [=] {
        cluster_state::pipeline_change c;
        c.name = name;
        c.model = model;
        remember(self, std::move(c));
      }, caf::put_atom::value, name, model);
      return rp;
    },
    [=](caf::put_atom, const pipeline_spec_msg& spec) -> caf::result<pipeline_info> {
      auto rp = self->make_response_promise<pipeline_info>();
      broadcast<pipeline_info>(self, rp, [=] {
        cluster_state::pipeline_change c;
        c.name = spec.name;
        c.spec = spec;
        remember(self, std::move(c));
      }, caf::put_atom::value, spec);
      return rp;
    },
    [=](caf::delete_atom, const std::string& name) -> caf::result<caf::ok_atom> {
      auto rp = self->make_response_promise<caf::ok_atom>();
      broadcast<caf::ok_atom>(self, rp, [=] {
        cluster_state::pipeline_change c;
        c.name = name;
        c.removed = true;
        remember(self, std::move(c));
      }, caf::delete_atom::value, name);
      return rp;
    },
    [=](caf::get_atom, model_atom) -> caf::result<model_registry_actor> {
      if (!self->state.router)
        return to_error(errc::unavailable, "this gateway routes no models");
      return self->state.router;
    },
    [=](caf::get_atom, job_atom) -> caf::result<trainer_host_actor> {
      return to_error(errc::unavailable, "a gateway hosts no training: its workers do");
    },
    [=](list_atom, job_atom) -> caf::result<std::vector<caf::actor>, std::vector<std::string>> {
      return lent(self, &cluster_state::worker::trainer);
    },
    [=](list_atom, model_atom) -> caf::result<std::vector<caf::actor>, std::vector<std::string>> {
      return lent(self, &cluster_state::worker::models);
    },
  };
}

} // namespace rookery

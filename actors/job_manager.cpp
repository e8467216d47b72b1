#include "actors/job_manager.hpp"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "common/clock.hpp"
#include "common/crypto.hpp"
#include "common/job_files.hpp"
#include "common/log.hpp"
#include "messages/json.hpp"
#include "messages/registration.hpp"
#include "trainers/train_job.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace rookery {

namespace {

using self_ptr = job_manager_actor::stateful_pointer<job_manager_state>;

constexpr auto kStoreTimeout = std::chrono::seconds(30);
constexpr auto kJobTimeout = std::chrono::minutes(10);
constexpr auto kImportTimeout = std::chrono::minutes(5);
constexpr int64_t kPersistEveryMs = 2000; // progress writes to the store, per job

const char* kTrain = "train";

bool visible_to(const job_record& j, const principal& p) {
  return j.user_id == p.user_id || p.is_admin;
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

fs::path job_dir(const job_manager_state& st, const std::string& id) {
  return jobs::dir_of(st.jobs_dir, id);
}

/// Looks a job up in the store and hands it to `f` when `who` may see it;
/// answers not_found otherwise (others' jobs are invisible).
template <class T, class F>
void with_stored_job(self_ptr self, const principal& who, const std::string& id,
                     caf::typed_response_promise<T> rp, F f) {
  self->request(self->state.store, kStoreTimeout, caf::get_atom::value, job_atom::value, id)
      .then(
          [=](job_record& j) mutable {
            if (!visible_to(j, who))
              rp.deliver(to_error(errc::not_found, "no job '" + id + "'"));
            else
              f(rp, j);
          },
          [=](caf::error& e) mutable { rp.deliver(e); });
}

/// A job as the caller sees it: active state first, else the store's.
template <class T, class F>
void with_job(self_ptr self, const principal& who, const std::string& id,
              caf::typed_response_promise<T> rp, F f) {
  if (auto i = self->state.active.find(id); i != self->state.active.end()) {
    if (!visible_to(i->second, who))
      rp.deliver(to_error(errc::not_found, "no job '" + id + "'"));
    else
      f(rp, i->second);
    return;
  }
  with_stored_job(self, who, id, rp, f);
}

/// Writes a job this node does not hold (a resumed one, back in the pool).
void persist(self_ptr self, const job_record& j) {
  self->request(self->state.store, kStoreTimeout, caf::update_atom::value, j)
      .then([](caf::ok_atom) {},
            [=](caf::error& e) {
              log::error("job {}: cannot save state: {}", j.id, to_failure(e).message);
            });
}

void lose(self_ptr self, const std::string& id);

/// Writes a job this node holds, only while it holds it: a job cancelled on
/// another gateway, or taken over after this node's lease lapsed, is not
/// overwritten, and its run here stops.
void persist_held(self_ptr self, const job_record& j) {
  self->request(self->state.store, kStoreTimeout, caf::update_atom::value, j,
                self->state.settings.node_id)
      .then([](caf::ok_atom) {},
            [=](caf::error& e) {
              auto f = to_failure(e);
              if (f.code == errc::conflict) {
                log::warn("job {}: {}; stopping it here", j.id, f.message);
                lose(self, j.id);
              } else {
                log::error("job {}: cannot save state: {}", j.id, f.message);
              }
            });
}

/// Tells a job's subscribers it ended and forgets them.
void close_subscribers(self_ptr self, const job_record& j) {
  auto i = self->state.subscribers.find(j.id);
  if (i == self->state.subscribers.end())
    return;
  for (auto& s : i->second)
    caf::anon_send(s, done_atom::value, j);
  self->state.subscribers.erase(i);
}

/// A job this node no longer holds (cancelled elsewhere, or taken over): its
/// run stops without reporting (it keeps its slot until it has stopped, like a
/// cancelled one), and its subscribers get the store's record.
void lose(self_ptr self, const std::string& id) {
  auto& st = self->state;
  auto i = st.active.find(id);
  if (i == st.active.end())
    return;
  if (i->second.state == job_state::running)
    st.stopping.insert(id);
  if (auto r = st.runs->find(id); r != st.runs->end()) {
    r->second->stop = true; // it reports done; the stopping set frees its slot, no more
    st.runs->erase(r);
  }
  if (auto r = st.remote.find(id); r != st.remote.end())
    self->send(r->second.host, cancel_atom::value, id); // likewise, from the worker
  st.active.erase(i);
  self->request(st.store, kStoreTimeout, caf::get_atom::value, job_atom::value, id)
      .then([=](job_record& j) { close_subscribers(self, j); }, [](caf::error&) {});
}

using meta_fn = std::function<void(model_meta&)>;
using error_fn = std::function<void(const caf::error&)>;

/// A time-series or text job's model: its export directory copied to
/// <data>/series-models/<name>/ or <data>/text-models/<name>/ (whole, then
/// renamed into place), and a pipeline of the same name that reads uploaded
/// series (decode_series -> series_model) or texts (decode_text ->
/// text_model) with it.
void register_own_model(self_ptr self, const job_record& j, const std::string& name,
                        const json& m, meta_fn ok, error_fn err) {
  auto& st = self->state;
  const bool is_text = m.value("serves", "") == "text_embedding";
  const std::string what = is_text ? "text" : "series";
  const fs::path root = fs::path(st.settings.data_dir) / (what + "-models");
  const fs::path src = job_dir(st, j.id) / "model";
  const fs::path dst = root / name;
  std::error_code ec;
  if (fs::exists(dst, ec))
    return err(to_error(errc::conflict, "a " + what + " model named '" + name + "' is registered already"));
  fs::create_directories(root, ec);
  const fs::path tmp = root / (".staging-" + name + "-" + j.id);
  fs::remove_all(tmp, ec);
  fs::copy(src, tmp, fs::copy_options::recursive, ec);
  if (!ec)
    fs::rename(tmp, dst, ec);
  if (ec) {
    fs::remove_all(tmp, ec);
    return err(to_error(errc::internal, "cannot store the " + what + " model"));
  }
  model_meta meta;
  meta.name = name;
  meta.version = 1;
  meta.arch = m.value("arch", "");
  meta.format = what + "_model";
  meta.dim = m.value("dim", uint32_t{0});
  meta.pretrained = true;
  meta.weights = "trained by job " + j.id;
  pipeline_spec_msg spec;
  spec.name = name;
  spec.ops_json = json::array({{{"op", "decode_" + what}}, {{"op", what + "_model"}, {"name", name}},
                               {{"op", "l2_normalize"}}})
                    .dump();
  self->request(st.embed, kImportTimeout, caf::put_atom::value, spec)
    .then(
      [=](pipeline_info& p) mutable {
        log::info("job {}: {} model registered as {}", j.id, what, name);
        meta.ready = true;
        meta.status = "serving as embedding pipeline '" + p.name + "' (dim " + std::to_string(p.dim) + ")";
        ok(meta);
      },
      [=](caf::error& e) mutable {
        meta.status = "registered; not served as a pipeline: " + to_failure(e).message;
        ok(meta);
      });
}

/// Registers a succeeded training job's model and serves it as a pipeline.
void register_model(self_ptr self, const job_record& j, const std::string& name, meta_fn ok,
                    error_fn err) {
  auto& st = self->state;
  struct {
    error_fn err;
    void deliver(caf::error e) const { err(e); }
  } rp{err};
  if (j.kind != kTrain || j.state != job_state::succeeded)
    return rp.deliver(to_error(errc::conflict, "job '" + j.id + "' is " + j.state + " (" + j.kind +
                                                   "): only a succeeded training job's "
                                                   "model can be registered"));
  if (!st.models) {
    rp.deliver(to_error(errc::unavailable, "this node serves no models (gateway)"));
    return;
  }
  auto res = json::parse(j.result_json, nullptr, false);
  if (!res.is_object() || !res.contains("model") || !res["model"].is_object())
    return rp.deliver(to_error(errc::conflict, "job '" + j.id +
                                                   "' left no servable model "
                                                   "(GAN generators and language models are "
                                                   "artifacts, not embedding models)"));
  const auto& m = res["model"];
  if (m.value("serves", "") == "series_embedding" || m.value("serves", "") == "text_embedding")
    return register_own_model(self, j, name, m, std::move(ok), std::move(err));
  model_import req;
  req.name = name;
  req.arch = m.value("arch", "");
  req.format = "state_dict";
  req.weights_path = (job_dir(st, j.id) / m.value("weights", "model/model.pt")).string();
  req.options_json = m.value("options", json::object()).dump();
  req.preprocess_json = m.value("preprocess", json::object()).dump();
  auto embed = st.embed;
  self->request(st.models, kImportTimeout, caf::put_atom::value, req)
      .then(
          [=](model_meta& meta) mutable {
            log::info("job {}: model registered as {} version {}", j.id, meta.name, meta.version);
            self->request(embed, kImportTimeout, caf::put_atom::value, name, name)
                .then(
                    [=](pipeline_info& p) mutable {
                      meta.ready = true;
              meta.status = "serving as embedding pipeline '" + p.name + "' (dim " +
                                    std::to_string(p.dim) + ")";
                      ok(meta);
                    },
                    [=](caf::error& e) mutable {
                      meta.status =
                          "registered; not served as a pipeline: " + to_failure(e).message;
                      ok(meta);
                    });
          },
          [=](caf::error& e) mutable { err(e); });
}

// -- the scheduler ---------------------------------------------------------------

void schedule(self_ptr self);
void claim(self_ptr self, bool at_start);

/// Tells a job's subscribers its new state.
void announce_state(self_ptr self, const job_record& job, json extra = json::object()) {
  extra["state"] = job.state;
  for (auto& s : self->state.subscribers[job.id])
    caf::anon_send(s, train_event{job.id, "state", extra.dump()});
}

/// A training job that no worker took (or whose worker died) waits in the
/// queue again, and the next tick tries again. Its slot is freed.
void requeue(self_ptr self, const std::string& id, const std::string& why) {
  auto& st = self->state;
  st.remote.erase(id);
  --st.running;
  if (st.stopping.erase(id) != 0) // cancelled meanwhile: nothing left to run
    return schedule(self);
  auto i = st.active.find(id);
  if (i == st.active.end())
    return schedule(self);
  auto& job = i->second;
  log::info("job {}: back in the queue: {}", id, why);
  job.state = job_state::queued;
  job.started_at = 0;
  persist_held(self, job);
  announce_state(self, job, json{{"reason", why}});
  st.queue.push_front(id);
}

/// Offers a running training job to the trainer hosts in turn, from `k`:
/// the first with a free slot runs it.
void offer(self_ptr self, const std::string& id, std::shared_ptr<std::vector<caf::actor>> hosts,
           std::shared_ptr<std::vector<std::string>> names, size_t first, size_t k) {
  auto& st = self->state;
  auto i = st.active.find(id);
  if (i == st.active.end() || i->second.state != job_state::running) { // cancelled or lost meanwhile
    if (st.stopping.erase(id) != 0)
      --st.running;
    return schedule(self);
  }
  if (k == hosts->size())
    return requeue(self, id, "no worker has a free training slot");
  auto n = (first + k) % hosts->size();
  auto host = caf::actor_cast<trainer_host_actor>((*hosts)[n]);
  auto worker = (*names)[n];
  const auto& job = i->second;
  train_run run;
  run.job_id = id;
  run.spec_json = job.spec_json;
  run.user_id = job.user_id;
  std::error_code ec;
  run.job_dir = fs::absolute(job_dir(st, id), ec).string();
  const auto& data = st.settings.paths.data_dir.empty() ? st.settings.data_dir : st.settings.paths.data_dir;
  run.data_dir = fs::absolute(data, ec).string();
  run.fashion_mnist_dir = st.settings.paths.fashion_mnist_dir;
  run.fortunes_dir = st.settings.paths.fortunes_dir;
  run.wordnet_dir = st.settings.paths.wordnet_dir;
  run.receiver = caf::actor_cast<caf::actor>(self);
  self->request(host, kStoreTimeout, start_atom::value, std::move(run))
    .then(
      [=](uint32_t used, uint32_t capacity) {
        auto& st = self->state;
        st.remote[id] = job_manager_state::remote_run{host, worker};
        self->monitor(host);
        auto i = st.active.find(id);
        if (i == st.active.end()) { // cancelled while it started: stop it there
          self->send(host, cancel_atom::value, id); // it reports done; the slot is freed then
          return;
        }
        log::info("job {}: training on worker {} ({} of {} slots there)", id, worker, used, capacity);
        announce_state(self, i->second, json{{"worker", worker}});
      },
      [=](caf::error& e) {
        log::debug("job {}: worker {} did not take it: {}", id, worker, to_failure(e).message);
        offer(self, id, hosts, names, first, k + 1);
      });
}

/// Runs a training job on a worker's trainer host (a gateway).
void start_remote(self_ptr self, const std::string& id) {
  auto first = self->state.next_host++;
  self->request(self->state.settings.trainer_hosts, std::chrono::seconds(5), list_atom::value,
                job_atom::value)
    .then(
      [=](std::vector<caf::actor>& hosts, std::vector<std::string>& names) {
        if (hosts.empty())
          return requeue(self, id, "no worker is reachable");
        offer(self, id, std::make_shared<std::vector<caf::actor>>(std::move(hosts)),
              std::make_shared<std::vector<std::string>>(std::move(names)), first % hosts.size(),
              0);
      },
      [=](caf::error& e) { requeue(self, id, "no worker list: " + to_failure(e).message); });
}

/// Starts a training job: a trainer here, or on a worker (gateways).
void start_training(self_ptr self, job_record& job) {
  auto& st = self->state;
  auto id = job.id;
  job.state = job_state::running;
  job.started_at = unix_now();
  job.error.clear();
  persist_held(self, job);
  ++st.running;
  if (st.settings.trainer_hosts) {
    announce_state(self, job);
    return start_remote(self, id);
  }
  auto ctl = std::make_shared<run_control>();
  (*st.runs)[id] = ctl;
  train_env env;
  env.paths = st.settings.paths;
  env.user_id = job.user_id;
  env.is_admin = true; // visibility of the dataset was checked at submission
  env.threads = st.settings.train_threads;
  spawn_trainer(self->system(), id, job.spec_json, env, job_dir(st, id).string(), ctl,
                caf::actor_cast<train_receiver_actor>(self));
  announce_state(self, job);
}

/// Starts an embedding job from its input on disk.
void start_embedding(self_ptr self, job_record& job) {
  auto& st = self->state;
  auto id = job.id;
  auto bytes = jobs::read_all(jobs::input_path(st.jobs_dir, id));
  if (!bytes) {
    job.state = job_state::failed;
    job.error = "the job's input is gone";
    job.finished_at = unix_now();
    persist_held(self, job);
    close_subscribers(self, job);
    std::error_code ec;
    fs::remove_all(job_dir(st, id), ec);
    st.active.erase(id);
    return;
  }
  job.state = job_state::running;
  job.started_at = unix_now();
  persist_held(self, job);
  ++st.running;
  auto spec = json::parse(job.spec_json, nullptr, false);
  embed_request req;
  req.pipeline = spec.is_object() ? spec.value("pipeline", "") : "";
  req.mime = spec.is_object() ? spec.value("mime", "") : "";
  req.data = std::move(*bytes);
  req.request_id = id;
  self->request(st.embed, kJobTimeout, std::move(req))
    .then([=](embed_result& r) { self->send(self, done_atom::value, id, true, to_json(r).dump()); },
          [=](caf::error& e) { self->send(self, done_atom::value, id, false, to_failure(e).message); });
}

/// Starts queued jobs while there is room, then claims more from the store.
void schedule(self_ptr self) {
  auto& st = self->state;
  std::deque<std::string> held; // resumed while their cancelled run still stops
  while (st.running < st.settings.max_running && !st.queue.empty()) {
    auto id = st.queue.front();
    st.queue.pop_front();
    if (st.stopping.count(id) != 0) {
      held.push_back(id);
      continue;
    }
    auto i = st.active.find(id);
    if (i == st.active.end() || i->second.state != job_state::queued)
      continue;
    if (i->second.kind == kTrain)
      start_training(self, i->second);
    else
      start_embedding(self, i->second);
  }
  st.queue.insert(st.queue.begin(), held.begin(), held.end());
  if (st.running + st.queue.size() + st.reserved < st.settings.max_running)
    claim(self, false);
}

/// A job this node now holds joins the local queue. One that was running
/// when its node stopped (this one before a restart, or another that died)
/// starts again: an embedding from its input on disk, a training run from
/// its last checkpoint.
void enqueue(self_ptr self, job_record j) {
  auto& st = self->state;
  auto id = j.id;
  if (st.active.count(id) != 0)
    return;
  if (j.state == job_state::running || j.started_at != 0)
    log::info("job {}: {} (was {} on {})", id,
              j.kind == kTrain ? "resuming from its last checkpoint" : "running again", j.state,
              j.owner == st.settings.node_id ? "an earlier run" : j.owner);
  j.state = job_state::queued;
  j.started_at = 0;
  j.owner = st.settings.node_id;
  st.watched.erase(id); // its subscribers get events from here on
  st.active[id] = std::move(j);
  st.queue.push_back(id);
  schedule(self);
}

/// Claims waiting jobs from the store for the free slots (at start: every
/// unfinished job when the store is this node's own).
void claim(self_ptr self, bool at_start) {
  auto& st = self->state;
  if (st.claiming)
    return;
  const bool take_all = at_start && !st.settings.shared;
  uint32_t busy = st.running + static_cast<uint32_t>(st.queue.size()) + st.reserved;
  uint32_t free = busy < st.settings.max_running ? st.settings.max_running - busy : 0;
  if (!take_all && free == 0)
    return;
  st.claiming = true;
  self->request(st.store, kStoreTimeout, claim_atom::value, st.settings.node_id, unix_now(),
                st.settings.lease_s, take_all ? 0u : free, take_all)
    .then(
      [=](std::vector<job_record>& jobs) {
        self->state.claiming = false;
        for (auto& j : jobs)
          enqueue(self, std::move(j));
      },
      [=](caf::error& e) {
        self->state.claiming = false;
        log::warn("cannot claim jobs: {}", to_failure(e).message);
      });
}

} // namespace

job_manager_actor::behavior_type
job_manager_impl(job_manager_actor::stateful_pointer<job_manager_state> self, store_actor store,
                 embed_service_actor embed, model_registry_actor models,
                 job_manager_settings settings) {
  auto& st = self->state;
  st.store = store;
  st.embed = embed;
  st.models = models;
  st.settings = std::move(settings);
  st.settings.max_running = std::max<uint32_t>(1, st.settings.max_running);
  st.jobs_dir = (fs::path(st.settings.data_dir) / "jobs").string();

  // Subscribers that go away (the client hung up) stop getting events. A
  // trainer host that goes away (its worker died) sends its jobs back to the
  // queue: the next worker resumes each from its last checkpoint.
  self->set_down_handler([self](caf::down_msg& dm) {
    for (auto& [id, subs] : self->state.subscribers)
      subs.erase(std::remove_if(subs.begin(), subs.end(),
                                [&](const caf::actor& a) { return a.address() == dm.source; }),
                 subs.end());
    std::vector<std::pair<std::string, std::string>> orphans;
    for (auto& [id, r] : self->state.remote)
      if (r.host.address() == dm.source)
        orphans.emplace_back(id, r.worker);
    for (auto& [id, worker] : orphans)
      requeue(self, id, "worker " + worker + " went down; resuming from the last checkpoint");
    if (!orphans.empty())
      schedule(self);
  });

  // When the node stops, running trainers end at their next step and leave
  // their jobs unfinished (resumed from the last checkpoint on restart).
  self->attach_functor([runs = st.runs](const caf::error&) {
    for (auto& [id, ctl] : *runs) {
      ctl->shutdown = true;
      ctl->stop = true;
    }
  });

  claim(self, true);

  // Every poll_ms: renew this node's leases (a job missing from the answer was
  // cancelled elsewhere or taken over: stop it here), claim waiting jobs for
  // free slots, and turn the store's records of watched jobs into events.
  self->send(self, tick_atom::value);

  auto submit = [=](job_record j) -> caf::result<job_record> {
    auto& st = self->state;
    // Held at once when a slot is free here; otherwise left for the first
    // node with a free slot (this one included, when one frees).
    const bool take = st.running + st.queue.size() + st.reserved < st.settings.max_running;
    if (take) {
      j.owner = st.settings.node_id;
      j.lease_until = unix_now() + st.settings.lease_s;
      ++st.reserved; // counted until it joins the queue, so no second submit takes it too
    }
    auto rp = self->make_response_promise<job_record>();
    self->request(st.store, kStoreTimeout, caf::put_atom::value, j)
        .then(
            [=](caf::ok_atom) mutable {
              rp.deliver(j);
              if (take) {
                --self->state.reserved;
                enqueue(self, j);
              }
            },
            [=](caf::error& e) mutable {
              if (take)
                --self->state.reserved;
              rp.deliver(e);
            });
    return rp;
  };

  return {
      [=](submit_atom, const principal& who, embed_request& req) -> caf::result<job_record> {
        job_record j;
        j.id = crypto::random_id("j_");
        j.user_id = who.user_id;
        j.kind = "embed";
        j.state = job_state::queued;
        j.spec_json =
            json{{"pipeline", req.pipeline}, {"mime", req.mime}, {"bytes", req.data.size()}}.dump();
        j.created_at = unix_now();
        if (auto st = jobs::write_atomically(jobs::input_path(self->state.jobs_dir, j.id), req.data); !st)
          return to_error(st.error());
        return submit(std::move(j));
      },
      [=](submit_atom, const principal& who, train_submit& req) -> caf::result<job_record> {
        train_env env;
        env.paths = self->state.settings.paths;
        env.user_id = who.user_id;
        env.is_admin = who.is_admin;
        auto spec = validate_train_spec(req.spec_json, env);
        if (!spec)
          return to_error(spec.error());
        job_record j;
        j.id = crypto::random_id("j_");
        j.user_id = who.user_id;
        j.kind = kTrain;
        j.state = job_state::queued;
        j.spec_json = *spec;
        j.created_at = unix_now();
        return submit(std::move(j));
      },
      [=](caf::get_atom, const principal& who, const std::string& id) -> caf::result<job_record> {
        auto rp = self->make_response_promise<job_record>();
        with_job(self, who, id, rp, [=](auto& rp, job_record j) {
          if (j.kind == kTrain)
            j.history_json = jobs::read_history(job_dir(self->state, j.id).string());
          rp.deliver(std::move(j));
        });
        return rp;
      },
      [=](list_atom, const principal& who) -> caf::result<std::vector<job_record>> {
        return self->delegate(self->state.store, list_atom::value, job_atom::value, who.user_id);
      },
      [=](cancel_atom, const principal& who, const std::string& id) -> caf::result<job_record> {
        auto& st = self->state;
        auto i = st.active.find(id);
        if (i == st.active.end() || !visible_to(i->second, who)) {
          // Not held here: unknown, someone else's, finished, waiting for a
          // node, or running on another node. The store marks it cancelled
          // wherever it is; its node stops it at its next lease renewal.
          auto rp = self->make_response_promise<job_record>();
          with_stored_job(self, who, id, rp, [=](auto& rp, job_record& j) {
            if (j.state != job_state::queued && j.state != job_state::running) {
              rp.deliver(to_error(errc::conflict, "job '" + id + "' already " + j.state));
              return;
            }
            self->request(self->state.store, kStoreTimeout, cancel_atom::value, job_atom::value,
                          id, unix_now())
                .then(
                    [=](job_record& done) mutable {
                      if (done.kind != kTrain && done.owner.empty()) { // nobody runs it
                        std::error_code ec;
                        fs::remove_all(job_dir(self->state, id), ec);
                      }
                      close_subscribers(self, done);
                      self->state.watched.erase(id);
                      rp.deliver(done);
                    },
                    [=](caf::error& e) mutable { rp.deliver(e); });
          });
          return rp;
        }
        auto job = i->second;
        if (job.state == job_state::running)
          st.stopping.insert(id); // keeps its slot until its work reports done
        if (auto r = st.runs->find(id); r != st.runs->end()) {
          r->second->stop = true; // the trainer ends at its next step
          st.runs->erase(r);
        }
        if (auto r = st.remote.find(id); r != st.remote.end())
          self->send(r->second.host, cancel_atom::value, id); // ... on its worker
        job.state = job_state::cancelled;
        job.finished_at = unix_now();
        st.active.erase(i);
        if (job.kind != kTrain) { // a training run keeps its checkpoints: it can resume
          std::error_code ec;
          fs::remove_all(job_dir(st, id), ec);
        }
        persist_held(self, job);
        close_subscribers(self, job);
        schedule(self);
        return job;
      },
      [=](resume_atom, const principal& who, const std::string& id) -> caf::result<job_record> {
        if (self->state.active.count(id) != 0) {
          auto& j = self->state.active[id];
          if (visible_to(j, who))
            return to_error(errc::conflict, "job '" + id + "' is " + j.state + " already");
          return to_error(errc::not_found, "no job '" + id + "'");
        }
        auto rp = self->make_response_promise<job_record>();
        with_stored_job(self, who, id, rp, [=](auto& rp, job_record j) {
          if (j.kind != kTrain ||
              (j.state != job_state::cancelled && j.state != job_state::failed)) {
            rp.deliver(to_error(errc::conflict, "only a cancelled or failed training job "
                                                "can resume; job '" +
                                                    id + "' is " + j.state + " (" + j.kind + ")"));
            return;
          }
          // Back into the pool, for the first node with a free slot (this one
          // claims right after the write when it has one).
          j.state = job_state::queued;
          j.finished_at = 0;
          j.error.clear();
          j.owner.clear();
          j.lease_until = 0;
          persist(self, j);
          rp.deliver(j);
          claim(self, false);
        });
        return rp;
      },
      [=](train_event& ev) {
        auto& st = self->state;
        auto i = st.active.find(ev.job_id);
        if (i == st.active.end())
          return; // cancelled meanwhile
        if (ev.type == "progress") {
          auto& job = i->second;
          auto p = json::parse(ev.json, nullptr, false);
          if (auto r = st.remote.find(ev.job_id); r != st.remote.end() && p.is_object()) {
            p["worker"] = r->second.worker; // where it runs, for clients and operators
            ev.json = p.dump();
          }
          job.progress_json = ev.json;
          if (p.is_object() && p.value("total_steps", int64_t{0}) > 0)
            job.progress = static_cast<double>(p.value("step", int64_t{0})) /
                           static_cast<double>(p.value("total_steps", int64_t{1}));
          auto& last = st.persisted_ms[ev.job_id];
          if (now_ms() - last >= kPersistEveryMs) {
            last = now_ms();
            persist_held(self, job);
          }
        }
        if (auto s = st.subscribers.find(ev.job_id); s != st.subscribers.end())
          for (auto& sub : s->second)
            caf::anon_send(sub, ev);
      },
      [=](subscribe_atom, const principal& who, const std::string& id,
          const caf::actor& subscriber) -> caf::result<job_record> {
        auto rp = self->make_response_promise<job_record>();
        with_job(self, who, id, rp, [=](auto& rp, job_record j) {
          if (j.kind == kTrain)
            j.history_json = jobs::read_history(job_dir(self->state, j.id).string());
          const bool held = self->state.active.count(id) != 0;
          const bool elsewhere =
            !held && (j.state == job_state::queued || j.state == job_state::running);
          if (held || elsewhere) {
            self->state.subscribers[id].push_back(subscriber);
            self->monitor(subscriber);
          }
          if (elsewhere) // waiting for a node, or run by another: follow the store
            self->state.watched.emplace(id, j);
          rp.deliver(std::move(j));
        });
        return rp;
      },
      [=](artifact_atom, const principal& who, const std::string& id,
          const std::string& path) -> caf::result<artifact_reply> {
        auto rp = self->make_response_promise<artifact_reply>();
        with_job(self, who, id, rp, [=](auto& rp, const job_record& j) {
          auto dir = job_dir(self->state, j.id).string();
          artifact_reply out;
          if (path.empty()) {
            out.listing_json = j.kind == kTrain
                                 ? jobs::list_artifacts(dir, j.id)
                                 : json{{"job", j.id}, {"artifacts", json::array()}}.dump();
            rp.deliver(out);
            return;
          }
          auto file = jobs::artifact_file(dir, j.id, path);
          if (!file) {
            rp.deliver(to_error(file.error()));
            return;
          }
          out.file = *file;
          out.content_type = jobs::content_type_of(*file);
          rp.deliver(out);
        });
        return rp;
      },
      [=](register_atom, const principal& who, const std::string& id,
          const std::string& name) -> caf::result<model_meta> {
        auto rp = self->make_response_promise<model_meta>();
        with_job(self, who, id, rp, [=](auto& rp, const job_record& j) {
          register_model(
              self, j, name, [rp](model_meta& m) mutable { rp.deliver(m); },
              [rp](const caf::error& e) mutable { rp.deliver(e); });
        });
        return rp;
      },
      [=](tick_atom) {
        auto& st = self->state;
        self->delayed_send(self, std::chrono::milliseconds(st.settings.poll_ms),
                           tick_atom::value);
        // Renew; a job held when the renewal was sent but missing from its
        // answer is no longer this node's (jobs claimed after it was sent are
        // not judged by it).
        std::vector<std::string> held;
        for (auto& [id, j] : st.active)
          held.push_back(id);
        self->request(st.store, kStoreTimeout, renew_atom::value, st.settings.node_id,
                      unix_now() + st.settings.lease_s)
            .then(
                [=](std::vector<std::string>& still) {
                  std::sort(still.begin(), still.end());
                  for (auto& id : held)
                    if (!std::binary_search(still.begin(), still.end(), id) &&
                        self->state.active.count(id) != 0) {
                      log::info("job {}: cancelled or taken over elsewhere; stopping it here", id);
                      lose(self, id);
                    }
                },
                [](caf::error& e) {
                  log::warn("cannot renew job leases: {}", to_failure(e).message);
                });
        if (!st.queue.empty())
          schedule(self); // jobs that no worker took last time
        claim(self, false);
        for (auto& [id, last] : st.watched) {
          auto seen = last;
          self->request(st.store, kStoreTimeout, caf::get_atom::value, job_atom::value, id)
              .then(
                  [=](job_record& now) {
                    auto& st = self->state;
                    auto w = st.watched.find(now.id);
                    if (w == st.watched.end())
                      return;
                    auto subs = st.subscribers.find(now.id);
                    if (subs != st.subscribers.end()) {
                      if (now.state != seen.state)
                        for (auto& sub : subs->second)
                          caf::anon_send(sub, train_event{now.id, "state",
                                                          json{{"state", now.state}}.dump()});
                      if (!now.progress_json.empty() && now.progress_json != seen.progress_json)
                        for (auto& sub : subs->second)
                          caf::anon_send(sub, train_event{now.id, "progress", now.progress_json});
                    }
                    if (now.state != job_state::queued && now.state != job_state::running) {
                      st.watched.erase(w);
                      close_subscribers(self, now);
                      return;
                    }
                    w->second = now;
                    if (subs == st.subscribers.end() || subs->second.empty())
                      st.watched.erase(w); // nobody follows it any more
                  },
                  [](caf::error&) {});
        }
      },
      [=](done_atom, const std::string& id, bool ok, std::string& payload) {
        auto& st = self->state;
        st.runs->erase(id);
        st.remote.erase(id);
        st.persisted_ms.erase(id);
        if (st.stopping.erase(id) != 0) { // cancelled: its work has ended now
          --st.running;
          schedule(self);
          return;
        }
        auto i = st.active.find(id);
        if (i == st.active.end())
          return; // cancelled meanwhile
        auto job = i->second;
        st.active.erase(i);
        --st.running;
        job.state = ok ? job_state::succeeded : job_state::failed;
        (ok ? job.result_json : job.error) = std::move(payload);
        job.finished_at = unix_now();
        if (ok)
          job.progress = 1;
        if (job.kind != kTrain) {
          std::error_code ec;
          fs::remove_all(job_dir(st, id), ec);
        }
        persist_held(self, job);
        close_subscribers(self, job);
        // A spec with "register": serve the model right away.
        auto spec = json::parse(job.spec_json, nullptr, false);
        if (ok && job.kind == kTrain && spec.is_object() && spec.contains("register") &&
            spec["register"].is_string()) {
          auto name = spec["register"].get<std::string>();
          register_model(
              self, job, name,
              [=](model_meta& m) {
                auto j = job; // note the registration in the job's result
                auto res = json::parse(j.result_json, nullptr, false);
                res["registered"] =
                    json{{"name", m.name}, {"version", m.version}, {"status", m.status}};
                j.result_json = res.dump();
                persist(self, j);
              },
              [=](const caf::error& e) {
                log::error("job {}: cannot register its model as {}: {}", id, name,
                           to_failure(e).message);
                auto j = job;
                auto res = json::parse(j.result_json, nullptr, false);
                res["registered"] = json{{"name", name}, {"error", to_failure(e).message}};
                j.result_json = res.dump();
                persist(self, j);
              });
        }
        schedule(self);
      },
  };
}

} // namespace rookery

#include "actors/job_manager.hpp"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "common/clock.hpp"
#include "common/crypto.hpp"
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
constexpr size_t kMaxHistoryPoints = 5000;

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
  return fs::path(st.jobs_dir) / id;
}

std::string input_path(const std::string& dir, const std::string& id) {
  return (fs::path(dir) / id / "input.bin").string();
}

status write_file(const std::string& path, const std::string& bytes) {
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  std::ofstream out(path + ".tmp", std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out)
    return fail(errc::internal, "cannot write job input " + path);
  fs::rename(path + ".tmp", path, ec); // atomic: a crash leaves no half file
  if (ec)
    return fail(errc::internal, "cannot write job input " + path + ": " + ec.message());
  return {};
}

/// The metric history of a training job (metrics.jsonl) as a JSON array.
std::string read_history(const fs::path& dir) {
  std::ifstream in(dir / "metrics.jsonl");
  std::deque<json> points;
  std::string line;
  while (std::getline(in, line)) {
    auto j = json::parse(line, nullptr, false);
    if (!j.is_object())
      continue;
    points.push_back(std::move(j));
    if (points.size() > kMaxHistoryPoints)
      points.pop_front();
  }
  json arr = json::array();
  for (auto& p : points)
    arr.push_back(std::move(p));
  return arr.dump();
}

const char* content_type_of(const fs::path& p) {
  auto ext = p.extension().string();
  if (ext == ".png")
    return "image/png";
  if (ext == ".json")
    return "application/json";
  if (ext == ".jsonl")
    return "application/x-ndjson";
  if (ext == ".txt")
    return "text/plain; charset=utf-8";
  return "application/octet-stream";
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
  st.active.erase(i);
  self->request(st.store, kStoreTimeout, caf::get_atom::value, job_atom::value, id)
      .then([=](job_record& j) { close_subscribers(self, j); }, [](caf::error&) {});
}

/// The trainer: one detached actor per running training job. fit() runs in
/// its first message handler (its own thread); events go to the manager.
caf::behavior trainer_actor(caf::event_based_actor* self, std::string id, std::string spec,
                            train_env env, std::string dir, std::shared_ptr<run_control> ctl,
                            job_manager_actor manager) {
  self->send(self, tick_atom::value);
  return {
      [=](tick_atom) {
        result<std::string> r = fail(errc::internal, "the training run ended unexpectedly");
        try {
          r = run_train_job(spec, env, dir, ctl->stop,
                            [&](const std::string& type, const std::string& payload) {
                              self->send(manager, train_event{id, type, payload});
                            });
        } catch (const std::exception& e) {
          r = fail(errc::internal, std::string{"the training run failed: "} + e.what());
        }
        // Always reported, so the manager frees the run's slot only now. On
        // shutdown the job stays unfinished in the store, to resume on restart.
        if (!ctl->shutdown) {
          if (r)
            self->send(manager, done_atom::value, id, true, *r);
          else
            self->send(manager, done_atom::value, id, false, r.error().message);
        }
        self->quit();
      },
  };
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

  // Subscribers that go away (the client hung up) stop getting events.
  self->set_down_handler([self](caf::down_msg& dm) {
    for (auto& [id, subs] : self->state.subscribers)
      subs.erase(std::remove_if(subs.begin(), subs.end(),
                                [&](const caf::actor& a) { return a.address() == dm.source; }),
                 subs.end());
  });

  // When the node stops, running trainers end at their next step and leave
  // their jobs unfinished (resumed from the last checkpoint on restart).
  self->attach_functor([runs = st.runs](const caf::error&) {
    for (auto& [id, ctl] : *runs) {
      ctl->shutdown = true;
      ctl->stop = true;
    }
  });

  // Starts queued jobs while there is room, then claims more from the store.
  auto claim = std::make_shared<std::function<void(bool)>>();
  auto schedule = std::make_shared<std::function<void()>>();
  *schedule = [=] {
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
      auto& job = i->second;
      if (job.kind == kTrain) {
        job.state = job_state::running;
        job.started_at = unix_now();
        job.error.clear();
        persist_held(self, job);
        ++st.running;
        auto ctl = std::make_shared<run_control>();
        (*st.runs)[id] = ctl;
        train_env env;
        env.paths = st.settings.paths;
        env.user_id = job.user_id;
        env.is_admin = true; // visibility of the dataset was checked at submission
        env.threads = st.settings.train_threads;
        auto dir = job_dir(st, id).string();
        std::error_code ec;
        fs::create_directories(dir, ec);
        self->system().spawn<caf::detached>(trainer_actor, id, job.spec_json, env, dir, ctl,
                                            caf::actor_cast<job_manager_actor>(self));
        for (auto& s : st.subscribers[id])
          caf::anon_send(s, train_event{id, "state", json{{"state", job.state}}.dump()});
        continue;
      }
      std::ifstream in(input_path(st.jobs_dir, id), std::ios::binary);
      std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (!in.good() && !in.eof()) {
        job.state = job_state::failed;
        job.error = "the job's input is gone";
        job.finished_at = unix_now();
        persist_held(self, job);
        st.active.erase(i);
        continue;
      }
      job.state = job_state::running;
      job.started_at = unix_now();
      persist_held(self, job);
      ++st.running;
      auto spec = json::parse(job.spec_json, nullptr, false);
      embed_request req;
      req.pipeline = spec.is_object() ? spec.value("pipeline", "") : "";
      req.mime = spec.is_object() ? spec.value("mime", "") : "";
      req.data = std::move(bytes);
      req.request_id = id;
      self->request(st.embed, kJobTimeout, std::move(req))
          .then(
              [=](embed_result& r) {
                self->send(self, done_atom::value, id, true, to_json(r).dump());
              },
              [=](caf::error& e) {
                self->send(self, done_atom::value, id, false, to_failure(e).message);
              });
    }
    st.queue.insert(st.queue.begin(), held.begin(), held.end());
    if (st.running + st.queue.size() < st.settings.max_running)
      (*claim)(false);
  };

  // A job this node now holds joins the local queue. One that was running
  // when its node stopped (this one before a restart, or another that died)
  // starts again: an embedding from its input on disk, a training run from
  // its last checkpoint.
  auto enqueue = [=](job_record j) {
    auto id = j.id;
    if (self->state.active.count(id) != 0)
      return;
    if (j.state == job_state::running || j.started_at != 0)
      log::info("job {}: {} (was {} on {})", id,
                j.kind == kTrain ? "resuming from its last checkpoint" : "running again",
                j.state, j.owner == self->state.settings.node_id ? "an earlier run" : j.owner);
    j.state = job_state::queued;
    j.started_at = 0;
    j.owner = self->state.settings.node_id;
    self->state.watched.erase(id); // its subscribers get events from here on
    self->state.active[id] = std::move(j);
    self->state.queue.push_back(id);
    (*schedule)();
  };

  // Claims waiting jobs from the store for the free slots (at start: every
  // unfinished job when the store is this node's own).
  *claim = [=](bool at_start) {
    auto& st = self->state;
    if (st.claiming)
      return;
    const bool take_all = at_start && !st.settings.shared;
    uint32_t busy = st.running + static_cast<uint32_t>(st.queue.size());
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
                enqueue(std::move(j));
            },
            [=](caf::error& e) {
              self->state.claiming = false;
              log::warn("cannot claim jobs: {}", to_failure(e).message);
            });
  };
  (*claim)(true);

  // Every poll_ms: renew this node's leases (a job missing from the answer was
  // cancelled elsewhere or taken over: stop it here), claim waiting jobs for
  // free slots, and turn the store's records of watched jobs into events.
  self->send(self, tick_atom::value);

  auto submit = [=](job_record j) -> caf::result<job_record> {
    auto& st = self->state;
    // Held at once when a slot is free here; otherwise left for the first
    // node with a free slot (this one included, when one frees).
    const bool take = st.running + st.queue.size() < st.settings.max_running;
    if (take) {
      j.owner = st.settings.node_id;
      j.lease_until = unix_now() + st.settings.lease_s;
    }
    auto rp = self->make_response_promise<job_record>();
    self->request(st.store, kStoreTimeout, caf::put_atom::value, j)
        .then(
            [=](caf::ok_atom) mutable {
              rp.deliver(j);
              if (take)
                enqueue(j);
            },
            [=](caf::error& e) mutable { rp.deliver(e); });
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
        if (auto st = write_file(input_path(self->state.jobs_dir, j.id), req.data); !st)
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
            j.history_json = read_history(job_dir(self->state, j.id));
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
        job.state = job_state::cancelled;
        job.finished_at = unix_now();
        st.active.erase(i);
        if (job.kind != kTrain) { // a training run keeps its checkpoints: it can resume
          std::error_code ec;
          fs::remove_all(job_dir(st, id), ec);
        }
        persist_held(self, job);
        close_subscribers(self, job);
        (*schedule)();
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
          (*claim)(false);
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
          job.progress_json = ev.json;
          auto p = json::parse(ev.json, nullptr, false);
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
            j.history_json = read_history(job_dir(self->state, j.id));
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
          auto dir = job_dir(self->state, j.id);
          std::error_code ec;
          artifact_reply out;
          if (path.empty()) {
            json arr = json::array();
            if (j.kind == kTrain && fs::is_directory(dir, ec))
              for (auto& e : fs::recursive_directory_iterator(dir, ec)) {
                if (!e.is_regular_file() || e.path().extension() == ".tmp")
                  continue;
                auto rel = fs::relative(e.path(), dir, ec).string();
                arr.push_back(json{{"path", rel},
                                   {"bytes", e.file_size(ec)},
                                   {"content_type", content_type_of(e.path())},
                                   {"href", "/v1/jobs/" + j.id + "/artifacts/" + rel}});
              }
            std::sort(arr.begin(), arr.end(),
                      [](const json& a, const json& b) { return a["path"] < b["path"]; });
            out.listing_json = json{{"job", j.id}, {"artifacts", arr}}.dump();
            {
              rp.deliver(out);
              return;
            }
          }
          // Only files inside the job's directory, never "..", never a link out.
          auto p = fs::path(path).lexically_normal();
          auto file = fs::weakly_canonical(dir / p, ec);
          auto root = fs::weakly_canonical(dir, ec);
          auto [r, f] = std::mismatch(root.begin(), root.end(), file.begin(), file.end());
          if (p.is_absolute() || path.find("..") != std::string::npos || r != root.end() ||
              !fs::is_regular_file(file, ec) || p.filename() == "input.bin") {
            rp.deliver(
                to_error(errc::not_found, "job '" + j.id + "' has no artifact '" + path + "'"));
            return;
          }
          out.file = file.string();
          out.content_type = content_type_of(file);
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
        (*claim)(false);
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
        st.persisted_ms.erase(id);
        if (st.stopping.erase(id) != 0) { // cancelled: its work has ended now
          --st.running;
          (*schedule)();
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
        (*schedule)();
      },
  };
}

} // namespace rookery

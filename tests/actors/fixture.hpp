// Shared pieces of the deterministic actor tests (CAF 0.17 test coordinator):
// mock peers (typed actors standing in for the store, the hashers and the
// embedding service) that record every request they get, a probe that asks an
// actor something and keeps the answer, and the fixture that tears it all
// down. Include after defining CAF_SUITE.
//
// Everything runs on the test coordinator: nothing happens until the test
// calls sched.run() (every queued message, no timers) or steps with expect().
// Timers (request timeouts, delayed ticks, session expiry) never fire during a
// test; only the base fixture's destructor triggers them, after every actor
// here is gone.
#pragma once

#include <caf/all.hpp>
#include <caf/test/dsl.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "actors/cluster.hpp"
#include "common/clock.hpp"
#include "common/crypto.hpp"
#include "common/errc.hpp"
#include "messages/protocol.hpp"
#include "messages/records.hpp"
#include "messages/registration.hpp"

namespace rookery::testing {

// -- recorded requests ----------------------------------------------------------

using message_log = std::vector<caf::message>;

/// How many recorded messages have the types Ts... (atoms match by value).
template <class... Ts>
size_t count_of(const message_log& log) {
  return static_cast<size_t>(std::count_if(log.begin(), log.end(), [](const caf::message& m) {
    return m.match_elements<Ts...>();
  }));
}

/// The recorded messages of types Ts..., oldest first.
template <class... Ts>
std::vector<caf::message> all_of(const message_log& log) {
  std::vector<caf::message> out;
  for (auto& m : log)
    if (m.match_elements<Ts...>())
      out.push_back(m);
  return out;
}

// -- the store ------------------------------------------------------------------

/// What the mock store answers, and what it was asked. The test body and the
/// mock run on the same thread (the test coordinator's), so no locking.
struct store_script {
  message_log log;
  std::map<uint64_t, user_record> users;            // by id
  std::map<std::string, user_record> users_by_name; // by lockout (lower-cased) name
  std::map<std::string, session_record> sessions;   // by token hash
  // Answered instead of a session (when set): e.g. errc::unavailable.
  errc session_error = errc::none;
  std::map<std::string, login_failures_record> failures; // by name as sent
  std::map<std::string, job_record> jobs;                // get / cancel by id
  std::vector<job_record> claimable; // the next claim's answer, then empty
  std::vector<std::string> renewed;  // every renewal's answer
};

inline std::string lower(std::string s) {
  for (auto& c : s)
    if (c >= 'A' && c <= 'Z')
      c = static_cast<char>(c - 'A' + 'a');
  return s;
}

inline store_actor::behavior_type mock_store(store_actor::pointer, std::shared_ptr<store_script> s) {
  auto note = [s](caf::message m) { s->log.push_back(std::move(m)); };
  auto unexpected = [](const char* what) { return to_error(errc::internal, std::string{"mock store: "} + what); };
  return {
    [=](caf::put_atom a, user_record& u) -> caf::result<user_record> {
      note(caf::make_message(a, u));
      u.id = 1000 + s->users.size();
      s->users[u.id] = u;
      s->users_by_name[lower(u.username)] = u;
      return u;
    },
    [=](caf::get_atom a, user_atom b, const std::string& name) -> caf::result<user_record> {
      note(caf::make_message(a, b, name));
      auto i = s->users_by_name.find(lower(name));
      if (i == s->users_by_name.end())
        return to_error(errc::not_found, "no user '" + name + "'");
      return i->second;
    },
    [=](caf::get_atom a, user_atom b, uint64_t id) -> caf::result<user_record> {
      note(caf::make_message(a, b, id));
      auto i = s->users.find(id);
      if (i == s->users.end())
        return to_error(errc::not_found, "no user " + std::to_string(id));
      return i->second;
    },
    [=](count_atom a, user_atom b) -> caf::result<int64_t> {
      note(caf::make_message(a, b));
      return static_cast<int64_t>(s->users.size());
    },
    [=](caf::put_atom a, const session_record& r) -> caf::result<caf::ok_atom> {
      note(caf::make_message(a, r));
      s->sessions[r.token_hash] = r;
      return caf::ok_atom::value;
    },
    [=](caf::get_atom a, session_atom b, const std::string& hash) -> caf::result<session_record> {
      note(caf::make_message(a, b, hash));
      if (s->session_error != errc::none)
        return to_error(s->session_error, "mock store: session lookup fails");
      auto i = s->sessions.find(hash);
      if (i == s->sessions.end())
        return to_error(errc::not_found, "no such session");
      return i->second;
    },
    [=](caf::delete_atom a, session_atom b, const std::string& id) -> caf::result<caf::ok_atom> {
      note(caf::make_message(a, b, id));
      for (auto i = s->sessions.begin(); i != s->sessions.end(); ++i)
        if (i->second.id == id) {
          s->sessions.erase(i);
          break;
        }
      return caf::ok_atom::value;
    },
    [=](list_atom a, session_atom b, int64_t now) -> caf::result<std::vector<session_record>> {
      note(caf::make_message(a, b, now));
      return std::vector<session_record>{};
    },
    [=](caf::put_atom a, const key_record& k) -> caf::result<caf::ok_atom> {
      note(caf::make_message(a, k));
      return caf::ok_atom::value;
    },
    [=](list_atom a, key_atom b, uint64_t user) -> caf::result<std::vector<key_record>> {
      note(caf::make_message(a, b, user));
      return std::vector<key_record>{};
    },
    [=](caf::get_atom a, key_atom b, const std::string& hash) -> caf::result<key_record> {
      note(caf::make_message(a, b, hash));
      return to_error(errc::not_found, "no such key");
    },
    [=](caf::delete_atom a, key_atom b, uint64_t user,
        const std::string& id) -> caf::result<caf::ok_atom> {
      note(caf::make_message(a, b, user, id));
      return caf::ok_atom::value;
    },
    [=](caf::put_atom a, const job_record& j) -> caf::result<caf::ok_atom> {
      note(caf::make_message(a, j));
      s->jobs[j.id] = j;
      return caf::ok_atom::value;
    },
    [=](caf::update_atom a, const job_record& j) -> caf::result<caf::ok_atom> {
      note(caf::make_message(a, j));
      return caf::ok_atom::value;
    },
    [=](caf::get_atom a, job_atom b, const std::string& id) -> caf::result<job_record> {
      note(caf::make_message(a, b, id));
      auto i = s->jobs.find(id);
      if (i == s->jobs.end())
        return to_error(errc::not_found, "no job '" + id + "'");
      return i->second;
    },
    [=](list_atom a, job_atom b, uint64_t user) -> caf::result<std::vector<job_record>> {
      note(caf::make_message(a, b, user));
      return std::vector<job_record>{};
    },
    [=](list_atom a, job_atom b) -> caf::result<std::vector<job_record>> {
      note(caf::make_message(a, b));
      return std::vector<job_record>{};
    },
    [=](caf::update_atom a, const job_record& j,
        const std::string& holder) -> caf::result<caf::ok_atom> {
      note(caf::make_message(a, j, holder));
      return caf::ok_atom::value;
    },
    [=](claim_atom a, const std::string& owner, int64_t now, int64_t lease_s, uint32_t limit,
        bool ignore_leases) -> caf::result<std::vector<job_record>> {
      note(caf::make_message(a, owner, now, lease_s, limit, ignore_leases));
      auto out = std::move(s->claimable);
      s->claimable.clear();
      for (auto& j : out) {
        j.owner = owner;
        j.lease_until = now + lease_s;
      }
      return out;
    },
    [=](claim_atom a, job_atom b, const std::string& id, const std::string& owner, int64_t now,
        int64_t lease_s) -> caf::result<job_record> {
      note(caf::make_message(a, b, id, owner, now, lease_s));
      return unexpected("claim of one job");
    },
    [=](renew_atom a, const std::string& owner,
        int64_t until) -> caf::result<std::vector<std::string>> {
      note(caf::make_message(a, owner, until));
      return s->renewed;
    },
    [=](release_atom a, const std::string& owner) -> caf::result<caf::ok_atom> {
      note(caf::make_message(a, owner));
      return caf::ok_atom::value;
    },
    [=](cancel_atom a, job_atom b, const std::string& id, int64_t now) -> caf::result<job_record> {
      note(caf::make_message(a, b, id, now));
      auto i = s->jobs.find(id);
      if (i == s->jobs.end())
        return to_error(errc::not_found, "no job '" + id + "'");
      i->second.state = job_state::cancelled;
      i->second.finished_at = now;
      return i->second;
    },
    [=](failure_atom a, const std::string& name, int64_t now,
        int64_t window_s) -> caf::result<login_failures_record> {
      note(caf::make_message(a, name, now, window_s));
      auto& f = s->failures[name];
      f.username = name;
      if (f.count == 0 || now - f.first_at > window_s) {
        f.count = 0;
        f.first_at = now;
      }
      ++f.count;
      return f;
    },
    [=](caf::get_atom a, failure_atom b,
        const std::string& name) -> caf::result<login_failures_record> {
      note(caf::make_message(a, b, name));
      auto i = s->failures.find(name);
      if (i == s->failures.end())
        return login_failures_record{name, 0, 0};
      return i->second;
    },
    [=](caf::delete_atom a, failure_atom b, const std::string& name) -> caf::result<caf::ok_atom> {
      note(caf::make_message(a, b, name));
      s->failures.erase(name);
      return caf::ok_atom::value;
    },
    [=](caf::put_atom a, const model_record& m) -> caf::result<caf::ok_atom> {
      note(caf::make_message(a, m));
      return caf::ok_atom::value;
    },
    [=](list_atom a, model_atom b) -> caf::result<std::vector<model_record>> {
      note(caf::make_message(a, b));
      return std::vector<model_record>{};
    },
  };
}

// -- the hashers ----------------------------------------------------------------

/// A hasher without Argon2: hash(p) = "H(" + p + ")"; verify compares.
inline hasher_actor::behavior_type mock_hasher(hasher_actor::pointer,
                                               std::shared_ptr<message_log> log) {
  return {
    [=](hash_atom a, const std::string& password) -> caf::result<std::string> {
      log->push_back(caf::make_message(a, password));
      return "H(" + password + ")";
    },
    [=](verify_atom a, const std::string& hash, const std::string& password) -> caf::result<bool> {
      log->push_back(caf::make_message(a, hash, password));
      return hash == "H(" + password + ")";
    },
  };
}

// -- the embedding service ------------------------------------------------------

struct embed_script {
  message_log log;
  bool hold = false; // never answer embed requests (the job stays running)
  std::vector<caf::typed_response_promise<embed_result>> held;
};

inline embed_service_actor::behavior_type mock_embed(embed_service_actor::pointer self,
                                                     std::shared_ptr<embed_script> s) {
  return {
    [=](embed_request& req) -> caf::result<embed_result> {
      s->log.push_back(caf::make_message(req));
      if (s->hold) {
        auto rp = self->make_response_promise<embed_result>();
        s->held.push_back(rp);
        return rp;
      }
      embed_result r;
      r.pipeline = req.pipeline.empty() ? "mock" : req.pipeline;
      r.mime = req.mime;
      r.model = "mock-model";
      r.dim = 2;
      r.embedding = {0.5f, static_cast<float>(req.data.size())};
      r.node = "mock";
      return r;
    },
    [=](list_atom a) -> caf::result<std::vector<pipeline_info>> {
      s->log.push_back(caf::make_message(a));
      return std::vector<pipeline_info>{};
    },
    [=](caf::put_atom a, const std::string& name,
        const std::string& model) -> caf::result<pipeline_info> {
      s->log.push_back(caf::make_message(a, name, model));
      return to_error(errc::internal, "mock embed: no registration");
    },
    [=](caf::put_atom a, const pipeline_spec_msg& spec) -> caf::result<pipeline_info> {
      s->log.push_back(caf::make_message(a, spec));
      return to_error(errc::internal, "mock embed: no registration");
    },
    [=](caf::delete_atom a, const std::string& name) -> caf::result<caf::ok_atom> {
      s->log.push_back(caf::make_message(a, name));
      return caf::ok_atom::value;
    },
    [=](caf::get_atom a, model_atom m) -> caf::result<model_registry_actor> {
      s->log.push_back(caf::make_message(a, m));
      return to_error(errc::unavailable, "mock embed: no models");
    },
    [=](caf::get_atom a, job_atom j) -> caf::result<trainer_host_actor> {
      s->log.push_back(caf::make_message(a, j));
      return to_error(errc::unavailable, "mock embed: no trainer host");
    },
  };
}

// -- the worker directory (a gateway's cluster) ------------------------------------

/// What the connected workers lend: registries and trainer hosts, by name.
struct directory_script {
  std::vector<std::pair<std::string, caf::actor>> registries;
  std::vector<std::pair<std::string, caf::actor>> hosts;
};

inline worker_directory_actor::behavior_type mock_directory(worker_directory_actor::pointer,
                                                            std::shared_ptr<directory_script> s) {
  auto split = [](const std::vector<std::pair<std::string, caf::actor>>& xs) {
    std::vector<caf::actor> handles;
    std::vector<std::string> names;
    for (auto& [n, h] : xs) {
      handles.push_back(h);
      names.push_back(n);
    }
    return caf::result<std::vector<caf::actor>, std::vector<std::string>>{std::move(handles),
                                                                          std::move(names)};
  };
  return {
    [=](list_atom, model_atom) { return split(s->registries); },
    [=](list_atom, job_atom) { return split(s->hosts); },
  };
}

// -- asking an actor ------------------------------------------------------------

/// The answer a probe got: `done` once any answer came.
template <class T>
struct reply {
  bool done = false;
  bool ok = false;
  T value{};
  caf::error error;
  errc code() const { return ok ? errc::none : to_failure(error).code; }
};

// -- the fixture ----------------------------------------------------------------

struct test_config : caf::actor_system_config {
  test_config() {
    register_types(*this);
  }
};

struct actor_fixture : test_coordinator_fixture<test_config> {
  std::vector<caf::actor> spawned; // stopped before the system goes
  caf::actor last_probe;           // the probe of the latest ask()

  actor_fixture() {
    crypto::init();
  }

  ~actor_fixture() override {
    // The job manager re-arms its tick for ever and auth's sessions hold auth:
    // without an explicit stop the base destructor (run(): messages and every
    // timeout until nothing is left) would spin, and the system's destructor
    // would wait for them.
    for (auto& a : spawned)
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    sched.run();
  }

  template <class Handle>
  Handle keep(Handle h) {
    spawned.push_back(caf::actor_cast<caf::actor>(h));
    return h;
  }

  /// Spawns a probe that sends `xs...` to `dest` as a request and keeps the
  /// answer. Nothing is sent until the scheduler runs the probe.
  template <class T, class Handle, class... Ts>
  std::shared_ptr<reply<T>> ask(Handle dest, Ts... xs) {
    auto r = std::make_shared<reply<T>>();
    spawn_probe(r, dest, [r](T& v) {
      r->done = r->ok = true;
      r->value = std::move(v);
    }, xs...);
    return r;
  }

  /// ask() for an answer of two values.
  template <class A, class B, class Handle, class... Ts>
  std::shared_ptr<reply<std::pair<A, B>>> ask2(Handle dest, Ts... xs) {
    auto r = std::make_shared<reply<std::pair<A, B>>>();
    spawn_probe(r, dest, [r](A& a, B& b) {
      r->done = r->ok = true;
      r->value = {std::move(a), std::move(b)};
    }, xs...);
    return r;
  }

  /// The probe behind ask(): `on_value` keeps the answer (a typed handler);
  /// an error is kept here. The probe idles afterwards, stopped with the rest.
  template <class T, class Handle, class F, class... Ts>
  void spawn_probe(std::shared_ptr<reply<T>> r, Handle dest, F on_value, Ts... xs) {
    auto probe = sys.spawn([=](caf::event_based_actor* p) -> caf::behavior {
      p->request(dest, caf::infinite, xs...).then(on_value, [=](caf::error& e) {
        r->done = true;
        r->error = std::move(e);
      });
      return {[](caf::ok_atom) {}};
    });
    last_probe = keep(probe);
  }
};

/// A fresh empty directory, removed at the end of the test.
struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "rookery-actors-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr)
      throw std::runtime_error("mkdtemp failed");
    path = tmpl;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

inline void write_bytes(const std::filesystem::path& file, const std::string& bytes) {
  std::filesystem::create_directories(file.parent_path());
  std::ofstream out(file, std::ios::binary);
  out << bytes;
}

inline void sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

} // namespace rookery::testing

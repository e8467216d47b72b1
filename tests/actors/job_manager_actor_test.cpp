// The job manager against a mock store and a mock embedding service, on CAF's
// test coordinator (spawned normally, not detached, so every step is
// deterministic). Embedding jobs only: training jobs spawn detached trainers.
#define CAF_SUITE job_manager_actor
#include "actors/job_manager.hpp"

#include "tests/actors/fixture.hpp"

using namespace rookery;
using namespace rookery::testing;

namespace {

using claim_msg = std::tuple<std::string, int64_t, int64_t, uint32_t, bool>;

/// A worker's trainer host: takes runs unless full, records everything.
struct host_script {
  message_log log;
  bool full = false;
};

trainer_host_actor::behavior_type mock_host(trainer_host_actor::pointer,
                                            std::shared_ptr<host_script> s) {
  return {
    [=](train_event& ev) { s->log.push_back(caf::make_message(ev)); },
    [=](done_atom a, const std::string& id, bool ok, std::string& p) {
      s->log.push_back(caf::make_message(a, id, ok, p));
    },
    [=](start_atom a, train_run& r) -> caf::result<uint32_t, uint32_t> {
      s->log.push_back(caf::make_message(a, r));
      if (s->full)
        return to_error(errc::conflict, "every training slot of this worker is taken");
      return {1u, 1u};
    },
    [=](cancel_atom a, const std::string& id) { s->log.push_back(caf::make_message(a, id)); },
    [=](info_atom) -> caf::result<uint32_t, uint32_t> { return {0u, 1u}; },
  };
}

std::vector<std::string> started_jobs(const host_script& h) {
  std::vector<std::string> out;
  for (auto& m : all_of<start_atom, train_run>(h.log))
    out.push_back(m.get_as<train_run>(1).job_id);
  return out;
}

struct job_manager_fixture : actor_fixture {
  std::shared_ptr<store_script> db = std::make_shared<store_script>();
  std::shared_ptr<embed_script> emb = std::make_shared<embed_script>();
  temp_dir dir;
  store_actor store;
  embed_service_actor embed;
  job_manager_actor jm;
  principal alice;
  int64_t started_at = 0;

  job_manager_fixture() {
    store = keep(sys.spawn(mock_store, db));
    embed = keep(sys.spawn(mock_embed, emb));
    sched.run();
    alice.user_id = 7;
    alice.username = "alice";
    alice.scopes = {"embed", "train"};
  }

  job_manager_settings settings(bool shared, uint32_t max_running = 2) {
    job_manager_settings s;
    s.data_dir = dir.path.string();
    s.max_running = max_running;
    s.node_id = "node-a";
    s.shared = shared;
    s.lease_s = 15;
    s.poll_ms = 1000;
    return s;
  }

  /// An unfinished embedding job of alice's, with its input on disk.
  job_record embed_job(const std::string& id, const std::string& state,
                       const std::string& input = "input-bytes") {
    job_record j;
    j.id = id;
    j.user_id = alice.user_id;
    j.kind = "embed";
    j.state = state;
    j.spec_json = R"({"pipeline":"image","mime":"image/png","bytes":11})";
    j.created_at = unix_now() - 60;
    if (state == job_state::running)
      j.started_at = unix_now() - 30;
    write_bytes(dir.path / "jobs" / id / "input.bin", input);
    return j;
  }

  /// A waiting training job of alice's.
  job_record train_job(const std::string& id) {
    job_record j;
    j.id = id;
    j.user_id = alice.user_id;
    j.kind = "train";
    j.state = job_state::queued;
    j.spec_json = R"({"trainer":"classifier","dataset":"fashion-mnist"})";
    j.created_at = unix_now() - 60;
    return j;
  }

  /// The last state this node wrote for job `id` (as its holder).
  std::string written_state(const std::string& id) const {
    std::string last;
    for (auto& m : all_of<caf::update_atom, job_record, std::string>(db->log))
      if (m.get_as<job_record>(1).id == id)
        last = m.get_as<job_record>(1).state;
    return last;
  }

  void start(job_manager_settings s) {
    started_at = unix_now();
    jm = keep(sys.spawn(job_manager_impl, store, embed, model_registry_actor{}, s));
  }

  std::vector<claim_msg> claims() const {
    std::vector<claim_msg> out;
    for (auto& m : all_of<claim_atom, std::string, int64_t, int64_t, uint32_t, bool>(db->log))
      out.emplace_back(m.get_as<std::string>(1), m.get_as<int64_t>(2), m.get_as<int64_t>(3),
                       m.get_as<uint32_t>(4), m.get_as<bool>(5));
    return out;
  }

  std::vector<caf::message> renewals() const {
    return all_of<renew_atom, std::string, int64_t>(db->log);
  }

  size_t job_gets(const std::string& id) const {
    size_t n = 0;
    for (auto& m : all_of<caf::get_atom, job_atom, std::string>(db->log))
      n += m.get_as<std::string>(2) == id ? 1 : 0;
    return n;
  }

  std::shared_ptr<reply<job_record>> get(const std::string& id) {
    auto r = ask<job_record>(jm, caf::get_atom::value, alice, id);
    sched.run();
    return r;
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(job_manager_actor_tests, job_manager_fixture)

CAF_TEST(a manager with its own store takes every unfinished job back at start) {
  db->claimable = {embed_job("j_back", job_state::running, "the-bytes")};
  start(settings(false));
  sched.run_once(); // the manager's start: a claim, and its first tick to itself
  expect((claim_atom, std::string, int64_t, int64_t, uint32_t, bool),
         from(jm).to(store).with(_, std::string{"node-a"}, _, int64_t{15}, 0u, true));
  sched.run();
  auto c = claims();
  CAF_REQUIRE_GREATER_OR_EQUAL(c.size(), 1u);
  CAF_CHECK_GREATER_OR_EQUAL(std::get<1>(c[0]), started_at); // now
  CAF_CHECK_LESS_OR_EQUAL(std::get<1>(c[0]), unix_now());
  // Taken back even though it was running: it runs again from its input.
  auto asked = all_of<embed_request>(emb->log);
  CAF_REQUIRE_EQUAL(asked.size(), 1u);
  CAF_CHECK_EQUAL(asked[0].get_as<embed_request>(0).request_id, "j_back");
  CAF_CHECK_EQUAL(asked[0].get_as<embed_request>(0).data, "the-bytes");
  CAF_CHECK_EQUAL(asked[0].get_as<embed_request>(0).pipeline, "image");
  // Its end is written while this node holds it (update with holder).
  std::string last_state;
  for (auto& m : all_of<caf::update_atom, job_record, std::string>(db->log)) {
    CAF_CHECK_EQUAL(m.get_as<std::string>(2), "node-a");
    if (m.get_as<job_record>(1).id == "j_back")
      last_state = m.get_as<job_record>(1).state;
  }
  CAF_CHECK_EQUAL(last_state, job_state::succeeded);
  CAF_CHECK(!std::filesystem::exists(dir.path / "jobs" / "j_back"));
  // Any later claim (free slots) is a limited one with leases.
  for (size_t i = 1; i < c.size(); ++i) {
    CAF_CHECK_EQUAL(std::get<4>(c[i]), false);
    CAF_CHECK_GREATER(std::get<3>(c[i]), 0u);
  }
}

CAF_TEST(a manager on a shared store claims only max_running jobs at start) {
  start(settings(true, 3));
  sched.run_once();
  expect((claim_atom, std::string, int64_t, int64_t, uint32_t, bool),
         from(jm).to(store).with(_, std::string{"node-a"}, _, int64_t{15}, 3u, false));
  sched.run();
  auto c = claims();
  CAF_REQUIRE_EQUAL(c.size(), 1u); // the start's tick finds the claim in flight
  CAF_CHECK_EQUAL(std::get<3>(c[0]), 3u);
  CAF_CHECK_EQUAL(std::get<4>(c[0]), false);
}

CAF_TEST(a tick renews the leases of this node until now plus lease_s) {
  start(settings(true));
  sched.run();
  auto before = renewals().size();
  CAF_CHECK_EQUAL(before, 1u); // the tick sent at start
  auto t0 = unix_now();
  caf::anon_send(jm, tick_atom::value);
  sched.run_once(); // only the manager runs: the renewal is next in the store's mailbox
  expect((renew_atom, std::string, int64_t), from(jm).to(store).with(_, std::string{"node-a"}, _));
  sched.run();
  auto r = renewals();
  CAF_REQUIRE_EQUAL(r.size(), before + 1);
  CAF_CHECK_EQUAL(r.back().get_as<std::string>(1), "node-a");
  CAF_CHECK_GREATER_OR_EQUAL(r.back().get_as<int64_t>(2), t0 + 15);
  CAF_CHECK_LESS_OR_EQUAL(r.back().get_as<int64_t>(2), unix_now() + 15);
  // With every slot free, the tick also asks for waiting jobs.
  auto c = claims();
  CAF_REQUIRE_EQUAL(c.size(), 2u);
  CAF_CHECK_EQUAL(std::get<3>(c.back()), 2u);
  CAF_CHECK_EQUAL(std::get<4>(c.back()), false);
}

CAF_TEST(a job missing from the renewal answer is dropped here) {
  emb->hold = true; // the embedding never ends: the job stays running here
  db->claimable = {embed_job("j_held", job_state::queued)};
  db->renewed = {"j_held"};
  start(settings(false));
  sched.run();
  CAF_REQUIRE_EQUAL(emb->held.size(), 1u);
  // The store's record says otherwise (cancelled on another gateway).
  job_record stored;
  stored.id = "j_held";
  stored.user_id = alice.user_id;
  stored.kind = "embed";
  stored.state = job_state::cancelled;
  stored.owner = "node-a";
  db->jobs["j_held"] = stored;
  // Held: a get is answered from the local record, the store is not asked.
  auto local = get("j_held");
  CAF_REQUIRE(local->ok);
  CAF_CHECK_EQUAL(local->value.state, job_state::running);
  CAF_CHECK_EQUAL(local->value.owner, "node-a");
  CAF_CHECK_EQUAL(job_gets("j_held"), 0u);
  // A renewal that still names it keeps it.
  caf::anon_send(jm, tick_atom::value);
  sched.run();
  CAF_CHECK_EQUAL(get("j_held")->value.state, job_state::running);
  CAF_CHECK_EQUAL(job_gets("j_held"), 0u);
  // A renewal without it: no longer this node's.
  db->renewed.clear();
  caf::anon_send(jm, tick_atom::value);
  sched.run();
  auto after_drop = job_gets("j_held"); // lose() fetches the record for subscribers
  auto remote = get("j_held");
  CAF_REQUIRE(remote->ok);
  CAF_CHECK_EQUAL(remote->value.state, job_state::cancelled);
  CAF_CHECK_EQUAL(job_gets("j_held"), after_drop + 1);
  // Dropped without writing it: the store's record is not overwritten.
  for (auto& m : all_of<caf::update_atom, job_record, std::string>(db->log))
    CAF_CHECK_NOT_EQUAL(m.get_as<job_record>(1).state, job_state::cancelled);
}

CAF_TEST(cancelling a job held elsewhere goes to the store) {
  start(settings(true));
  sched.run();
  job_record other;
  other.id = "j_other";
  other.user_id = alice.user_id;
  other.kind = "embed";
  other.state = job_state::running;
  other.owner = "node-b";
  other.lease_until = unix_now() + 15;
  db->jobs["j_other"] = other;
  auto t0 = unix_now();
  auto r = ask<job_record>(jm, cancel_atom::value, alice, std::string{"j_other"});
  sched.run();
  CAF_REQUIRE(r->done);
  CAF_REQUIRE(r->ok);
  CAF_CHECK_EQUAL(r->value.state, job_state::cancelled);
  CAF_CHECK_EQUAL(r->value.owner, "node-b");
  auto cancels = all_of<cancel_atom, job_atom, std::string, int64_t>(db->log);
  CAF_REQUIRE_EQUAL(cancels.size(), 1u);
  CAF_CHECK_EQUAL(cancels[0].get_as<std::string>(2), "j_other");
  CAF_CHECK_GREATER_OR_EQUAL(cancels[0].get_as<int64_t>(3), t0);
  CAF_CHECK_LESS_OR_EQUAL(cancels[0].get_as<int64_t>(3), unix_now());
  // This node never writes a job it does not hold.
  CAF_CHECK_EQUAL((count_of<caf::update_atom, job_record, std::string>(db->log)), 0u);
  CAF_CHECK_EQUAL((count_of<caf::update_atom, job_record>(db->log)), 0u);
}

CAF_TEST(cancelling a job of another user is not_found and never reaches the store) {
  start(settings(true));
  sched.run();
  job_record other;
  other.id = "j_bob";
  other.user_id = 99;
  other.kind = "embed";
  other.state = job_state::queued;
  db->jobs["j_bob"] = other;
  auto r = ask<job_record>(jm, cancel_atom::value, alice, std::string{"j_bob"});
  sched.run();
  CAF_REQUIRE(r->done);
  CAF_CHECK(r->code() == errc::not_found);
  CAF_CHECK_EQUAL((count_of<cancel_atom, job_atom, std::string, int64_t>(db->log)), 0u);
  CAF_CHECK_EQUAL(db->jobs["j_bob"].state, job_state::queued);
}

CAF_TEST(a gateway runs training on the first worker with a free slot and again elsewhere when it dies) {
  auto h1s = std::make_shared<host_script>();
  auto h2s = std::make_shared<host_script>();
  h1s->full = true;
  auto h1 = keep(sys.spawn(mock_host, h1s));
  auto h2 = sys.spawn(mock_host, h2s); // killed below
  auto dirs = std::make_shared<directory_script>();
  dirs->hosts = {{"w1:1", caf::actor_cast<caf::actor>(h1)}, {"w2:2", caf::actor_cast<caf::actor>(h2)}};
  auto directory = keep(sys.spawn(mock_directory, dirs));
  db->claimable = {train_job("j_t")};
  auto s = settings(true);
  s.trainer_hosts = directory;
  start(s);
  sched.run();
  // w1 is full; w2 takes it, with the job's directory and this manager as receiver.
  CAF_CHECK_EQUAL(started_jobs(*h1s), std::vector<std::string>{"j_t"});
  auto runs = all_of<start_atom, train_run>(h2s->log);
  CAF_REQUIRE_EQUAL(runs.size(), 1u);
  auto run = runs[0].get_as<train_run>(1);
  CAF_CHECK_EQUAL(run.job_id, "j_t");
  CAF_CHECK_EQUAL(run.user_id, alice.user_id);
  CAF_CHECK_EQUAL(run.job_dir, std::filesystem::absolute(dir.path / "jobs" / "j_t").string());
  CAF_CHECK(run.receiver == caf::actor_cast<caf::actor>(jm));
  CAF_CHECK_EQUAL(written_state("j_t"), job_state::running);
  // Its progress comes back through the host and names the worker.
  caf::anon_send(jm, train_event{"j_t", "progress", R"({"step":5,"total_steps":10})"});
  sched.run();
  auto now = get("j_t");
  CAF_REQUIRE(now->ok);
  CAF_CHECK_EQUAL(now->value.state, job_state::running);
  CAF_CHECK(now->value.progress_json.find(R"("worker":"w2:2")") != std::string::npos);
  CAF_CHECK_EQUAL(now->value.progress, 0.5);
  // w2 dies; w1 has room now: the job goes there (resuming from its checkpoint).
  h1s->full = false;
  caf::anon_send_exit(h2, caf::exit_reason::kill);
  sched.run();
  CAF_CHECK_EQUAL(started_jobs(*h1s), (std::vector<std::string>{"j_t", "j_t"}));
  CAF_CHECK_EQUAL(get("j_t")->value.state, job_state::running);
  // It ends there.
  caf::anon_send(jm, done_atom::value, std::string{"j_t"}, true, std::string{R"({"steps":10})"});
  sched.run();
  CAF_CHECK_EQUAL(written_state("j_t"), job_state::succeeded);
}

CAF_TEST(a gateway with no free worker slot keeps the job queued and cancel reaches the worker) {
  auto hs = std::make_shared<host_script>();
  hs->full = true;
  auto h = keep(sys.spawn(mock_host, hs));
  auto dirs = std::make_shared<directory_script>();
  dirs->hosts = {{"w1:1", caf::actor_cast<caf::actor>(h)}};
  auto directory = keep(sys.spawn(mock_directory, dirs));
  db->claimable = {train_job("j_wait")};
  db->renewed = {"j_next", "j_wait"}; // the store says this node still holds them
  auto s = settings(true, 1);
  s.trainer_hosts = directory;
  start(s);
  sched.run();
  CAF_CHECK_EQUAL(get("j_wait")->value.state, job_state::queued);
  CAF_CHECK_EQUAL(written_state("j_wait"), job_state::queued);
  // The next tick offers it again; now the worker takes it.
  hs->full = false;
  caf::anon_send(jm, tick_atom::value);
  sched.run();
  CAF_CHECK_EQUAL(started_jobs(*hs), (std::vector<std::string>{"j_wait", "j_wait"}));
  CAF_CHECK_EQUAL(get("j_wait")->value.state, job_state::running);
  auto c = ask<job_record>(jm, cancel_atom::value, alice, std::string{"j_wait"});
  sched.run();
  CAF_REQUIRE(c->ok);
  CAF_CHECK_EQUAL(c->value.state, job_state::cancelled);
  auto cancels = all_of<cancel_atom, std::string>(hs->log);
  CAF_REQUIRE_EQUAL(cancels.size(), 1u);
  CAF_CHECK_EQUAL(cancels[0].get_as<std::string>(1), "j_wait");
  // Its slot stays taken until the worker reports the run's end.
  db->claimable = {train_job("j_next")};
  caf::anon_send(jm, tick_atom::value);
  sched.run();
  CAF_CHECK_EQUAL(started_jobs(*hs).size(), 2u);
  caf::anon_send(jm, done_atom::value, std::string{"j_wait"}, false, std::string{"stopped"});
  sched.run();
  caf::anon_send(jm, tick_atom::value);
  sched.run();
  CAF_CHECK_EQUAL(started_jobs(*hs).back(), "j_next");
  CAF_CHECK_EQUAL(written_state("j_wait"), job_state::cancelled);
}

CAF_TEST_FIXTURE_SCOPE_END()

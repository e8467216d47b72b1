// Several gateways on one PostgreSQL (the CTest fixture "pg"), as real
// processes: accounts, sessions, keys and the login lockout hold across them;
// jobs are claimed, spread over the nodes with free slots, and a job whose node
// is SIGKILLed resumes on the other from its last checkpoint.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <set>
#include <thread>

#include <map>
#include <mutex>

#include <arpa/inet.h>
#include <csignal>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.hpp"

using json = nlohmann::json;
using namespace rookery::test;

namespace {

header_list bearer(const std::string& token) {
  return {{"Authorization", "Bearer " + token}};
}

/// A schema of its own in the fixture's database, dropped afterwards; `uri`
/// is what the gateways get as --store.
struct pg_schema {
  std::string admin, name, uri;
  pg_schema() {
    const char* dir = std::getenv("ROOKERY_TEST_PG_DIR");
    REQUIRE(dir != nullptr);
    std::ifstream in(std::string(dir) + "/dsn");
    std::getline(in, admin);
    INFO("the pg fixture did not start: no " << dir << "/dsn");
    REQUIRE(!admin.empty());
    static std::atomic<int> counter{0};
    name = "it_" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
    exec("DROP SCHEMA IF EXISTS " + name + " CASCADE");
    exec("CREATE SCHEMA " + name);
    uri = admin + (admin.find('?') == std::string::npos ? "?" : "&") + "options=-csearch_path%3D" + name;
  }
  ~pg_schema() { exec("DROP SCHEMA IF EXISTS " + name + " CASCADE"); }
  std::string exec(const std::string& sql, bool in_schema = false) const {
    PGconn* c = PQconnectdb((in_schema ? uri : admin).c_str());
    std::string out;
    if (PQstatus(c) == CONNECTION_OK) {
      PGresult* r = PQexec(c, sql.c_str());
      if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0)
        out = PQgetvalue(r, 0, 0);
      PQclear(r);
    }
    PQfinish(c);
    return out;
  }
};

/// Settings of a gateway in these tests: the shared store, short leases and
/// revalidation so the tests wait seconds, not minutes.
std::map<std::string, std::string> gateway_env(const pg_schema& db, const std::string& node) {
  return {{"ROOKERY_STORE", db.uri},
          {"ROOKERY_NODE_ID", node},
          {"ROOKERY_AUTH_REVALIDATE_MS", "200"},
          {"ROOKERY_JOB_LEASE_S", "2"},
          {"ROOKERY_JOB_POLL_MS", "200"},
          {"ROOKERY_MAX_RUNNING_JOBS", "1"},
          {"ROOKERY_LOGIN_SLOWDOWN_AFTER", "3"},
          {"ROOKERY_LOGIN_LOCKOUT_AFTER", "4"}};
}

json login(const server& s, const std::string& user, const std::string& password) {
  auto r = http("POST", s.url("/v1/auth/login"),
                json{{"username", user}, {"password", password}}.dump(),
                {{"Content-Type", "application/json"}});
  json out = r.status == 200 ? r.json() : json::object();
  out["status"] = r.status;
  return out;
}



} // namespace

TEST_CASE("two gateways on one PostgreSQL share users, sessions, keys and the lockout",
          "[integration][scaleout]") {
  pg_schema db;
  temp_dir da, dbd;
  server a{da.path, {}, gateway_env(db, "gw-a")};
  server b{dbd.path, {}, gateway_env(db, "gw-b")};

  // Sign up on one, log in on the other.
  auto ta = signup_and_login(a, "alice");
  auto lb = login(b, "alice", "correct horse battery");
  REQUIRE(lb["status"] == 200);
  auto tb = lb["token"].get<std::string>();
  // A token issued by one works on the other.
  CHECK(http("GET", b.url("/v1/auth/me"), "", bearer(ta)).status == 200);
  auto me = http("GET", a.url("/v1/auth/me"), "", bearer(tb));
  REQUIRE(me.status == 200);
  CHECK(me.json()["username"] == "alice");
  // The name is taken everywhere.
  CHECK(http("POST", b.url("/v1/users"),
             json{{"username", "ALICE"}, {"password", "another password"}}.dump(),
             {{"Content-Type", "application/json"}}).status == 409);

  // Logout on one gateway: the token dies there at once and on the other
  // within auth_revalidate_ms (200 ms here).
  CHECK(http("GET", b.url("/v1/auth/me"), "", bearer(tb)).status == 200); // cached on b now
  REQUIRE(http("POST", a.url("/v1/auth/logout"), "", bearer(tb)).status == 204);
  CHECK(http("GET", a.url("/v1/auth/me"), "", bearer(tb)).status == 401);
  double died = until([&] { return http("GET", b.url("/v1/auth/me"), "", bearer(tb)).status == 401; });
  CHECK(died >= 0);
  CHECK(died < 2.0);
  CHECK(http("GET", b.url("/v1/auth/me"), "", bearer(ta)).status == 200); // the other session lives

  // A key made on one works on the other; revoked on the other, it dies on both.
  auto made = http("POST", a.url("/v1/keys"), json{{"name", "ci"}, {"scopes", {"embed"}}}.dump(),
                   {{"Content-Type", "application/json"}, {"Authorization", "Bearer " + ta}});
  REQUIRE(made.status == 201);
  header_list key{{"X-API-Key", made.json()["key"].get<std::string>()}};
  CHECK(http("GET", b.url("/v1/auth/me"), "", key).status == 200);
  CHECK(http("GET", a.url("/v1/auth/me"), "", key).status == 200);
  REQUIRE(http("DELETE", b.url("/v1/keys/" + made.json()["id"].get<std::string>()), "", bearer(ta))
            .status == 204);
  CHECK(http("GET", b.url("/v1/auth/me"), "", key).status == 401);
  double revoked = until([&] { return http("GET", a.url("/v1/auth/me"), "", key).status == 401; });
  CHECK(revoked >= 0);
  CHECK(revoked < 2.0);

  // The lockout counts failures on every gateway: 2 here, 2 there, then even
  // the right password is refused on the first.
  for (int i = 0; i < 2; ++i) {
    CHECK(login(a, "alice", "wrong")["status"] == 401);
    CHECK(login(b, "alice", "wrong")["status"] == 401);
  }
  CHECK(login(a, "alice", "correct horse battery")["status"] == 429);
  CHECK(login(b, "ALICE", "correct horse battery")["status"] == 429);
  CHECK(db.exec("SELECT count FROM login_failures WHERE username = 'alice'", true) == "4");
}

TEST_CASE("jobs are claimed from PostgreSQL: spread over gateways, cancelled anywhere, "
          "and resumed elsewhere when a gateway is SIGKILLed",
          "[integration][scaleout]") {
  pg_schema db;
  temp_dir shared; // the data directory both gateways mount (a ReadWriteMany volume)
  auto a = std::make_unique<server>(shared.path, std::vector<std::string>{},
                                    gateway_env(db, "gw-a"));
  auto b_ptr = std::make_unique<server>(shared.path, std::vector<std::string>{},
                                        gateway_env(db, "gw-b"));
  server& b = *b_ptr;
  auto alice = signup_and_login(*a, "alice");

  // Two jobs submitted on gateway a, one slot each: a takes the first, b claims
  // the second from the store.
  auto submit = [&](const server& s, const json& spec) {
    auto r = http("POST", s.url("/v1/jobs"), spec.dump(), bearer(alice));
    REQUIRE(r.status == 202);
    return r.json()["id"].get<std::string>();
  };
  auto j1 = submit(*a, classifier_spec(1, 640));
  auto j2 = submit(*a, classifier_spec(1, 640));
  std::set<std::string> nodes;
  for (auto& id : {j1, j2}) {
    auto done = wait_for_job(b, alice, id, 240); // polled through the other gateway
    CHECK(done["state"] == "succeeded");
    nodes.insert(done["node"].get<std::string>());
  }
  CHECK(nodes == std::set<std::string>{"gw-a", "gw-b"});

  // Cancelled on the gateway that does not run it: the running node stops it.
  auto j3 = submit(*a, classifier_spec(3, 4096));
  json running;
  REQUIRE(until([&] {
            running = get_job(b, alice, j3);
            return running["state"] == "running" && running.contains("progress_detail");
          }, 120) >= 0);
  auto runner = running["node"].get<std::string>();
  server& other = runner == "gw-a" ? b : *a;
  auto c = http("DELETE", other.url("/v1/jobs/" + j3), "", bearer(alice));
  REQUIRE(c.status == 200);
  CHECK(c.json()["state"] == "cancelled");
  // The runner stops within a lease renewal and a step; the record stays cancelled.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  auto after = get_job(*a, alice, j3);
  CHECK(after["state"] == "cancelled");
  auto step_then = after.contains("progress_detail") ? after["progress_detail"].value("step", 0) : 0;
  std::this_thread::sleep_for(std::chrono::seconds(1));
  auto later = get_job(b, alice, j3);
  auto step_later = later.contains("progress_detail") ? later["progress_detail"].value("step", 0) : 0;
  CHECK(step_later == step_then);

  // The gateway running a job is SIGKILLed: after the lease (2 s) the other
  // claims the job and resumes it from its last checkpoint.
  auto j4 = submit(*a, classifier_spec(2, 2048, {{"checkpoint_every", 20}}));
  json r4;
  REQUIRE(until([&] {
            r4 = get_job(b, alice, j4);
            return r4["state"] == "running" && r4.contains("progress_detail")
                   && r4["progress_detail"].value("step", 0) >= 30;
          }, 180) >= 0);
  const bool on_a = r4["node"] == "gw-a";
  server* survivor = on_a ? b_ptr.get() : a.get();
  (on_a ? a : b_ptr)->kill();
  auto t_kill = std::chrono::steady_clock::now();
  json taken;
  REQUIRE(until([&] {
            taken = get_job(*survivor, alice, j4);
            return taken["node"] == (on_a ? "gw-b" : "gw-a");
          }, 30) >= 0);
  double takeover = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_kill).count();
  CHECK(takeover < 6.0); // lease 2 s + a poll; measured, not assumed
  auto done = wait_for_job(*survivor, alice, j4, 300);
  REQUIRE(done["state"] == "succeeded");
  CHECK(done["result"]["resumed"] == true);
  CHECK(done["result"]["resumed_from_step"].get<int64_t>() >= 20);
  CHECK(done["result"]["steps"] == 2 * 64);
}


/// How many training runs a worker's trainer host has (its rookery_trainer_runs gauge).
int trainer_runs(const server& w) {
  auto m = http("GET", w.url("/metrics"));
  auto p = m.body.find("\nrookery_trainer_runs");
  if (m.status != 200 || p == std::string::npos)
    return -1;
  return static_cast<int>(std::stod(m.body.substr(m.body.find(' ', p + 1) + 1)));
}

TEST_CASE("training runs on workers: submitted on one gateway, followed on another, and "
          "resumed on another worker when its worker is SIGKILLed",
          "[integration][scaleout]") {
  pg_schema db;
  temp_dir shared; // the gateways' data directory; the workers see it at the same path
  temp_dir w1dir, w2dir;
  std::map<std::string, std::string> wenv{{"ROOKERY_MAX_RUNNING_JOBS", "1"}};
  std::vector<std::unique_ptr<server>> workers;
  workers.push_back(std::make_unique<server>(
    w1dir.path, std::vector<std::string>{"--role", "worker", "--cluster-port", "0"}, wenv));
  workers.push_back(std::make_unique<server>(
    w2dir.path, std::vector<std::string>{"--role", "worker", "--cluster-port", "0"}, wenv));
  auto seeds = "127.0.0.1:" + std::to_string(workers[0]->cluster_port()) + ",127.0.0.1:"
               + std::to_string(workers[1]->cluster_port());
  auto genv = [&](const std::string& node) {
    auto env = gateway_env(db, node);
    env["ROOKERY_MAX_RUNNING_JOBS"] = "2";
    env["ROOKERY_RECONNECT_MS"] = "300";
    return env;
  };
  server a{shared.path, {"--role", "gateway", "--seeds", seeds}, genv("gw-a")};
  server b{shared.path, {"--role", "gateway", "--seeds", seeds}, genv("gw-b")};
  REQUIRE(until([&] { return connected_workers(a) == 2 && connected_workers(b) == 2; }, 60) >= 0);
  auto alice = signup_and_login(a, "alice");

  // Submitted on a, followed on b: it runs on a worker, not on a gateway.
  auto sub = http("POST", a.url("/v1/jobs"),
                  classifier_spec(2, 2048, {{"checkpoint_every", 20}}).dump(), bearer(alice));
  REQUIRE(sub.status == 202);
  auto id = sub.json()["id"].get<std::string>();
  json job;
  REQUIRE(until([&] {
            job = get_job(b, alice, id);
            return job["state"] == "running" && job.contains("progress_detail")
                   && job["progress_detail"].contains("worker")
                   && job["progress_detail"].value("step", 0) >= 30;
          }, 180) >= 0);
  auto first = job["progress_detail"]["worker"].get<std::string>();
  size_t on = first == "127.0.0.1:" + std::to_string(workers[0]->cluster_port()) ? 0 : 1;
  CHECK(first == "127.0.0.1:" + std::to_string(workers[on]->cluster_port()));
  CHECK(trainer_runs(*workers[on]) == 1);
  CHECK(trainer_runs(*workers[1 - on]) == 0);

  // Its worker dies: the gateway holding the job gives it to the other
  // worker, which resumes from the last checkpoint on the shared volume.
  workers[on]->kill();
  auto t_kill = std::chrono::steady_clock::now();
  auto second = "127.0.0.1:" + std::to_string(workers[1 - on]->cluster_port());
  REQUIRE(until([&] {
            auto j = get_job(b, alice, id);
            return j.contains("progress_detail") && j["progress_detail"].value("worker", "") == second;
          }, 60) >= 0);
  double moved = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_kill).count();
  INFO("the job moved to the other worker after " << moved << " s");
  CHECK(moved < 10.0);
  auto done = wait_for_job(a, alice, id, 300);
  REQUIRE(done["state"] == "succeeded");
  CHECK(done["result"]["resumed"] == true);
  CHECK(done["result"]["resumed_from_step"].get<int64_t>() >= 20);
  CHECK(done["result"]["steps"] == 2 * 64);
  // Its artifacts are served by either gateway.
  auto arts = http("GET", b.url("/v1/jobs/" + id + "/artifacts"), "", bearer(alice));
  REQUIRE(arts.status == 200);
  CHECK(!arts.json()["artifacts"].empty());
  CHECK(trainer_runs(*workers[1 - on]) == 0);

  // Registered through a gateway: the model goes to the worker's repository
  // and serves as a pipeline through the other gateway.
  auto reg = http("POST", b.url("/v1/jobs/" + id + "/register"), R"({"name":"fmnist-cnn"})",
                  bearer(alice));
  INFO(reg.body);
  REQUIRE(reg.status == 201);
  CHECK(reg.json()["dim"] == 256);
  auto emb = http("POST", a.url("/v1/embed?pipeline=fmnist-cnn"), read_file(photo_path()),
                  bearer(alice));
  INFO(emb.body);
  REQUIRE(emb.status == 200);
  CHECK(emb.json()["embedding"].size() == 256);
  CHECK(emb.json()["node"] == second);
  auto models = http("GET", a.url("/v1/models"), "", bearer(alice));
  REQUIRE(models.status == 200);
  REQUIRE(models.json()["models"].size() == 1);
  CHECK(models.json()["models"][0]["name"] == "fmnist-cnn");
}

// Failover under load, as a test: the numbers it prints are a short version of
// bench/failover_bench.py's (4 clients instead of 16, two worker kills).
TEST_CASE("failover under load: two gateways on PostgreSQL, three workers, kills and a freeze",
          "[integration][scaleout]") {
  pg_schema db;
  std::vector<uint16_t> cports{free_port(), free_port(), free_port()};
  std::map<std::string, std::string> wenv{{"ROOKERY_HEARTBEAT_MS", "500"},
                                          {"ROOKERY_CONNECTION_TIMEOUT_MS", "2000"}};
  std::vector<std::unique_ptr<temp_dir>> wdirs;
  std::vector<std::unique_ptr<server>> workers(3);
  auto start_worker = [&](size_t i) {
    workers[i] = std::make_unique<server>(
      wdirs[i]->path,
      std::vector<std::string>{"--role", "worker", "--cluster-port", std::to_string(cports[i])}, wenv);
  };
  for (size_t i = 0; i < 3; ++i) {
    wdirs.push_back(std::make_unique<temp_dir>());
    start_worker(i);
  }
  std::string seeds;
  for (auto p : cports)
    seeds += (seeds.empty() ? "" : ",") + std::string("127.0.0.1:") + std::to_string(p);
  temp_dir shared;
  std::vector<uint16_t> gports{free_port(), free_port()};
  std::vector<std::unique_ptr<server>> gws(2);
  auto start_gateway = [&](size_t i) {
    auto env = gateway_env(db, "gw-" + std::to_string(i));
    env.insert(wenv.begin(), wenv.end());
    env["ROOKERY_RECONNECT_MS"] = "300";
    env["ROOKERY_KEY_RATE_PER_S"] = "100000";
    env["ROOKERY_KEY_BURST"] = "100000";
    gws[i] = std::make_unique<server>(
      shared.path,
      std::vector<std::string>{"--role", "gateway", "--seeds", seeds, "--port",
                               std::to_string(gports[i])},
      env);
  };
  start_gateway(0);
  start_gateway(1);
  for (auto& g : gws)
    REQUIRE(until([&] { return connected_workers(*g) == 3; }, 60) >= 0);
  auto token = signup_and_login(*gws[0], "alice");
  auto photo = read_file(photo_path());

  std::atomic<bool> stop{false};
  std::atomic<int> sent{0}, failed{0}, retried{0};
  std::mutex mu;
  std::vector<std::string> jobs;
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c)
    clients.emplace_back([&, c] {
      int n = 0;
      while (!stop) {
        const bool async = ++n % 10 == 0;
        auto path = std::string("/v1/embed") + (async ? "?async=true" : "");
        auto port = gports[c % 2];
        auto r = http("POST", "http://127.0.0.1:" + std::to_string(port) + path, photo, bearer(token));
        if (r.status == 0) { // no answer at all: a load balancer would try the other gateway
          ++retried;
          r = http("POST", "http://127.0.0.1:" + std::to_string(gports[1 - c % 2]) + path, photo,
                   bearer(token));
        }
        ++sent;
        if (r.status != 200 && r.status != 202)
          ++failed;
        if (r.status == 202) {
          std::lock_guard<std::mutex> lock(mu);
          jobs.push_back(r.json()["id"].get<std::string>());
        }
      }
    });
  std::this_thread::sleep_for(std::chrono::seconds(2));
  // Two worker kills, each restarted on its port.
  for (size_t k : {size_t{0}, size_t{2}}) {
    workers[k]->kill();
    std::this_thread::sleep_for(std::chrono::seconds(1));
    start_worker(k);
    REQUIRE(until([&] { return connected_workers(*gws[0]) == 3 && connected_workers(*gws[1]) == 3; },
                  30) >= 0);
  }
  // A frozen worker is found out by the heartbeat (2 s connection timeout).
  ::kill(workers[1]->pid(), SIGSTOP);
  double detected = until([&] { return connected_workers(*gws[0]) == 2; }, 15);
  ::kill(workers[1]->pid(), SIGCONT);
  CHECK(detected >= 0);
  CHECK(detected < 3.0);
  // A gateway dies and comes back on its port.
  gws[1]->kill();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  start_gateway(1);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  stop = true;
  for (auto& t : clients)
    t.join();
  WARN("failover: sent " << sent << ", failed " << failed << ", retried on the other gateway "
                          << retried << ", frozen worker detected after " << detected << " s");
  CHECK(sent > 20);
  CHECK(failed * 200 <= sent); // under 0.5 %
  // No job, user or key lost: every async job succeeds, seen from both gateways.
  for (auto& id : jobs) {
    auto done = wait_for_job(*gws[1], token, id, 120);
    CHECK(done["state"] == "succeeded");
    CHECK(http("GET", gws[0]->url("/v1/jobs/" + id), "", bearer(token)).status == 200);
  }
  CHECK(login(*gws[1], "alice", "correct horse battery")["status"] == 200);
}

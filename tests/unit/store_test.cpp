// The store's unit tests. Every case that is not about SQLite's file runs
// against both backends: SQLite, and PostgreSQL when the CTest fixture "pg"
// (tests/tools/pg_fixture.sh) has started a throw-away server; each PostgreSQL
// case gets a schema of its own, dropped afterwards.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>

#include <libpq-fe.h>
#include <sqlite3.h>
#include <unistd.h>

#include "common/clock.hpp"
#include "store/store.hpp"

// The unit-test PCH includes torch after Catch, and glog/c10 logging redefines
// CHECK(cond) as a fatal assertion. Restore Catch's non-fatal, variadic CHECK.
#undef CHECK
#define CHECK(...) \
  INTERNAL_CATCH_TEST("CHECK", Catch::ResultDisposition::ContinueOnFailure, __VA_ARGS__)

using namespace rookery;
namespace fs = std::filesystem;

namespace {

/// A unique directory under the system temp dir, removed with its contents.
struct temp_dir {
  fs::path path;
  temp_dir() {
    static std::atomic<int> counter{0};
    auto stamp = std::chrono::steady_clock::now().time_since_epoch().count();
    path = fs::temp_directory_path()
           / ("rookery-store-test-" + std::to_string(::getpid()) + "-"
              + std::to_string(stamp) + "-" + std::to_string(counter++));
    fs::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

std::unique_ptr<Store> open_ok(const std::string& path) {
  auto r = Store::open(path);
  INFO((r ? std::string() : r.error().message));
  REQUIRE(r);
  return std::move(r).value();
}

/// Runs `sql` on a separate connection and returns the first column of the first
/// row as text ("" if none).
std::string query_raw(const std::string& path, const std::string& sql, bool readonly = true) {
  sqlite3* db = nullptr;
  int flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, flags, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
  std::string out;
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW && sqlite3_column_text(st, 0))
    out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  sqlite3_close(db);
  CHECK((rc == SQLITE_ROW || rc == SQLITE_DONE));
  return out;
}

/// The fixture's PostgreSQL URI; "" when the tests run without the fixture
/// (a hand-run binary). Under CTest the variable is set, and a missing file
/// means the fixture failed: that fails the test rather than skipping.
std::string pg_dsn() {
  const char* dir = std::getenv("ROOKERY_TEST_PG_DIR");
  if (!dir || !*dir)
    return {};
  std::ifstream in(fs::path(dir) / "dsn");
  std::string dsn;
  std::getline(in, dsn);
  INFO("ROOKERY_TEST_PG_DIR is set but " << dir << "/dsn is missing: the pg fixture failed");
  REQUIRE(!dsn.empty());
  return dsn;
}

/// Runs SQL on its own libpq connection; returns the first value ("" if none).
std::string pg_exec(const std::string& dsn, const std::string& sql) {
  PGconn* c = PQconnectdb(dsn.c_str());
  REQUIRE(PQstatus(c) == CONNECTION_OK);
  PGresult* r = PQexec(c, sql.c_str());
  auto st = PQresultStatus(r);
  INFO(PQresultErrorMessage(r));
  CHECK((st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK));
  std::string out = (st == PGRES_TUPLES_OK && PQntuples(r) > 0) ? PQgetvalue(r, 0, 0) : "";
  PQclear(r);
  PQfinish(c);
  return out;
}

/// A fresh, empty store of one backend: an SQLite file in a temp directory, or
/// a PostgreSQL schema of its own. `where` opens more connections to it.
struct test_store {
  std::string backend;
  std::string where;  // what Store::open takes
  std::string schema; // PostgreSQL only
  std::string admin;  // PostgreSQL: the fixture's URI
  temp_dir tmp;
  explicit test_store(const std::string& b) : backend(b) {
    if (backend == "sqlite") {
      where = tmp.file("rookery.db");
      return;
    }
    admin = pg_dsn();
    static std::atomic<int> counter{0};
    schema = "t_" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
    pg_exec(admin, "DROP SCHEMA IF EXISTS " + schema + " CASCADE");
    pg_exec(admin, "CREATE SCHEMA " + schema);
    where = admin + (admin.find('?') == std::string::npos ? "?" : "&")
            + "options=-csearch_path%3D" + schema;
  }
  ~test_store() {
    if (!schema.empty())
      pg_exec(admin, "DROP SCHEMA IF EXISTS " + schema + " CASCADE");
  }
  bool available() const { return backend == "sqlite" || !admin.empty(); }
  std::unique_ptr<Store> open() { return open_ok(where); }
  /// SQL against this store from outside (for corrupting a schema version).
  void exec(const std::string& sql) {
    if (backend == "sqlite")
      query_raw(where, sql, /*readonly=*/false);
    else
      pg_exec(where, sql);
  }
};

/// Both backends, as a Catch generator; PostgreSQL only where the fixture runs.
#define EACH_BACKEND()                                                        \
  auto backend_name = GENERATE(as<std::string>{}, "sqlite", "postgresql");   \
  if (backend_name == "postgresql" && pg_dsn().empty()) {                     \
    WARN("no PostgreSQL fixture (ROOKERY_TEST_PG_DIR): SQLite only");         \
    return;                                                                    \
  }                                                                            \
  INFO("backend: " << backend_name);                                          \
  test_store fixture(backend_name)

user_record make_user(Store& db, const std::string& name, bool admin = false) {
  user_record in;
  in.username = name;
  in.password_hash = "$argon2id$fake";
  in.is_admin = admin;
  in.created_at = 1000;
  auto u = db.create_user(in);
  REQUIRE(u);
  return u.value();
}

job_record make_job(const std::string& id, uint64_t user, const char* state, int64_t created) {
  job_record j;
  j.id = id;
  j.user_id = user;
  j.kind = "embed";
  j.state = state;
  j.spec_json = R"({"model":"resnet18"})";
  j.created_at = created;
  return j;
}

} // namespace

TEST_CASE("open creates the file, migrates and enables WAL", "[store]") {
  temp_dir tmp;
  auto path = tmp.file("nested/dir/rookery.db"); // parent directories do not exist yet
  auto db = open_ok(path);
  CHECK(fs::exists(path));
  CHECK(db->schema_version() == db->latest_schema_version());
  CHECK(db->schema_version() >= 1);
  CHECK(std::string(db->backend()) == "sqlite");
  CHECK_FALSE(db->shared());
  // Seen from an independent read-only connection.
  CHECK(query_raw(path, "PRAGMA journal_mode") == "wal");
  CHECK(query_raw(path, "PRAGMA user_version") == std::to_string(db->schema_version()));
  CHECK(query_raw(path, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN "
                        "('users','sessions','api_keys','jobs','models','login_failures')")
        == "6");
}

TEST_CASE("reopening keeps data and does not re-run migrations", "[store]") {
  EACH_BACKEND();
  uint64_t uid = 0;
  int version = 0;
  {
    auto db = fixture.open();
    version = db->schema_version();
    CHECK(version == db->latest_schema_version());
    uid = make_user(*db, "alice").id;
    key_record k;
    k.id = "k_1";
    k.user_id = uid;
    k.name = "laptop";
    k.scopes = {"embed", "train"};
    k.key_hash = std::string(64, 'a');
    k.prefix = "rk_abcd";
    k.created_at = 100;
    REQUIRE(db->create_key(k));
    REQUIRE(db->create_job(make_job("j_1", uid, job_state::running, 100)));
  }
  auto db = fixture.open(); // would fail if a CREATE TABLE ran a second time
  CHECK(db->schema_version() == version);
  if (backend_name == "sqlite")
    CHECK(query_raw(fixture.where, "PRAGMA user_version") == std::to_string(version));
  auto u = db->find_user_by_name("alice");
  REQUIRE(u);
  CHECK(u->id == uid);
  auto keys = db->list_keys(uid);
  REQUIRE(keys);
  REQUIRE(keys->size() == 1);
  CHECK(keys->at(0).name == "laptop");
  CHECK(keys->at(0).scopes == std::vector<std::string>{"embed", "train"});
  auto job = db->find_job("j_1");
  REQUIRE(job);
  CHECK(job->state == job_state::running);
}

TEST_CASE("a database newer than the code is refused", "[store]") {
  EACH_BACKEND();
  { fixture.open(); }
  fixture.exec(backend_name == "sqlite" ? "PRAGMA user_version = 999"
                                        : "UPDATE rookery_schema SET version = 999");
  auto r = Store::open(fixture.where);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == errc::internal);
  CHECK_THAT(r.error().message, Catch::Contains("999") && Catch::Contains("newer"));
}

TEST_CASE("PostgreSQL: migrations run once when several nodes start together", "[store]") {
  auto dsn = pg_dsn();
  if (dsn.empty()) {
    WARN("no PostgreSQL fixture (ROOKERY_TEST_PG_DIR)");
    return;
  }
  test_store fixture("postgresql");
  std::vector<std::thread> starters;
  std::atomic<int> opened{0};
  for (int i = 0; i < 4; ++i)
    starters.emplace_back([&] {
      if (auto r = Store::open(fixture.where); r && (*r)->schema_version() >= 1)
        ++opened;
    });
  for (auto& t : starters)
    t.join();
  CHECK(opened == 4);
  CHECK(pg_exec(fixture.where, "SELECT count(*) FROM rookery_schema") == "1");
  auto db = fixture.open();
  CHECK(std::string(db->backend()) == "postgresql");
  CHECK(db->shared());
}

TEST_CASE("an unreachable PostgreSQL is refused with a clear error", "[store]") {
  temp_dir tmp; // no server listens on a socket in an empty directory
  auto r = Store::open("postgresql:///rookery?host=" + tmp.path.string() + "&port=1&connect_timeout=2");
  REQUIRE_FALSE(r);
  CHECK(r.error().code == errc::unavailable);
  CHECK_THAT(r.error().message, Catch::Contains("cannot connect to PostgreSQL"));
}

TEST_CASE("in-memory databases work", "[store]") {
  auto db = open_ok(":memory:");
  CHECK(db->schema_version() == db->latest_schema_version());
  make_user(*db, "bob");
  CHECK(db->count_users().value() == 1);
}

TEST_CASE("users", "[store]") {
  EACH_BACKEND();
  auto db = fixture.open();
  CHECK(db->count_users().value() == 0);

  user_record in;
  in.username = "alice";
  in.password_hash = "$argon2id$hash-a";
  in.is_admin = true;
  in.created_at = 1234; // the store keeps the time it is given
  auto a = db->create_user(in);
  REQUIRE(a);
  CHECK(a->id > 0);
  CHECK(a->username == "alice");
  CHECK(a->is_admin);
  CHECK(a->created_at == 1234);
  CHECK(db->find_user(a->id)->created_at == 1234);
  auto b = make_user(*db, "bob");
  CHECK(b.id != a->id);
  CHECK(db->count_users().value() == 2);

  SECTION("duplicate usernames conflict, case-insensitively") {
    user_record dup = in;
    auto r = db->create_user(dup);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == errc::conflict);
    CHECK_THAT(r.error().message, Catch::Contains("'alice' is taken"));
    dup.username = "ALICE";
    auto r_case = db->create_user(dup);
    REQUIRE_FALSE(r_case);
    CHECK(r_case.error().code == errc::conflict);
    CHECK(db->count_users().value() == 2);
    // Only ASCII letters fold, on both backends: "É" and "é" are two names.
    dup.username = "\xc3\x89lise";
    REQUIRE(db->create_user(dup));
    dup.username = "\xc3\xa9lise";
    CHECK(db->create_user(dup));
  }
  SECTION("lookups") {
    auto by_name = db->find_user_by_name("Alice");
    REQUIRE(by_name);
    CHECK(by_name->id == a->id);
    CHECK(by_name->username == "alice");
    CHECK(by_name->password_hash == "$argon2id$hash-a");
    CHECK(by_name->is_admin);
    auto by_id = db->find_user(b.id);
    REQUIRE(by_id);
    CHECK(by_id->username == "bob");
    CHECK_FALSE(by_id->is_admin);
    CHECK(db->find_user_by_name("carol").error().code == errc::not_found);
    CHECK(db->find_user(9999).error().code == errc::not_found);
  }
  SECTION("user names are bound, not spliced into SQL") {
    user_record odd_in = in;
    odd_in.username = "x'); DROP TABLE users; --";
    auto odd = db->create_user(odd_in);
    REQUIRE(odd);
    CHECK(db->find_user_by_name("x'); DROP TABLE users; --"));
    CHECK(db->count_users().value() == 3);
  }
}

TEST_CASE("sessions", "[store]") {
  EACH_BACKEND();
  auto db = fixture.open();
  auto u = make_user(*db, "alice");

  auto session = [&](const std::string& id, int64_t expires) {
    session_record s;
    s.id = id;
    s.token_hash = "hash-" + id;
    s.user_id = u.id;
    s.scopes = {"embed"};
    s.created_at = 1000;
    s.expires_at = expires;
    return s;
  };
  REQUIRE(db->create_session(session("s_old", 1500)));
  REQUIRE(db->create_session(session("s_new", 5000)));
  REQUIRE(db->create_session(session("s_forever", 0)));

  auto found = db->find_session_by_token_hash("hash-s_new");
  REQUIRE(found);
  CHECK(found->id == "s_new");
  CHECK(found->user_id == u.id);
  CHECK(found->scopes == std::vector<std::string>{"embed"});
  CHECK(found->created_at == 1000);
  CHECK(found->expires_at == 5000);
  CHECK(db->find_session_by_token_hash("nope").error().code == errc::not_found);

  SECTION("duplicates and unknown users are rejected") {
    CHECK(db->create_session(session("s_new", 1)).error().code == errc::conflict);
    auto orphan = session("s_orphan", 0);
    orphan.user_id = 424242;
    CHECK(db->create_session(orphan).error().code == errc::not_found);
  }
  SECTION("active sessions and purging") {
    auto active = db->active_sessions(2000);
    REQUIRE(active);
    REQUIRE(active->size() == 2);
    REQUIRE(db->purge_expired_sessions(2000));
    CHECK(db->find_session_by_token_hash("hash-s_old").error().code == errc::not_found);
    CHECK(db->find_session_by_token_hash("hash-s_new"));
    CHECK(db->find_session_by_token_hash("hash-s_forever"));
    REQUIRE(db->purge_expired_sessions(5000)); // expires_at == now counts as expired
    CHECK_FALSE(db->find_session_by_token_hash("hash-s_new"));
    CHECK(db->active_sessions(1'000'000)->size() == 1);
  }
  SECTION("delete") {
    REQUIRE(db->delete_session("s_new"));
    CHECK_FALSE(db->find_session_by_token_hash("hash-s_new"));
    CHECK(db->delete_session("s_new").error().code == errc::not_found);
  }
}

TEST_CASE("API keys", "[store]") {
  EACH_BACKEND();
  auto db = fixture.open();
  auto alice = make_user(*db, "alice");
  auto bob = make_user(*db, "bob");

  auto key = [](const std::string& id, uint64_t user, int64_t created) {
    key_record k;
    k.id = id;
    k.user_id = user;
    k.name = "key " + id;
    k.scopes = {"embed"};
    k.key_hash = "hash-" + id;
    k.prefix = "rk_" + id;
    k.created_at = created;
    k.expires_at = created + 10;
    return k;
  };
  REQUIRE(db->create_key(key("k_a2", alice.id, 20)));
  REQUIRE(db->create_key(key("k_a1", alice.id, 10)));
  REQUIRE(db->create_key(key("k_b1", bob.id, 10)));

  auto list = db->list_keys(alice.id);
  REQUIRE(list);
  REQUIRE(list->size() == 2);
  CHECK(list->at(0).id == "k_a1"); // oldest first
  CHECK(list->at(1).id == "k_a2");
  CHECK(list->at(1).prefix == "rk_k_a2");
  CHECK(list->at(1).expires_at == 30);
  CHECK(db->list_keys(9999)->empty());

  auto found = db->find_key_by_hash("hash-k_b1");
  REQUIRE(found);
  CHECK(found->id == "k_b1");
  CHECK(found->user_id == bob.id);
  CHECK(db->find_key_by_hash("nope").error().code == errc::not_found);

  auto dup_hash = key("k_x", alice.id, 1);
  dup_hash.key_hash = "hash-k_b1";
  CHECK(db->create_key(dup_hash).error().code == errc::conflict);

  SECTION("another user's key is not found and survives") {
    auto st = db->delete_key(alice.id, "k_b1");
    REQUIRE_FALSE(st);
    CHECK(st.error().code == errc::not_found);
    CHECK(db->find_key_by_hash("hash-k_b1"));
    CHECK(db->list_keys(bob.id)->size() == 1);
  }
  SECTION("the owner deletes their key") {
    REQUIRE(db->delete_key(alice.id, "k_a1"));
    CHECK(db->list_keys(alice.id)->size() == 1);
    CHECK(db->delete_key(alice.id, "k_a1").error().code == errc::not_found);
  }
}

TEST_CASE("jobs", "[store]") {
  EACH_BACKEND();
  auto db = fixture.open();
  auto alice = make_user(*db, "alice");
  auto bob = make_user(*db, "bob");

  REQUIRE(db->create_job(make_job("j_1", alice.id, job_state::queued, 100)));
  REQUIRE(db->create_job(make_job("j_2", alice.id, job_state::running, 200)));
  REQUIRE(db->create_job(make_job("j_3", alice.id, job_state::succeeded, 300)));
  REQUIRE(db->create_job(make_job("j_4", bob.id, job_state::failed, 150)));
  REQUIRE(db->create_job(make_job("j_5", bob.id, job_state::cancelled, 160)));
  REQUIRE(db->create_job(make_job("j_6", bob.id, job_state::queued, 50)));
  CHECK(db->create_job(make_job("j_1", alice.id, job_state::queued, 1)).error().code
        == errc::conflict);

  SECTION("find and update") {
    auto j = db->find_job("j_2");
    REQUIRE(j);
    CHECK(j->user_id == alice.id);
    CHECK(j->kind == "embed");
    CHECK(j->spec_json == R"({"model":"resnet18"})");
    CHECK(j->result_json.empty());

    auto upd = j.value();
    upd.state = job_state::succeeded;
    upd.result_json = R"({"dims":512})";
    upd.error = "";
    upd.progress = 1.0;
    upd.started_at = 201;
    upd.finished_at = 250;
    upd.kind = "ignored"; // immutable fields are not updated
    upd.spec_json = "ignored";
    REQUIRE(db->update_job(upd));
    auto after = db->find_job("j_2");
    REQUIRE(after);
    CHECK(after->state == job_state::succeeded);
    CHECK(after->result_json == R"({"dims":512})");
    CHECK(after->progress == Approx(1.0));
    CHECK(after->started_at == 201);
    CHECK(after->finished_at == 250);
    CHECK(after->kind == "embed");
    CHECK(after->spec_json == R"({"model":"resnet18"})");
    CHECK(after->created_at == 200);

    auto missing = make_job("j_missing", alice.id, job_state::failed, 1);
    CHECK(db->update_job(missing).error().code == errc::not_found);
    CHECK(db->find_job("j_missing").error().code == errc::not_found);
  }
  SECTION("list newest first, per user, with a limit") {
    auto list = db->list_jobs(alice.id);
    REQUIRE(list);
    REQUIRE(list->size() == 3);
    CHECK(list->at(0).id == "j_3");
    CHECK(list->at(1).id == "j_2");
    CHECK(list->at(2).id == "j_1");
    auto limited = db->list_jobs(alice.id, 2);
    REQUIRE(limited);
    REQUIRE(limited->size() == 2);
    CHECK(limited->at(0).id == "j_3");
    CHECK(db->list_jobs(bob.id, 0)->size() == 3);
  }
  SECTION("unfinished jobs are only queued or running, oldest first") {
    auto open_jobs = db->unfinished_jobs();
    REQUIRE(open_jobs);
    REQUIRE(open_jobs->size() == 3);
    CHECK(open_jobs->at(0).id == "j_6");
    CHECK(open_jobs->at(1).id == "j_1");
    CHECK(open_jobs->at(2).id == "j_2");
  }
}

TEST_CASE("models", "[store]") {
  EACH_BACKEND();
  auto db = fixture.open();

  auto model = [](const std::string& name, uint32_t version, const std::string& path) {
    model_record m;
    m.name = name;
    m.version = version;
    m.arch = "resnet18";
    m.format = "state_dict";
    m.path = path;
    m.config_json = R"({"classes":10})";
    m.owner_id = 0;
    m.created_at = 100 + version;
    return m;
  };
  REQUIRE(db->put_model(model("resnet", 1, "/m/resnet/1/w.pt")));
  REQUIRE(db->put_model(model("resnet", 3, "/m/resnet/3/w.pt")));
  REQUIRE(db->put_model(model("resnet", 2, "/m/resnet/2/w.pt")));
  REQUIRE(db->put_model(model("clip", 1, "/m/clip/1/w.pt")));
  CHECK(db->put_model(model("bad", 0, "/x")).error().code == errc::bad_request);

  auto latest = db->find_model("resnet", 0);
  REQUIRE(latest);
  CHECK(latest->version == 3);
  CHECK(latest->path == "/m/resnet/3/w.pt");
  CHECK(latest->config_json == R"({"classes":10})");
  auto v2 = db->find_model("resnet", 2);
  REQUIRE(v2);
  CHECK(v2->path == "/m/resnet/2/w.pt");
  CHECK(db->find_model("resnet", 7).error().code == errc::not_found);
  CHECK(db->find_model("nope", 0).error().code == errc::not_found);

  // put_model replaces an existing (name, version).
  REQUIRE(db->put_model(model("resnet", 2, "/m/resnet/2/new.pt")));
  CHECK(db->find_model("resnet", 2)->path == "/m/resnet/2/new.pt");

  auto all = db->list_models();
  REQUIRE(all);
  REQUIRE(all->size() == 4);
  CHECK(all->at(0).name == "clip");
  CHECK(all->at(1).version == 1);
  CHECK(all->at(3).version == 3);

  REQUIRE(db->delete_model("resnet"));
  CHECK(db->list_models()->size() == 1);
  CHECK(db->delete_model("resnet").error().code == errc::not_found);
}

TEST_CASE("failed logins are counted per name within a window", "[store]") {
  EACH_BACKEND();
  auto db = fixture.open();
  CHECK(db->login_failures("alice")->count == 0);
  auto f1 = db->note_login_failure("alice", 1000, 900);
  REQUIRE(f1);
  CHECK(f1->count == 1);
  CHECK(f1->first_at == 1000);
  auto f2 = db->note_login_failure("alice", 1500, 900);
  REQUIRE(f2);
  CHECK(f2->count == 2);
  CHECK(f2->first_at == 1000); // the window started with the first failure
  CHECK(db->login_failures("alice")->count == 2);
  CHECK(db->login_failures("bob")->count == 0);
  // After the window a failure starts a new one.
  auto f3 = db->note_login_failure("alice", 2000, 900);
  REQUIRE(f3);
  CHECK(f3->count == 1);
  CHECK(f3->first_at == 2000);
  REQUIRE(db->clear_login_failures("alice"));
  CHECK(db->login_failures("alice")->count == 0);
  CHECK(lockout_name("AlIcE") == "alice");
  CHECK(lockout_name("\xc3\x89lise") == "\xc3\x89lise");
}

TEST_CASE("failed logins from several gateways add up", "[store]") {
  EACH_BACKEND();
  auto a = fixture.open();
  auto b = fixture.open(); // a second connection: another gateway
  std::thread ta([&] {
    for (int i = 0; i < 20; ++i)
      a->note_login_failure("mallory", 1000, 900);
  });
  std::thread tb([&] {
    for (int i = 0; i < 20; ++i)
      b->note_login_failure("mallory", 1000, 900);
  });
  ta.join();
  tb.join();
  CHECK(a->login_failures("mallory")->count == 40);
}

TEST_CASE("jobs are claimed, renewed, released and cancelled", "[store]") {
  EACH_BACKEND();
  auto db = fixture.open();
  auto alice = make_user(*db, "alice");
  REQUIRE(db->create_job(make_job("j_1", alice.id, job_state::queued, 100)));
  REQUIRE(db->create_job(make_job("j_2", alice.id, job_state::running, 200)));
  REQUIRE(db->create_job(make_job("j_3", alice.id, job_state::queued, 300)));
  REQUIRE(db->create_job(make_job("j_done", alice.id, job_state::succeeded, 50)));
  const int64_t now = 10'000;

  auto got = db->claim_jobs("node-a", now, 15, 2, false);
  REQUIRE(got);
  REQUIRE(got->size() == 2); // the limit, oldest first
  CHECK(got->at(0).id == "j_1");
  CHECK(got->at(1).id == "j_2");
  CHECK(got->at(0).owner == "node-a");
  CHECK(got->at(0).lease_until == now + 15);

  // Another node gets what is left, not what node-a holds.
  auto rest = db->claim_jobs("node-b", now, 15, 0, false);
  REQUIRE(rest);
  REQUIRE(rest->size() == 1);
  CHECK(rest->at(0).id == "j_3");
  CHECK(db->claim_jobs("node-b", now, 15, 0, false)->empty());
  auto held = db->claim_job("j_1", "node-b", now, 15);
  REQUIRE_FALSE(held);
  CHECK(held.error().code == errc::conflict);
  CHECK_THAT(held.error().message, Catch::Contains("node-a"));
  CHECK(db->claim_job("j_done", "node-b", now, 15).error().code == errc::conflict);
  CHECK(db->claim_job("j_nope", "node-b", now, 15).error().code == errc::not_found);
  CHECK(db->claim_job("j_1", "node-a", now, 15)); // one's own again: fine

  SECTION("a holder's update is guarded; the lease is not rolled back") {
    auto renewed = db->renew_leases("node-a", now + 100);
    REQUIRE(renewed);
    std::set<std::string> ids(renewed->begin(), renewed->end());
    CHECK(ids == std::set<std::string>{"j_1", "j_2"});
    auto j = got->at(0); // lease_until is the claim's, older than the renewal
    j.state = job_state::running;
    j.progress = 0.5;
    REQUIRE(db->update_job(j, "node-a"));
    CHECK(db->find_job("j_1")->lease_until == now + 100);
    CHECK(db->find_job("j_1")->progress == Approx(0.5));
    auto st = db->update_job(j, "node-b");
    REQUIRE_FALSE(st);
    CHECK(st.error().code == errc::conflict);
    CHECK(db->update_job(make_job("j_nope", alice.id, job_state::failed, 1), "node-a")
            .error().code == errc::not_found);
  }
  SECTION("a lapsed lease is taken over, and the old holder cannot write") {
    auto later = now + 16;
    auto taken = db->claim_jobs("node-b", later, 15, 0, false);
    REQUIRE(taken);
    REQUIRE(taken->size() == 3); // j_1, j_2 and j_3: every lease has lapsed by now
    CHECK(taken->at(0).owner == "node-b");
    auto j = got->at(0);
    j.state = job_state::succeeded;
    CHECK(db->update_job(j, "node-a").error().code == errc::conflict);
    CHECK(db->renew_leases("node-a", later + 15)->empty());
  }
  SECTION("cancelled elsewhere: gone from the holder's renewal, its write refused") {
    auto c = db->cancel_job("j_2", now + 1);
    REQUIRE(c);
    CHECK(c->state == job_state::cancelled);
    CHECK(c->finished_at == now + 1);
    CHECK(c->owner == "node-a");
    auto renewed = db->renew_leases("node-a", now + 30);
    REQUIRE(renewed);
    CHECK(*renewed == std::vector<std::string>{"j_1"});
    auto j = got->at(1);
    j.state = job_state::succeeded;
    CHECK(db->update_job(j, "node-a").error().code == errc::conflict);
    CHECK(db->find_job("j_2")->state == job_state::cancelled);
    auto again = db->cancel_job("j_2", now + 2);
    REQUIRE_FALSE(again);
    CHECK(again.error().code == errc::conflict);
    CHECK_THAT(again.error().message, Catch::Contains("already cancelled"));
    CHECK(db->cancel_job("j_nope", now).error().code == errc::not_found);
  }
  SECTION("released jobs are claimed at once; a restarted single node takes all") {
    REQUIRE(db->release_jobs("node-a"));
    CHECK(db->find_job("j_1")->owner.empty());
    CHECK(db->find_job("j_1")->lease_until == 0);
    auto back = db->claim_jobs("node-c", now, 15, 0, false);
    REQUIRE(back);
    CHECK(back->size() == 2);
    auto all = db->claim_jobs("node-d", now, 15, 0, /*ignore_leases=*/true);
    REQUIRE(all);
    CHECK(all->size() == 3);
    CHECK(db->find_job("j_done")->owner.empty()); // finished jobs are never claimed
  }
  SECTION("clearing the owner clears the lease") {
    auto found = db->find_job("j_1");
    REQUIRE(found);
    job_record j = found.value();
    j.owner.clear();
    REQUIRE(db->update_job(j));
    CHECK(db->find_job("j_1")->lease_until == 0);
  }
}

TEST_CASE("two nodes claiming at once never get the same job", "[store]") {
  EACH_BACKEND();
  auto setup = fixture.open();
  auto u = make_user(*setup, "alice");
  constexpr int kJobs = 60;
  for (int i = 0; i < kJobs; ++i)
    REQUIRE(setup->create_job(make_job("j_" + std::to_string(1000 + i), u.id, job_state::queued, i)));
  std::vector<std::string> got_a, got_b;
  auto claimer = [&](const std::string& name, std::vector<std::string>& out) {
    auto db = fixture.open();
    for (int round = 0; round < kJobs; ++round) {
      auto r = db->claim_jobs(name, 10'000, 15, 1, false);
      if (r)
        for (auto& j : *r)
          out.push_back(j.id);
    }
  };
  std::thread a([&] { claimer("node-a", got_a); });
  std::thread b([&] { claimer("node-b", got_b); });
  a.join();
  b.join();
  std::set<std::string> all(got_a.begin(), got_a.end());
  for (auto& id : got_b)
    CHECK(all.insert(id).second); // no job twice
  CHECK(all.size() == static_cast<size_t>(kJobs));
  CHECK(got_a.size() + got_b.size() == static_cast<size_t>(kJobs));
}

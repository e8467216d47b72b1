#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <string>

#include <sqlite3.h>
#include <unistd.h>

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

user_record make_user(Store& db, const std::string& name) {
  auto u = db.create_user(name, "$argon2id$fake", false);
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
  CHECK(db->schema_version() == Store::latest_schema_version());
  CHECK(db->schema_version() >= 1);
  // Seen from an independent read-only connection.
  CHECK(query_raw(path, "PRAGMA journal_mode") == "wal");
  CHECK(query_raw(path, "PRAGMA user_version") == std::to_string(db->schema_version()));
  CHECK(query_raw(path, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN "
                        "('users','sessions','api_keys','jobs','models')")
        == "5");
}

TEST_CASE("reopening keeps data and does not re-run migrations", "[store]") {
  temp_dir tmp;
  auto path = tmp.file("rookery.db");
  uint64_t uid = 0;
  int version = 0;
  {
    auto db = open_ok(path);
    version = db->schema_version();
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
  auto db = open_ok(path); // would fail if a CREATE TABLE ran a second time
  CHECK(db->schema_version() == version);
  CHECK(query_raw(path, "PRAGMA user_version") == std::to_string(version));
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
  temp_dir tmp;
  auto path = tmp.file("rookery.db");
  { open_ok(path); }
  query_raw(path, "PRAGMA user_version = 999", /*readonly=*/false);
  auto r = Store::open(path);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == errc::internal);
  CHECK_THAT(r.error().message, Catch::Contains("999") && Catch::Contains("newer"));
}

TEST_CASE("in-memory databases work", "[store]") {
  auto db = open_ok(":memory:");
  CHECK(db->schema_version() == Store::latest_schema_version());
  make_user(*db, "bob");
  CHECK(db->count_users().value() == 1);
}

TEST_CASE("users", "[store]") {
  temp_dir tmp;
  auto db = open_ok(tmp.file("rookery.db"));
  CHECK(db->count_users().value() == 0);

  auto before = Store::now();
  auto a = db->create_user("alice", "$argon2id$hash-a", true);
  REQUIRE(a);
  CHECK(a->id > 0);
  CHECK(a->username == "alice");
  CHECK(a->is_admin);
  CHECK(a->created_at >= before);
  CHECK(a->created_at <= Store::now());
  auto b = make_user(*db, "bob");
  CHECK(b.id != a->id);
  CHECK(db->count_users().value() == 2);

  SECTION("duplicate usernames conflict, case-insensitively") {
    auto dup = db->create_user("alice", "x", false);
    REQUIRE_FALSE(dup);
    CHECK(dup.error().code == errc::conflict);
    auto dup_case = db->create_user("ALICE", "x", false);
    REQUIRE_FALSE(dup_case);
    CHECK(dup_case.error().code == errc::conflict);
    CHECK(db->count_users().value() == 2);
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
    auto odd = db->create_user("x'); DROP TABLE users; --", "h", false);
    REQUIRE(odd);
    CHECK(db->find_user_by_name("x'); DROP TABLE users; --"));
    CHECK(db->count_users().value() == 3);
  }
}

TEST_CASE("sessions", "[store]") {
  temp_dir tmp;
  auto db = open_ok(tmp.file("rookery.db"));
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
  temp_dir tmp;
  auto db = open_ok(tmp.file("rookery.db"));
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
  temp_dir tmp;
  auto db = open_ok(tmp.file("rookery.db"));
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
  temp_dir tmp;
  auto db = open_ok(tmp.file("rookery.db"));

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

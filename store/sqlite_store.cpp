// The SQLite backend of the store (see store/store.hpp): the embedded default.
#include "store/store.hpp"
#include "store/rows.hpp"

#include <algorithm>
#include <filesystem>
#include <string_view>
#include <system_error>
#include <utility>

#include <nlohmann/json.hpp>
#include <sqlite3.h>

namespace rookery {

namespace {

using namespace store_rows;

// --- schema migrations ------------------------------------------------------
//
// Migration i (0-based) brings the schema from version i to version i + 1; the
// version lives in PRAGMA user_version. Each step runs in its own transaction
// together with the version bump, so it is applied exactly once. Never edit a
// step that has shipped: append a new one.
constexpr const char* kMigrations[] = {
  // 1: initial schema.
  R"sql(
    CREATE TABLE users (
      id            INTEGER PRIMARY KEY AUTOINCREMENT,
      username      TEXT    NOT NULL COLLATE NOCASE UNIQUE,
      password_hash TEXT    NOT NULL,
      is_admin      INTEGER NOT NULL DEFAULT 0,
      created_at    INTEGER NOT NULL
    );

    CREATE TABLE sessions (
      id         TEXT    PRIMARY KEY,
      token_hash TEXT    NOT NULL UNIQUE,
      user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
      scopes     TEXT    NOT NULL DEFAULT '[]',  -- JSON array of strings
      created_at INTEGER NOT NULL,
      expires_at INTEGER NOT NULL               -- 0: never
    );
    CREATE INDEX sessions_user ON sessions(user_id);
    CREATE INDEX sessions_expires ON sessions(expires_at);

    CREATE TABLE api_keys (
      id         TEXT    PRIMARY KEY,
      user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
      name       TEXT    NOT NULL,
      scopes     TEXT    NOT NULL DEFAULT '[]',  -- JSON array of strings
      key_hash   TEXT    NOT NULL UNIQUE,
      prefix     TEXT    NOT NULL,
      created_at INTEGER NOT NULL,
      expires_at INTEGER NOT NULL DEFAULT 0     -- 0: never
    );
    CREATE INDEX api_keys_user ON api_keys(user_id);

    CREATE TABLE jobs (
      id          TEXT    PRIMARY KEY,
      user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
      kind        TEXT    NOT NULL,
      state       TEXT    NOT NULL,
      spec_json   TEXT    NOT NULL DEFAULT '',
      result_json TEXT    NOT NULL DEFAULT '',
      error       TEXT    NOT NULL DEFAULT '',
      progress    REAL    NOT NULL DEFAULT 0,
      created_at  INTEGER NOT NULL,
      started_at  INTEGER NOT NULL DEFAULT 0,
      finished_at INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX jobs_user ON jobs(user_id, created_at);
    CREATE INDEX jobs_state ON jobs(state);

    CREATE TABLE models (
      name        TEXT    NOT NULL,
      version     INTEGER NOT NULL CHECK (version > 0),
      arch        TEXT    NOT NULL,
      format      TEXT    NOT NULL,
      path        TEXT    NOT NULL,
      config_json TEXT    NOT NULL DEFAULT '',
      owner_id    INTEGER NOT NULL DEFAULT 0,   -- 0: installed by an operator
      created_at  INTEGER NOT NULL,
      PRIMARY KEY (name, version)
    );
  )sql",
  // 2: training jobs report progress (epoch, step, ETA, latest metrics) as JSON.
  R"sql(
    ALTER TABLE jobs ADD COLUMN progress_json TEXT NOT NULL DEFAULT '';
  )sql",
  // 3: jobs are claimed by a node with a lease; failed logins are counted here.
  R"sql(
    ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT '';
    ALTER TABLE jobs ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX jobs_owner ON jobs(owner);
    CREATE TABLE login_failures (
      username TEXT    PRIMARY KEY,
      count    INTEGER NOT NULL,
      first_at INTEGER NOT NULL
    );
  )sql",
};

constexpr int kLatestVersion = static_cast<int>(std::size(kMigrations));

// --- statement helper -------------------------------------------------------

/// RAII prepared statement. Binds take consecutive parameter indices. Errors of
/// prepare and bind are remembered and reported by the first step(), so call
/// sites check one return code.
class statement {
public:
  statement(sqlite3* db, const char* sql) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  ~statement() { sqlite3_finalize(stmt_); }
  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;

  statement& bind(const std::string& s) {
    // SQLITE_TRANSIENT: SQLite copies, so temporaries are fine.
    return check(sqlite3_bind_text(stmt_, ++index_, s.data(), static_cast<int>(s.size()),
                                   SQLITE_TRANSIENT));
  }
  statement& bind(const char* s) { return bind(std::string(s)); }
  statement& bind(int64_t v) { return check(sqlite3_bind_int64(stmt_, ++index_, v)); }
  statement& bind(uint64_t v) { return bind(static_cast<int64_t>(v)); }
  statement& bind(uint32_t v) { return bind(static_cast<int64_t>(v)); }
  statement& bind(int v) { return bind(static_cast<int64_t>(v)); }
  statement& bind(bool v) { return bind(static_cast<int64_t>(v ? 1 : 0)); }
  statement& bind(double v) { return check(sqlite3_bind_double(stmt_, ++index_, v)); }

  /// SQLITE_ROW, SQLITE_DONE, or an error code (possibly from prepare/bind).
  int step() {
    if (rc_ != SQLITE_OK)
      return rc_;
    return sqlite3_step(stmt_);
  }

  std::string text(int col) const {
    auto p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(stmt_, col)))
             : std::string{};
  }
  int64_t i64(int col) const { return sqlite3_column_int64(stmt_, col); }
  double real(int col) const { return sqlite3_column_double(stmt_, col); }

private:
  statement& check(int rc) {
    if (rc_ == SQLITE_OK && rc != SQLITE_OK)
      rc_ = rc;
    return *this;
  }

  sqlite3_stmt* stmt_ = nullptr;
  int rc_ = SQLITE_OK;
  int index_ = 0;
};

/// Maps an SQLite error to a failure; `what` says what was being done.
failure sql_failure(sqlite3* db, int rc, const std::string& what) {
  int ext = sqlite3_extended_errcode(db);
  std::string msg = what + ": " + sqlite3_errmsg(db);
  if ((rc & 0xff) == SQLITE_CONSTRAINT) {
    switch (ext) {
      case SQLITE_CONSTRAINT_UNIQUE:
      case SQLITE_CONSTRAINT_PRIMARYKEY:
        return fail(errc::conflict, msg);
      case SQLITE_CONSTRAINT_FOREIGNKEY:
        return fail(errc::not_found, what + ": no such user");
      default:
        return fail(errc::bad_request, msg);
    }
  }
  return fail(errc::internal, msg);
}

/// Runs static SQL (no parameters; may hold several statements).
status exec(sqlite3* db, const char* sql, const std::string& what) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  if (rc == SQLITE_OK)
    return {};
  std::string msg = what + ": " + (err ? err : sqlite3_errstr(rc));
  sqlite3_free(err);
  return fail(errc::internal, msg);
}

/// Runs a statement expected to change rows; not_found if it changed none.
status exec_change(sqlite3* db, statement& s, const std::string& what,
                   const std::string& missing = {}) {
  int rc = s.step();
  if (rc != SQLITE_DONE)
    return sql_failure(db, rc, what);
  if (!missing.empty() && sqlite3_changes(db) == 0)
    return fail(errc::not_found, missing);
  return {};
}

/// Reads every row with `read`, or fails.
template <class T, class Reader>
result<std::vector<T>> collect(sqlite3* db, statement& s, Reader read, const std::string& what) {
  std::vector<T> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW)
    out.push_back(read(s));
  if (rc != SQLITE_DONE)
    return sql_failure(db, rc, what);
  return out;
}

/// Reads exactly one row with `read`; not_found with `missing` if there is none.
template <class T, class Reader>
result<T> single(sqlite3* db, statement& s, Reader read, const std::string& what,
                 const std::string& missing) {
  int rc = s.step();
  if (rc == SQLITE_ROW)
    return read(s);
  if (rc == SQLITE_DONE)
    return fail(errc::not_found, missing);
  return sql_failure(db, rc, what);
}

class SqliteStore final : public Store {
public:
  explicit SqliteStore(sqlite3* db) : db_(db) {}
  ~SqliteStore() override { sqlite3_close_v2(db_); }

  const char* backend() const override { return "sqlite"; }
  bool shared() const override { return false; }
  int schema_version() const override { return schema_version_; }
  int latest_schema_version() const override { return kLatestVersion; }

  status configure();
  status migrate();

  result<user_record> create_user(const user_record& u) override;
  result<user_record> find_user_by_name(const std::string& username) override;
  result<user_record> find_user(uint64_t id) override;
  result<int64_t> count_users() override;
  status create_session(const session_record& session) override;
  result<session_record> find_session_by_token_hash(const std::string& token_hash) override;
  status delete_session(const std::string& id) override;
  result<std::vector<session_record>> active_sessions(int64_t now) override;
  status purge_expired_sessions(int64_t now) override;
  result<login_failures_record> note_login_failure(const std::string& username, int64_t now,
                                                   int64_t window_s) override;
  result<login_failures_record> login_failures(const std::string& username) override;
  status clear_login_failures(const std::string& username) override;
  status create_key(const key_record& key) override;
  result<std::vector<key_record>> list_keys(uint64_t user_id) override;
  result<key_record> find_key_by_hash(const std::string& key_hash) override;
  status delete_key(uint64_t user_id, const std::string& key_id) override;
  status create_job(const job_record& job) override;
  status update_job(const job_record& job, const std::string& holder) override;
  result<job_record> find_job(const std::string& id) override;
  result<std::vector<job_record>> list_jobs(uint64_t user_id, int limit) override;
  result<std::vector<job_record>> unfinished_jobs() override;
  result<std::vector<job_record>> claim_jobs(const std::string& owner, int64_t now,
                                             int64_t lease_s, uint32_t limit,
                                             bool ignore_leases) override;
  result<job_record> claim_job(const std::string& id, const std::string& owner, int64_t now,
                               int64_t lease_s) override;
  result<std::vector<std::string>> renew_leases(const std::string& owner,
                                                int64_t until) override;
  status release_jobs(const std::string& owner) override;
  result<job_record> cancel_job(const std::string& id, int64_t now) override;
  status put_model(const model_record& model) override;
  result<std::vector<model_record>> list_models() override;
  result<model_record> find_model(const std::string& name, uint32_t version) override;
  status delete_model(const std::string& name) override;

private:
  sqlite3* db_ = nullptr;
  int schema_version_ = 0;
};

} // namespace

// --- opening and migrations --------------------------------------------------

result<std::unique_ptr<Store>> open_sqlite_store(const std::string& path) {
  namespace fs = std::filesystem;
  const bool in_memory = path == ":memory:";
  if (!in_memory) {
    auto parent = fs::path(path).parent_path();
    std::error_code ec;
    if (!parent.empty())
      fs::create_directories(parent, ec);
    if (ec)
      return fail(errc::internal,
                  "cannot create directory " + parent.string() + ": " + ec.message());
  }
  sqlite3* raw = nullptr;
  // FULLMUTEX (serialized mode): safe even if the owning actor hops threads.
  int rc = sqlite3_open_v2(path.c_str(), &raw,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                           nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = "cannot open database " + path + ": "
                      + (raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc));
    sqlite3_close_v2(raw); // a handle may be returned even on failure
    return fail(errc::internal, msg);
  }
  auto store = std::make_unique<SqliteStore>(raw);
  if (auto st = store->configure(); !st)
    return st.error();
  if (auto st = store->migrate(); !st)
    return st.error();
  return std::unique_ptr<Store>(std::move(store));
}

status SqliteStore::configure() {
  // Before anything that may need a lock, so WAL switching also waits.
  sqlite3_busy_timeout(db_, 5000);
  {
    statement s(db_, "PRAGMA journal_mode=WAL");
    int rc = s.step();
    if (rc != SQLITE_ROW)
      return sql_failure(db_, rc, "enable WAL");
    auto mode = s.text(0);
    // An in-memory database reports "memory" and cannot use WAL.
    if (mode != "wal" && mode != "memory")
      return fail(errc::internal, "cannot enable WAL journal mode (got '" + mode + "')");
  }
  return exec(db_, "PRAGMA foreign_keys=ON; PRAGMA synchronous=NORMAL;", "configure database");
}

status SqliteStore::migrate() {
  auto read_version = [this]() -> result<int> {
    statement s(db_, "PRAGMA user_version");
    int rc = s.step();
    if (rc != SQLITE_ROW)
      return sql_failure(db_, rc, "read schema version");
    return static_cast<int>(s.i64(0));
  };
  auto version = read_version();
  if (!version)
    return version.error();
  if (*version > kLatestVersion)
    return fail(errc::internal, "database schema version " + std::to_string(*version)
                                  + " is newer than this build supports ("
                                  + std::to_string(kLatestVersion) + "); upgrade rookery");
  while (*version < kLatestVersion) {
    // IMMEDIATE takes the write lock now, so a second process opening the same
    // file concurrently waits and then sees the bumped version below.
    if (auto st = exec(db_, "BEGIN IMMEDIATE", "begin migration"); !st)
      return st;
    auto current = read_version();
    if (!current) {
      exec(db_, "ROLLBACK", "rollback migration");
      return current.error();
    }
    version = std::move(current);
    if (*version >= kLatestVersion) {
      exec(db_, "ROLLBACK", "rollback migration");
      break;
    }
    int target = *version + 1;
    // user_version is part of the database header, so setting it is
    // transactional; the value is an integer from this code, not user input.
    std::string bump = "PRAGMA user_version=" + std::to_string(target);
    status st = exec(db_, kMigrations[*version],
                     "schema migration to version " + std::to_string(target));
    if (st)
      st = exec(db_, bump.c_str(), "set schema version");
    if (st)
      st = exec(db_, "COMMIT", "commit migration");
    if (!st) {
      exec(db_, "ROLLBACK", "rollback migration");
      return st;
    }
    *version = target;
  }
  if (*version > kLatestVersion) // another process upgraded it meanwhile
    return fail(errc::internal, "database schema version " + std::to_string(*version)
                                  + " is newer than this build supports");
  schema_version_ = *version;
  return {};
}

// --- users --------------------------------------------------------------------

result<user_record> SqliteStore::create_user(const user_record& in) {
  user_record u = in;
  statement s(db_, "INSERT INTO users (username, password_hash, is_admin, created_at) "
                   "VALUES (?, ?, ?, ?)");
  s.bind(u.username).bind(u.password_hash).bind(u.is_admin).bind(u.created_at);
  int rc = s.step();
  if (rc != SQLITE_DONE) {
    auto f = sql_failure(db_, rc, "create user");
    if (f.code == errc::conflict)
      f.message = "username '" + u.username + "' is taken";
    return f;
  }
  u.id = static_cast<uint64_t>(sqlite3_last_insert_rowid(db_));
  return u;
}

result<user_record> SqliteStore::find_user_by_name(const std::string& username) {
  statement s(db_, "SELECT " USER_COLUMNS " FROM users WHERE username = ?");
  s.bind(username);
  return single<user_record>(db_, s, read_user<statement>, "find user",
                             "no user named '" + username + "'");
}

result<user_record> SqliteStore::find_user(uint64_t id) {
  statement s(db_, "SELECT " USER_COLUMNS " FROM users WHERE id = ?");
  s.bind(id);
  return single<user_record>(db_, s, read_user<statement>, "find user",
                             "no user with id " + std::to_string(id));
}

result<int64_t> SqliteStore::count_users() {
  statement s(db_, "SELECT COUNT(*) FROM users");
  return single<int64_t>(db_, s, [](const statement& st) { return st.i64(0); }, "count users",
                         "count users: no row");
}

// --- sessions -----------------------------------------------------------------

status SqliteStore::create_session(const session_record& r) {
  statement s(db_, "INSERT INTO sessions (" SESSION_COLUMNS ") VALUES (?, ?, ?, ?, ?, ?)");
  s.bind(r.id).bind(r.token_hash).bind(r.user_id).bind(scopes_to_text(r.scopes))
    .bind(r.created_at).bind(r.expires_at);
  return exec_change(db_, s, "create session");
}

result<session_record> SqliteStore::find_session_by_token_hash(const std::string& token_hash) {
  statement s(db_, "SELECT " SESSION_COLUMNS " FROM sessions WHERE token_hash = ?");
  s.bind(token_hash);
  return single<session_record>(db_, s, read_session<statement>, "find session", "no such session");
}

status SqliteStore::delete_session(const std::string& id) {
  statement s(db_, "DELETE FROM sessions WHERE id = ?");
  s.bind(id);
  return exec_change(db_, s, "delete session", "no session '" + id + "'");
}

result<std::vector<session_record>> SqliteStore::active_sessions(int64_t now) {
  statement s(db_, "SELECT " SESSION_COLUMNS " FROM sessions "
                   "WHERE expires_at = 0 OR expires_at > ? ORDER BY created_at, id");
  s.bind(now);
  return collect<session_record>(db_, s, read_session<statement>, "list sessions");
}

status SqliteStore::purge_expired_sessions(int64_t now) {
  statement s(db_, "DELETE FROM sessions WHERE expires_at <> 0 AND expires_at <= ?");
  s.bind(now);
  return exec_change(db_, s, "purge sessions");
}

// --- API keys -------------------------------------------------------------------

status SqliteStore::create_key(const key_record& k) {
  statement s(db_, "INSERT INTO api_keys (" KEY_COLUMNS ") VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
  s.bind(k.id).bind(k.user_id).bind(k.name).bind(scopes_to_text(k.scopes)).bind(k.key_hash)
    .bind(k.prefix).bind(k.created_at).bind(k.expires_at);
  return exec_change(db_, s, "create API key");
}

result<std::vector<key_record>> SqliteStore::list_keys(uint64_t user_id) {
  statement s(db_, "SELECT " KEY_COLUMNS " FROM api_keys WHERE user_id = ? "
                   "ORDER BY created_at, id");
  s.bind(user_id);
  return collect<key_record>(db_, s, read_key<statement>, "list API keys");
}

result<key_record> SqliteStore::find_key_by_hash(const std::string& key_hash) {
  statement s(db_, "SELECT " KEY_COLUMNS " FROM api_keys WHERE key_hash = ?");
  s.bind(key_hash);
  return single<key_record>(db_, s, read_key<statement>, "find API key", "no such API key");
}

status SqliteStore::delete_key(uint64_t user_id, const std::string& key_id) {
  // The owner is part of the WHERE clause: another user's key is "not found".
  statement s(db_, "DELETE FROM api_keys WHERE id = ? AND user_id = ?");
  s.bind(key_id).bind(user_id);
  return exec_change(db_, s, "delete API key", "no API key '" + key_id + "'");
}

// --- jobs -----------------------------------------------------------------------

status SqliteStore::create_job(const job_record& j) {
  statement s(db_, "INSERT INTO jobs (" JOB_COLUMNS ") "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  s.bind(j.id).bind(j.user_id).bind(j.kind).bind(j.state).bind(j.spec_json)
    .bind(j.result_json).bind(j.error).bind(j.progress).bind(j.created_at)
    .bind(j.started_at).bind(j.finished_at).bind(j.progress_json).bind(j.owner)
    .bind(j.lease_until);
  return exec_change(db_, s, "create job");
}

status SqliteStore::update_job(const job_record& j, const std::string& holder) {
  statement s(db_, "UPDATE jobs SET state = ?, result_json = ?, error = ?, progress = ?, "
                   "started_at = ?, finished_at = ?, progress_json = ?, owner = ?, "
                   "lease_until = CASE WHEN ? = '' THEN 0 ELSE lease_until END "
                   "WHERE id = ? AND (? = '' OR (owner = ? AND state IN (?, ?)))");
  s.bind(j.state).bind(j.result_json).bind(j.error).bind(j.progress).bind(j.started_at)
    .bind(j.finished_at).bind(j.progress_json).bind(j.owner).bind(j.owner).bind(j.id)
    .bind(holder).bind(holder).bind(job_state::queued).bind(job_state::running);
  int rc = s.step();
  if (rc != SQLITE_DONE)
    return sql_failure(db_, rc, "update job");
  if (sqlite3_changes(db_) == 0) {
    if (holder.empty() || !find_job(j.id))
      return fail(errc::not_found, "no job '" + j.id + "'");
    return fail(errc::conflict, "job '" + j.id + "' is no longer held by " + holder);
  }
  return {};
}

result<job_record> SqliteStore::find_job(const std::string& id) {
  statement s(db_, "SELECT " JOB_COLUMNS " FROM jobs WHERE id = ?");
  s.bind(id);
  return single<job_record>(db_, s, read_job<statement>, "find job", "no job '" + id + "'");
}

result<std::vector<job_record>> SqliteStore::list_jobs(uint64_t user_id, int limit) {
  // LIMIT -1 is "no limit" in SQLite. rowid breaks ties within one second.
  statement s(db_, "SELECT " JOB_COLUMNS " FROM jobs WHERE user_id = ? "
                   "ORDER BY created_at DESC, rowid DESC LIMIT ?");
  s.bind(user_id).bind(limit > 0 ? limit : -1);
  return collect<job_record>(db_, s, read_job<statement>, "list jobs");
}

result<std::vector<job_record>> SqliteStore::unfinished_jobs() {
  statement s(db_, "SELECT " JOB_COLUMNS " FROM jobs WHERE state IN (?, ?) "
                   "ORDER BY created_at, rowid");
  s.bind(job_state::queued).bind(job_state::running);
  return collect<job_record>(db_, s, read_job<statement>, "list unfinished jobs");
}

result<std::vector<job_record>> SqliteStore::claim_jobs(const std::string& owner, int64_t now,
                                                       int64_t lease_s, uint32_t limit,
                                                       bool ignore_leases) {
  // One statement, so atomic; SQLite has a single writer at a time anyway.
  statement s(db_, "UPDATE jobs SET owner = ?, lease_until = ? WHERE rowid IN ("
                   "SELECT rowid FROM jobs WHERE state IN (?, ?) "
                   "AND (? OR owner = '' OR lease_until < ?) "
                   "ORDER BY created_at, rowid LIMIT ?) RETURNING " JOB_COLUMNS);
  s.bind(owner).bind(now + lease_s).bind(job_state::queued).bind(job_state::running)
    .bind(ignore_leases).bind(now).bind(limit > 0 ? static_cast<int64_t>(limit) : -1);
  auto jobs = collect<job_record>(db_, s, read_job<statement>, "claim jobs");
  if (jobs) // RETURNING gives rows in no promised order
    std::sort(jobs->begin(), jobs->end(), [](const job_record& a, const job_record& b) {
      return a.created_at != b.created_at ? a.created_at < b.created_at : a.id < b.id;
    });
  return jobs;
}

result<job_record> SqliteStore::claim_job(const std::string& id, const std::string& owner,
                                          int64_t now, int64_t lease_s) {
  statement s(db_, "UPDATE jobs SET owner = ?, lease_until = ? WHERE id = ? AND state IN (?, ?) "
                   "AND (owner = '' OR owner = ? OR lease_until < ?) RETURNING " JOB_COLUMNS);
  s.bind(owner).bind(now + lease_s).bind(id).bind(job_state::queued).bind(job_state::running)
    .bind(owner).bind(now);
  auto r = single<job_record>(db_, s, read_job<statement>, "claim job", "");
  if (r || r.error().code != errc::not_found)
    return r;
  auto cur = find_job(id);
  if (!cur)
    return cur.error();
  return fail(errc::conflict, "job '" + id + "' is " + cur->state
                                + (cur->owner.empty() ? "" : " on " + cur->owner));
}

result<std::vector<std::string>> SqliteStore::renew_leases(const std::string& owner,
                                                          int64_t until) {
  statement s(db_, "UPDATE jobs SET lease_until = ? WHERE owner = ? AND state IN (?, ?) "
                   "RETURNING id");
  s.bind(until).bind(owner).bind(job_state::queued).bind(job_state::running);
  return collect<std::string>(db_, s, [](const statement& st) { return st.text(0); },
                              "renew leases");
}

status SqliteStore::release_jobs(const std::string& owner) {
  statement s(db_, "UPDATE jobs SET owner = '', lease_until = 0 WHERE owner = ? "
                   "AND state IN (?, ?)");
  s.bind(owner).bind(job_state::queued).bind(job_state::running);
  return exec_change(db_, s, "release jobs");
}

result<job_record> SqliteStore::cancel_job(const std::string& id, int64_t now) {
  statement s(db_, "UPDATE jobs SET state = ?, finished_at = ? WHERE id = ? AND state IN (?, ?) "
                   "RETURNING " JOB_COLUMNS);
  s.bind(job_state::cancelled).bind(now).bind(id).bind(job_state::queued)
    .bind(job_state::running);
  auto r = single<job_record>(db_, s, read_job<statement>, "cancel job", "");
  if (r || r.error().code != errc::not_found)
    return r;
  auto cur = find_job(id);
  if (!cur)
    return cur.error();
  return fail(errc::conflict, "job '" + id + "' already " + cur->state);
}

// --- failed logins ------------------------------------------------------------------

result<login_failures_record> SqliteStore::note_login_failure(const std::string& username,
                                                             int64_t now, int64_t window_s) {
  statement s(db_, "INSERT INTO login_failures (username, count, first_at) VALUES (?, 1, ?) "
                   "ON CONFLICT (username) DO UPDATE SET "
                   "count = CASE WHEN login_failures.first_at < ? THEN 1 ELSE login_failures.count + 1 END, "
                   "first_at = CASE WHEN login_failures.first_at < ? THEN excluded.first_at "
                   "ELSE login_failures.first_at END "
                   "RETURNING username, count, first_at");
  s.bind(username).bind(now).bind(now - window_s).bind(now - window_s);
  return single<login_failures_record>(
    db_, s,
    read_failures<statement>,
    "count a failed login", "count a failed login: no row");
}

result<login_failures_record> SqliteStore::login_failures(const std::string& username) {
  statement s(db_, "SELECT username, count, first_at FROM login_failures WHERE username = ?");
  s.bind(username);
  auto r = single<login_failures_record>(
    db_, s,
    read_failures<statement>,
    "read failed logins", "");
  if (!r && r.error().code == errc::not_found)
    return login_failures_record{username, 0, 0};
  return r;
}

status SqliteStore::clear_login_failures(const std::string& username) {
  statement s(db_, "DELETE FROM login_failures WHERE username = ?");
  s.bind(username);
  return exec_change(db_, s, "clear failed logins");
}

// --- models -----------------------------------------------------------------------

status SqliteStore::put_model(const model_record& m) {
  if (m.version == 0)
    return fail(errc::bad_request, "model version must be at least 1");
  statement s(db_, "INSERT OR REPLACE INTO models (" MODEL_COLUMNS ") "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
  s.bind(m.name).bind(m.version).bind(m.arch).bind(m.format).bind(m.path).bind(m.config_json)
    .bind(m.owner_id).bind(m.created_at);
  return exec_change(db_, s, "put model");
}

result<std::vector<model_record>> SqliteStore::list_models() {
  statement s(db_, "SELECT " MODEL_COLUMNS " FROM models ORDER BY name, version");
  return collect<model_record>(db_, s, read_model<statement>, "list models");
}

result<model_record> SqliteStore::find_model(const std::string& name, uint32_t version) {
  std::string missing = version == 0 ? "no model '" + name + "'"
                                     : "no model '" + name + "' version "
                                         + std::to_string(version);
  if (version == 0) {
    statement s(db_, "SELECT " MODEL_COLUMNS " FROM models WHERE name = ? "
                     "ORDER BY version DESC LIMIT 1");
    s.bind(name);
    return single<model_record>(db_, s, read_model<statement>, "find model", missing);
  }
  statement s(db_, "SELECT " MODEL_COLUMNS " FROM models WHERE name = ? AND version = ?");
  s.bind(name).bind(version);
  return single<model_record>(db_, s, read_model<statement>, "find model", missing);
}

status SqliteStore::delete_model(const std::string& name) {
  statement s(db_, "DELETE FROM models WHERE name = ?");
  s.bind(name);
  return exec_change(db_, s, "delete model", "no model '" + name + "'");
}

} // namespace rookery

// The store: users, sessions, API keys, failed-login counters, jobs and the
// model repository index, behind one interface with two backends:
//  - SQLite (store/sqlite_store.cpp): the embedded default, one file in the data
//    directory, for a single node;
//  - PostgreSQL (store/pg_store.cpp, libpq): shared by several gateways.
// Each backend has its own versioned migrations and passes the same unit tests
// (tests/unit/store_test.cpp runs every case against both).
//
// One Store owns one connection and is meant to be used by one actor at a time
// (no locking of its own; the SQLite connection is opened in serialized mode and
// a libpq connection may move between threads, so CAF moving the actor is fine).
//
// Conventions:
//  - every method returns result<T> / status and never throws;
//  - the store never reads the clock: callers pass every time (common/clock.hpp);
//  - errc::not_found: no such row (or, for delete_key, a row of another user);
//    errc::conflict: a unique key is taken (username, id, token/key hash), or a
//    job is held by another node; errc::bad_request: a value the schema rejects
//    (e.g. model version 0); errc::unavailable: the database cannot be reached;
//    errc::internal: any other database error, with the database's message;
//  - usernames are unique case-insensitively (ASCII letters): "Alice" and
//    "alice" are the same user, and find_user_by_name("ALICE") finds her;
//  - expires_at == 0 means "never" for both sessions and keys. find_session_*
//    and find_key_* return expired rows too: callers check expires_at;
//  - sessions, keys and jobs reference users(id) with ON DELETE CASCADE, so
//    their user_id must name an existing user (else errc::not_found).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "messages/records.hpp"

namespace rookery {

class Store {
public:
  /// Opens the store `where` names: a `postgresql://` or `postgres://` URI (a
  /// libpq connection URI) selects PostgreSQL; anything else is an SQLite file
  /// path (created with its parent directories if needed; ":memory:" is a
  /// private in-memory database). Applies every pending migration of that
  /// backend; fails if the schema is newer than this build knows.
  static result<std::unique_ptr<Store>> open(const std::string& where);

  /// True when `where` names a PostgreSQL database.
  static bool is_postgres(const std::string& where);

  virtual ~Store() = default;
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  /// "sqlite" or "postgresql".
  virtual const char* backend() const = 0;
  /// True when other processes may use the same store at the same time (so
  /// nothing may be assumed from being the only writer).
  virtual bool shared() const = 0;
  /// Schema version after migrations, and the highest this build knows.
  virtual int schema_version() const = 0;
  virtual int latest_schema_version() const = 0;

  // --- users
  /// Inserts `u` (its id is ignored, the assigned one is returned); conflict if
  /// the username is taken.
  virtual result<user_record> create_user(const user_record& u) = 0;
  virtual result<user_record> find_user_by_name(const std::string& username) = 0;
  virtual result<user_record> find_user(uint64_t id) = 0;
  virtual result<int64_t> count_users() = 0;

  // --- sessions (stored as given; the caller fills id, token_hash and times)
  virtual status create_session(const session_record& session) = 0;
  virtual result<session_record> find_session_by_token_hash(const std::string& token_hash) = 0;
  /// not_found if no session has this id.
  virtual status delete_session(const std::string& id) = 0;
  /// Sessions with expires_at > now (or 0), oldest first.
  virtual result<std::vector<session_record>> active_sessions(int64_t now) = 0;
  /// Deletes sessions with 0 < expires_at <= now.
  virtual status purge_expired_sessions(int64_t now) = 0;

  // --- failed logins, counted per user name within a window
  /// Counts one failure of `username` at `now`: a window older than window_s
  /// starts again at now. Returns the counter after the increment.
  virtual result<login_failures_record> note_login_failure(const std::string& username,
                                                           int64_t now, int64_t window_s) = 0;
  /// The counter (count 0 when there is none).
  virtual result<login_failures_record> login_failures(const std::string& username) = 0;
  virtual status clear_login_failures(const std::string& username) = 0;

  // --- API keys (stored as given)
  virtual status create_key(const key_record& key) = 0;
  /// The user's keys, oldest first.
  virtual result<std::vector<key_record>> list_keys(uint64_t user_id) = 0;
  virtual result<key_record> find_key_by_hash(const std::string& key_hash) = 0;
  /// not_found when the key does not exist or belongs to another user.
  virtual status delete_key(uint64_t user_id, const std::string& key_id) = 0;

  // --- jobs (stored as given)
  virtual status create_job(const job_record& job) = 0;
  /// Updates state, result_json, error, progress, progress_json, started_at,
  /// finished_at and owner of job `job.id` (id, user_id, kind, spec_json and
  /// created_at never change; the lease moves only by claims and renewals, and
  /// is cleared with the owner). With a non-empty `holder` only
  /// while that node holds the job: conflict when another node has taken it
  /// over, or it was cancelled elsewhere meanwhile.
  virtual status update_job(const job_record& job, const std::string& holder = {}) = 0;
  virtual result<job_record> find_job(const std::string& id) = 0;
  /// The user's jobs, newest first; limit <= 0 means no limit.
  virtual result<std::vector<job_record>> list_jobs(uint64_t user_id, int limit = 100) = 0;
  /// Jobs in state queued or running, oldest first.
  virtual result<std::vector<job_record>> unfinished_jobs() = 0;
  /// Atomically gives `owner` up to `limit` (0: no limit) unfinished jobs that
  /// nobody holds, or whose holder's lease ended before `now` (never those
  /// `owner` holds already, so `limit` counts new work only; every unfinished
  /// job when `ignore_leases`: a single node taking back its own after a
  /// restart), with a lease until now + lease_s; oldest first. Two nodes
  /// claiming at once never get the same job.
  virtual result<std::vector<job_record>> claim_jobs(const std::string& owner, int64_t now,
                                                     int64_t lease_s, uint32_t limit,
                                                     bool ignore_leases) = 0;
  /// Claims one unfinished job for `owner` (when unclaimed, lapsed or owner's
  /// already); conflict when another node holds it or it has finished.
  virtual result<job_record> claim_job(const std::string& id, const std::string& owner,
                                       int64_t now, int64_t lease_s) = 0;
  /// Extends every lease `owner` holds on unfinished jobs to `until`; returns
  /// those jobs' ids (a job missing from the answer was cancelled elsewhere or
  /// taken over after the lease lapsed).
  virtual result<std::vector<std::string>> renew_leases(const std::string& owner,
                                                        int64_t until) = 0;
  /// Lets go of every unfinished job `owner` holds (a node stopping cleanly),
  /// so another node can claim them at once.
  virtual status release_jobs(const std::string& owner) = 0;
  /// Marks an unfinished job cancelled at `now`, whichever node holds it;
  /// conflict (naming the state) when it has finished, not_found if unknown.
  virtual result<job_record> cancel_job(const std::string& id, int64_t now) = 0;

  // --- models
  /// Inserts or replaces (name, version); bad_request if version is 0.
  virtual status put_model(const model_record& model) = 0;
  /// All models, by name then version.
  virtual result<std::vector<model_record>> list_models() = 0;
  /// The given version, or the highest one when version == 0.
  virtual result<model_record> find_model(const std::string& name, uint32_t version = 0) = 0;
  /// Deletes every version of `name`; not_found if there is none.
  virtual status delete_model(const std::string& name) = 0;

protected:
  Store() = default;
};

/// The backends, for Store::open (and for tests that want one explicitly).
result<std::unique_ptr<Store>> open_sqlite_store(const std::string& path);
result<std::unique_ptr<Store>> open_postgres_store(const std::string& uri);

/// The name as the login lockout counts it: ASCII letters lower-cased, the way
/// the store compares user names.
std::string lockout_name(const std::string& username);

} // namespace rookery

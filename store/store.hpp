// The SQLite store: users, sessions, API keys, jobs and the model repository
// index. One Store owns one connection and is meant to be used by one actor at a
// time (it has no locking of its own; the connection is opened in SQLite's
// serialized mode, so moving between threads, as CAF may do, is fine).
//
// Conventions:
//  - every method returns result<T> / status and never throws;
//  - errc::not_found: no such row (or, for delete_key, a row of another user);
//    errc::conflict: a unique key is taken (username, id, token/key hash);
//    errc::bad_request: a value the schema rejects (e.g. model version 0);
//    errc::internal: any other SQLite error, with sqlite3_errmsg in the message;
//  - usernames are unique case-insensitively (ASCII only, SQLite NOCASE): "Alice"
//    and "alice" are the same user, and find_user_by_name("ALICE") finds her;
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

struct sqlite3;

namespace rookery {

class Store {
public:
  /// Opens (creating it and its parent directories if needed) the database at
  /// `path`, switches it to WAL mode with foreign keys on, and applies every
  /// pending schema migration. ":memory:" gives a private in-memory database
  /// (no WAL). Fails if the file's schema is newer than this build knows.
  static result<std::unique_ptr<Store>> open(const std::string& path);

  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  /// Schema version after migrations (PRAGMA user_version).
  int schema_version() const { return schema_version_; }

  /// Highest schema version this build knows.
  static int latest_schema_version();

  /// Current time, Unix seconds.
  static int64_t now();

  // --- users
  /// Inserts a user with created_at = now(); conflict if the username is taken.
  result<user_record> create_user(const std::string& username, const std::string& password_hash,
                                  bool is_admin);
  result<user_record> find_user_by_name(const std::string& username);
  result<user_record> find_user(uint64_t id);
  result<int64_t> count_users();

  // --- sessions (stored as given; the caller fills id, token_hash and times)
  status create_session(const session_record& session);
  result<session_record> find_session_by_token_hash(const std::string& token_hash);
  /// not_found if no session has this id.
  status delete_session(const std::string& id);
  /// Sessions with expires_at > now (or 0), oldest first.
  result<std::vector<session_record>> active_sessions(int64_t now);
  /// Deletes sessions with 0 < expires_at <= now.
  status purge_expired_sessions(int64_t now);

  // --- API keys (stored as given)
  status create_key(const key_record& key);
  /// The user's keys, oldest first.
  result<std::vector<key_record>> list_keys(uint64_t user_id);
  result<key_record> find_key_by_hash(const std::string& key_hash);
  /// not_found when the key does not exist or belongs to another user.
  status delete_key(uint64_t user_id, const std::string& key_id);

  // --- jobs (stored as given)
  status create_job(const job_record& job);
  /// Updates state, result_json, error, progress, started_at and finished_at of
  /// job `job.id` (id, user_id, kind, spec_json and created_at never change).
  status update_job(const job_record& job);
  result<job_record> find_job(const std::string& id);
  /// The user's jobs, newest first; limit <= 0 means no limit.
  result<std::vector<job_record>> list_jobs(uint64_t user_id, int limit = 100);
  /// Jobs in state queued or running, oldest first (for recovery at start-up).
  result<std::vector<job_record>> unfinished_jobs();

  // --- models
  /// Inserts or replaces (name, version); bad_request if version is 0.
  status put_model(const model_record& model);
  /// All models, by name then version.
  result<std::vector<model_record>> list_models();
  /// The given version, or the highest one when version == 0.
  result<model_record> find_model(const std::string& name, uint32_t version = 0);
  /// Deletes every version of `name`; not_found if there is none.
  status delete_model(const std::string& name);

private:
  explicit Store(sqlite3* db) : db_(db) {}
  status configure();
  status migrate();

  sqlite3* db_ = nullptr;
  int schema_version_ = 0;
};

} // namespace rookery

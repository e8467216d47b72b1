// Plain records shared by the store, the actors and the HTTP layer. Each has a
// free `inspect` so it can travel in CAF messages (and across the network once
// registered in messages/registration.cpp). Times are Unix seconds unless the
// name says otherwise; 0 means "unset".
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <caf/meta/type_name.hpp>

namespace rookery {

struct user_record {
  uint64_t id = 0;
  std::string username;
  std::string password_hash; // Argon2id string; never leaves the auth/store actors
  bool is_admin = false;
  int64_t created_at = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, user_record& x) {
  return f(caf::meta::type_name("rookery.user_record"), x.id, x.username, x.password_hash,
           x.is_admin, x.created_at);
}

/// Who is calling: resolved from a bearer token or an API key.
struct principal {
  uint64_t user_id = 0;
  std::string username;
  bool is_admin = false;
  std::vector<std::string> scopes; // "embed", "train", "admin"
  std::string key_id;              // set when authenticated by API key
  std::string session_id;          // set when authenticated by bearer token
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, principal& x) {
  return f(caf::meta::type_name("rookery.principal"), x.user_id, x.username, x.is_admin,
           x.scopes, x.key_id, x.session_id);
}

struct session_record {
  std::string id;         // public id (random, not the token)
  std::string token_hash; // BLAKE2b-256 of the bearer token, hex
  uint64_t user_id = 0;
  std::vector<std::string> scopes;
  int64_t created_at = 0;
  int64_t expires_at = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, session_record& x) {
  return f(caf::meta::type_name("rookery.session_record"), x.id, x.token_hash, x.user_id,
           x.scopes, x.created_at, x.expires_at);
}

struct key_record {
  std::string id; // public id, e.g. "k_3f9a..."
  uint64_t user_id = 0;
  std::string name;
  std::vector<std::string> scopes;
  std::string key_hash; // BLAKE2b-256 of the secret, hex; never sent to clients
  std::string prefix;   // first characters of the secret, to help users tell keys apart
  int64_t created_at = 0;
  int64_t expires_at = 0; // 0: never
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, key_record& x) {
  return f(caf::meta::type_name("rookery.key_record"), x.id, x.user_id, x.name, x.scopes,
           x.key_hash, x.prefix, x.created_at, x.expires_at);
}

/// Job states, as stored and as shown by the API.
namespace job_state {
constexpr const char* queued = "queued";
constexpr const char* running = "running";
constexpr const char* succeeded = "succeeded";
constexpr const char* failed = "failed";
constexpr const char* cancelled = "cancelled";
} // namespace job_state

struct job_record {
  std::string id; // "j_<hex>"
  uint64_t user_id = 0;
  std::string kind;        // "embed" or "train"
  std::string state;       // see job_state
  std::string spec_json;   // what was asked (JSON text)
  std::string result_json; // result once succeeded (JSON text), "" otherwise
  std::string error;       // message once failed
  double progress = 0;     // 0..1
  int64_t created_at = 0;
  int64_t started_at = 0;
  int64_t finished_at = 0;
  std::string progress_json; // training: {epoch, epochs, step, total_steps, eta_s, lr, metrics}
  std::string history_json;  // training: metric history (JSON array); filled on GET, not stored
  // Which node runs (or will run) the job, and until when its claim holds
  // unless renewed; "" / 0 while unclaimed. Nodes claim jobs from the store,
  // so with a shared store no two nodes run the same job.
  std::string owner;
  int64_t lease_until = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, job_record& x) {
  return f(caf::meta::type_name("rookery.job_record"), x.id, x.user_id, x.kind, x.state,
           x.spec_json, x.result_json, x.error, x.progress, x.created_at, x.started_at,
           x.finished_at, x.progress_json, x.history_json, x.owner, x.lease_until);
}

/// Failed logins of one user name within the current window, kept in the
/// store so that the lockout holds across every gateway.
struct login_failures_record {
  std::string username; // lower-cased (ASCII), as the lockout counts it
  uint32_t count = 0;
  int64_t first_at = 0; // start of the window; 0 when there is none
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, login_failures_record& x) {
  return f(caf::meta::type_name("rookery.login_failures_record"), x.username, x.count,
           x.first_at);
}

/// One entry of the model repository (<data>/models/<name>/<version>/).
struct model_record {
  std::string name;
  uint32_t version = 1;
  std::string arch;        // zoo architecture ("resnet18") or "torchscript"
  std::string format;      // "state_dict" or "torchscript"
  std::string path;        // weights file
  std::string config_json; // options as JSON text
  uint64_t owner_id = 0;   // 0: installed by an operator
  int64_t created_at = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, model_record& x) {
  return f(caf::meta::type_name("rookery.model_record"), x.name, x.version, x.arch, x.format,
           x.path, x.config_json, x.owner_id, x.created_at);
}

} // namespace rookery

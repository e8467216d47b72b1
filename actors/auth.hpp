// Accounts, logins, sessions and API keys.
//  - hasher: Argon2id on detached actors, so password work never blocks the scheduler.
//  - session: one actor per login: identity, scopes, an expiry timer.
//  - auth: resolves bearer tokens and API keys to a principal, rate-limits them,
//    and slows, then refuses, repeated failed logins. Sessions and keys are
//    cached, and looked up in the store when unknown here (a login on another
//    gateway) or when the cache is older than revalidate_ms. Failed logins
//    are counted in the store, so the lockout holds across gateways.
#pragma once
#include <cstdint>
#include <deque>
#include <string>
#include <unordered_map>
#include <vector>

#include <caf/typed_response_promise.hpp>

#include "common/token_bucket.hpp"
#include "messages/protocol.hpp"

namespace rookery {

struct auth_settings {
  int64_t session_ttl_s = 86400;
  uint32_t slowdown_after = 3;
  uint32_t lockout_after = 10;
  int64_t window_s = 900;
  double rate_per_s = 50;
  double burst = 100;
  // How long a cached session or API key is trusted before the store is asked
  // again; 0: for ever (a single node with its own store, where every logout
  // and revocation passes through this actor). With a shared store another
  // gateway may end a session or revoke a key, so it dies here within this.
  int64_t revalidate_ms = 0;
};

hasher_actor::behavior_type hasher_impl(hasher_actor::pointer self);

struct session_state {
  static inline const char* name = "session";
  principal who;
  std::string token_hash;
  int64_t expires_at = 0;
};

session_actor::behavior_type session_impl(session_actor::stateful_pointer<session_state> self,
                                          principal who, std::string token_hash,
                                          int64_t expires_at, auth_actor auth);

struct auth_state {
  static inline const char* name = "auth";
  struct cached_session {
    session_actor actor;
    double checked_at = 0; // steady seconds of the last look at the store
  };
  struct cached_key {
    key_record key;
    principal who;
    double checked_at = 0;
  };
  struct pending_login {
    std::string username, password;
    caf::typed_response_promise<login_result> promise;
  };
  auth_settings settings;
  store_actor store;
  std::vector<hasher_actor> hashers;
  size_t next_hasher = 0;
  std::unordered_map<std::string, cached_session> sessions; // token hash -> session
  std::unordered_map<std::string, cached_key> keys;        // key hash -> key
  // Per gateway: with N gateways a credential may make N times rate_per_s.
  std::unordered_map<std::string, token_bucket> buckets;   // key id / session id -> bucket
  std::unordered_map<uint64_t, pending_login> delayed;      // slowed-down logins
  uint64_t next_delayed = 0;
  hasher_actor hasher();
};

/// Spawned by the node; loads unexpired sessions from the store on start.
auth_actor::behavior_type auth_impl(auth_actor::stateful_pointer<auth_state> self,
                                    store_actor store, std::vector<hasher_actor> hashers,
                                    auth_settings settings);

/// Scopes every session of this user gets.
std::vector<std::string> user_scopes(bool is_admin);

/// True when `scope` is in `p.scopes`.
bool has_scope(const principal& p, const std::string& scope);

} // namespace rookery

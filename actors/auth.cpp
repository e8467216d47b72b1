#include "actors/auth.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>

#include <caf/all.hpp>

#include "common/clock.hpp"
#include "common/crypto.hpp"
#include "messages/registration.hpp"
#include "store/store.hpp" // lockout_name

namespace rookery {

namespace {

constexpr const char* kScopes[] = {"embed", "train", "admin"};

double steady_seconds() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

principal principal_of(const user_record& u, std::vector<std::string> scopes) {
  principal p;
  p.user_id = u.id;
  p.username = u.username;
  p.is_admin = u.is_admin;
  p.scopes = std::move(scopes);
  return p;
}

} // namespace

std::vector<std::string> user_scopes(bool is_admin) {
  if (is_admin)
    return {"embed", "train", "admin"};
  return {"embed", "train"};
}

bool has_scope(const principal& p, const std::string& scope) {
  return std::find(p.scopes.begin(), p.scopes.end(), scope) != p.scopes.end();
}

hasher_actor::behavior_type hasher_impl(hasher_actor::pointer) {
  return {
    [](hash_atom, const std::string& password) -> caf::result<std::string> {
      auto h = crypto::hash_password(password);
      if (h.empty())
        return to_error(errc::internal, "password hashing ran out of memory");
      return h;
    },
    [](verify_atom, const std::string& hash, const std::string& password) {
      return crypto::verify_password(hash, password);
    },
  };
}

session_actor::behavior_type session_impl(session_actor::stateful_pointer<session_state> self,
                                          principal who, std::string token_hash,
                                          int64_t expires_at, auth_actor auth) {
  self->state.who = std::move(who);
  self->state.token_hash = std::move(token_hash);
  self->state.expires_at = expires_at;
  auto left = std::max<int64_t>(0, expires_at - unix_now());
  // The expiry timer: a close message to ourselves; auth is told to forget us.
  self->delayed_send(self, std::chrono::seconds(left), caf::close_atom::value);
  return {
    [=](caf::get_atom) -> caf::result<principal> {
      if (unix_now() >= self->state.expires_at)
        return to_error(errc::unauthorized, "the token has expired; log in again");
      return self->state.who;
    },
    [=](caf::close_atom) {
      self->send(auth, expire_atom::value, self->state.token_hash);
      self->quit();
    },
  };
}

hasher_actor auth_state::hasher() {
  auto& h = hashers[next_hasher++ % hashers.size()];
  return h;
}

auth_actor::behavior_type auth_impl(auth_actor::stateful_pointer<auth_state> self,
                                    store_actor store, std::vector<hasher_actor> hashers,
                                    auth_settings settings) {
  auto& st = self->state;
  st.store = store;
  st.hashers = std::move(hashers);
  st.settings = settings;
  const auto timeout = std::chrono::seconds(30);

  auto start_session = [=](const session_record& rec, const user_record& user) {
    auto who = principal_of(user, rec.scopes);
    who.session_id = rec.id;
    auto& slot = self->state.sessions[rec.token_hash];
    slot.checked_at = steady_seconds();
    if (slot.actor) // looked up twice at once: one actor is enough
      return;
    slot.actor = self->spawn<caf::linked>(session_impl, who, rec.token_hash, rec.expires_at,
                                          caf::actor_cast<auth_actor>(self));
  };
  auto stale = [=](double checked_at) {
    auto ms = self->state.settings.revalidate_ms;
    return ms > 0 && (steady_seconds() - checked_at) * 1000.0 >= static_cast<double>(ms);
  };
  auto forget_session = [=](const std::string& hash) {
    auto i = self->state.sessions.find(hash);
    if (i == self->state.sessions.end())
      return;
    self->send(i->second.actor, caf::close_atom::value);
    self->state.sessions.erase(i);
  };

  // Sessions survive a restart without being loaded: an unknown token is
  // looked up in the store on first use. Listing them purges the expired ones.
  self->request(store, timeout, list_atom::value, session_atom::value, unix_now())
    .then([](std::vector<session_record>&) {}, [](caf::error&) {});

  // Records a failed login (in the store: the count holds across gateways)
  // and answers 401 (the caller's promise).
  auto failed_login = [=](const std::string& username,
                          caf::typed_response_promise<login_result> rp) {
    self->request(self->state.store, timeout, failure_atom::value, lockout_name(username),
                  unix_now(), self->state.settings.window_s)
      .then([=](login_failures_record&) mutable {
              rp.deliver(to_error(errc::unauthorized, "invalid username or password"));
            },
            [=](caf::error&) mutable {
              rp.deliver(to_error(errc::unauthorized, "invalid username or password"));
            });
  };

  // Verifies a password and opens a session.
  auto do_login = [=](std::string username, std::string password,
                      caf::typed_response_promise<login_result> rp) {
    self->request(self->state.store, timeout, caf::get_atom::value, user_atom::value, username)
      .then(
        [=](user_record& u) mutable {
          self->request(self->state.hasher(), timeout, verify_atom::value, u.password_hash,
                        password)
            .then(
              [=](bool ok) mutable {
                if (!ok) {
                  failed_login(u.username, rp);
                  return;
                }
                self->request(self->state.store, timeout, caf::delete_atom::value,
                              failure_atom::value, lockout_name(u.username))
                  .then([](caf::ok_atom) {}, [](caf::error&) {});
                session_record rec;
                rec.id = crypto::random_id("s_");
                auto token = crypto::random_token(32);
                rec.token_hash = crypto::secret_hash(token);
                rec.user_id = u.id;
                rec.scopes = user_scopes(u.is_admin);
                rec.created_at = unix_now();
                rec.expires_at = rec.created_at + self->state.settings.session_ttl_s;
                self->request(self->state.store, timeout, caf::put_atom::value, rec)
                  .then(
                    [=](caf::ok_atom) mutable {
                      start_session(rec, u);
                      rp.deliver(login_result{token, rec.expires_at, rec.id});
                    },
                    [=](caf::error& e) mutable { rp.deliver(e); });
              },
              [=](caf::error& e) mutable { rp.deliver(e); });
        },
        [=](caf::error& e) mutable {
          if (to_failure(e).code != errc::not_found) {
            rp.deliver(e);
            return;
          }
          // Unknown user: spend the same work as a real check so timing tells nothing.
          self->request(self->state.hasher(), timeout, hash_atom::value, password)
            .then([=](const std::string&) mutable { failed_login(username, rp); },
                  [=](caf::error&) mutable { failed_login(username, rp); });
        });
  };

  return {
    [=](signup_atom, const std::string& username, const std::string& password,
        bool is_admin) -> caf::result<user_record> {
      auto rp = self->make_response_promise<user_record>();
      self->request(self->state.hasher(), timeout, hash_atom::value, password)
        .then(
          [=](std::string& hash) mutable {
            user_record u;
            u.username = username;
            u.password_hash = std::move(hash);
            u.is_admin = is_admin;
            self->request(self->state.store, timeout, caf::put_atom::value, u)
              .then([=](user_record& created) mutable {
                      created.password_hash.clear();
                      rp.deliver(created);
                    },
                    [=](caf::error& e) mutable { rp.deliver(e); });
          },
          [=](caf::error& e) mutable { rp.deliver(e); });
      return rp;
    },
    [=](login_atom, const std::string& username, const std::string& password,
        const std::string& client) -> caf::result<login_result> {
      auto rp = self->make_response_promise<login_result>();
      self->request(self->state.store, timeout, caf::get_atom::value, failure_atom::value,
                    lockout_name(username))
        .then(
          [=](login_failures_record& f) mutable {
            auto& s = self->state.settings;
            auto now = unix_now();
            uint32_t count = (f.count > 0 && now - f.first_at <= s.window_s) ? f.count : 0;
            if (count >= s.lockout_after) {
              auto wait = s.window_s - (now - f.first_at);
              rp.deliver(to_error(errc::too_many_requests,
                                  "too many failed logins for this user; try again in "
                                    + std::to_string(wait) + " s"));
              return;
            }
            if (count >= s.slowdown_after) {
              // Slow down: answer only after a delay that doubles with each failure.
              auto steps = std::min<uint32_t>(count - s.slowdown_after, 5);
              auto delay = std::chrono::milliseconds(250 << steps);
              auto id = self->state.next_delayed++;
              self->state.delayed.emplace(id, auth_state::pending_login{username, password, rp});
              self->delayed_send(self, delay, retry_atom::value, id);
              return;
            }
            do_login(username, password, rp);
          },
          [=](caf::error& e) mutable { rp.deliver(e); });
      return rp;
    },
    [=](retry_atom, uint64_t id) {
      auto i = self->state.delayed.find(id);
      if (i == self->state.delayed.end())
        return;
      auto p = std::move(i->second);
      self->state.delayed.erase(i);
      do_login(p.username, p.password, p.promise);
    },
    [=](logout_atom, const std::string& token) -> caf::result<caf::ok_atom> {
      // The store decides (the session may have been opened on another
      // gateway); the session ends here at once and elsewhere within
      // revalidate_ms.
      auto hash = crypto::secret_hash(token);
      auto rp = self->make_response_promise<caf::ok_atom>();
      self->request(self->state.store, timeout, caf::get_atom::value, session_atom::value, hash)
        .then(
          [=](session_record& rec) mutable {
            forget_session(hash);
            self->request(self->state.store, timeout, caf::delete_atom::value,
                          session_atom::value, rec.id)
              .then([=](caf::ok_atom) mutable { rp.deliver(caf::ok_atom::value); },
                    [=](caf::error& e) mutable { rp.deliver(e); });
          },
          [=](caf::error& e) mutable {
            if (to_failure(e).code == errc::not_found) {
              forget_session(hash);
              rp.deliver(to_error(errc::unauthorized, "invalid or expired token"));
            } else {
              rp.deliver(e);
            }
          });
      return rp;
    },
    [=](expire_atom, const std::string& hash) {
      // Only the session actor now cached for this token may remove it: a
      // late message from one replaced by a revalidation must not.
      auto i = self->state.sessions.find(hash);
      if (i != self->state.sessions.end() && i->second.actor
          && i->second.actor.address() == caf::actor_cast<caf::actor_addr>(self->current_sender()))
        self->state.sessions.erase(i);
    },
    [=](authn_atom, const std::string& kind,
        const std::string& secret) -> caf::result<principal> {
      auto hash = crypto::secret_hash(secret);
      auto rate_ok = [=](const std::string& id) {
        auto& s = self->state.settings;
        return self->state.buckets[id].take(steady_seconds(), s.rate_per_s, s.burst);
      };
      auto too_many = [] {
        return to_error(errc::too_many_requests, "request rate limit exceeded for this credential");
      };
      // Asks the cached session actor for the principal.
      auto from_session = [=](session_actor sa, caf::typed_response_promise<principal> rp) {
        self->request(sa, timeout, caf::get_atom::value)
          .then(
            [=](principal& who) mutable {
              if (!rate_ok(who.session_id))
                rp.deliver(too_many());
              else
                rp.deliver(who);
            },
            [=](caf::error& e) mutable {
              auto f = to_failure(e);
              rp.deliver(f.code == errc::unavailable
                           ? to_error(errc::unauthorized, "invalid or expired token")
                           : e);
            });
      };
      if (kind == "bearer") {
        auto rp = self->make_response_promise<principal>();
        auto i = self->state.sessions.find(hash);
        if (i != self->state.sessions.end() && !stale(i->second.checked_at)) {
          from_session(i->second.actor, rp);
          return rp;
        }
        // Unknown here (opened on another gateway, or before a restart) or
        // cached too long: the store says whether the session lives.
        self->request(self->state.store, timeout, caf::get_atom::value, session_atom::value, hash)
          .then(
            [=](session_record& rec) mutable {
              if (rec.expires_at != 0 && unix_now() >= rec.expires_at) {
                forget_session(hash);
                rp.deliver(to_error(errc::unauthorized, "the token has expired; log in again"));
                return;
              }
              if (auto c = self->state.sessions.find(hash); c != self->state.sessions.end()) {
                c->second.checked_at = steady_seconds();
                from_session(c->second.actor, rp);
                return;
              }
              self->request(self->state.store, timeout, caf::get_atom::value, user_atom::value,
                            rec.user_id)
                .then(
                  [=](user_record& u) mutable {
                    start_session(rec, u);
                    from_session(self->state.sessions[hash].actor, rp);
                  },
                  [=](caf::error&) mutable {
                    rp.deliver(to_error(errc::unauthorized, "invalid or expired token"));
                  });
            },
            [=](caf::error& e) mutable {
              auto f = to_failure(e);
              auto c = self->state.sessions.find(hash);
              if (f.code == errc::not_found) {
                forget_session(hash);
                rp.deliver(to_error(errc::unauthorized, "invalid or expired token"));
              } else if (c != self->state.sessions.end()) {
                from_session(c->second.actor, rp); // store unreachable: trust the cache
              } else {
                rp.deliver(e);
              }
            });
        return rp;
      }
      // none when the key may be used now.
      auto check = [=](const auth_state::cached_key& k) -> caf::error {
        if (k.key.expires_at != 0 && unix_now() >= k.key.expires_at)
          return to_error(errc::unauthorized, "the API key has expired");
        if (!rate_ok(k.key.id))
          return too_many();
        return caf::none;
      };
      if (auto i = self->state.keys.find(hash);
          i != self->state.keys.end() && !stale(i->second.checked_at)) {
        if (auto err = check(i->second))
          return err;
        return i->second.who;
      }
      auto rp = self->make_response_promise<principal>();
      self->request(self->state.store, timeout, caf::get_atom::value, key_atom::value, hash)
        .then(
          [=](key_record& k) mutable {
            self->request(self->state.store, timeout, caf::get_atom::value, user_atom::value,
                          k.user_id)
              .then(
                [=](user_record& u) mutable {
                  auth_state::cached_key ck{k, principal_of(u, k.scopes), steady_seconds()};
                  ck.who.key_id = k.id;
                  self->state.keys[hash] = ck;
                  if (auto err = check(ck))
                    rp.deliver(err);
                  else
                    rp.deliver(ck.who);
                },
                [=](caf::error& e) mutable {
                  rp.deliver(to_error(errc::unauthorized, "invalid API key"));
                });
          },
          [=](caf::error& e) mutable {
            auto f = to_failure(e);
            auto c = self->state.keys.find(hash);
            if (f.code == errc::not_found) { // revoked (perhaps on another gateway)
              if (c != self->state.keys.end())
                self->state.keys.erase(c);
              rp.deliver(to_error(errc::unauthorized, "invalid API key"));
            } else if (c != self->state.keys.end()) { // store unreachable: trust the cache
              if (auto err = check(c->second))
                rp.deliver(err);
              else
                rp.deliver(c->second.who);
            } else {
              rp.deliver(e);
            }
          });
      return rp;
    },
    [=](caf::put_atom, key_atom, const principal& owner, const std::string& name,
        const std::vector<std::string>& scopes, int64_t expires_in_s) -> caf::result<new_key> {
      if (name.empty() || name.size() > 128)
        return to_error(errc::bad_request, "'name' must be 1 to 128 characters");
      if (scopes.empty())
        return to_error(errc::bad_request, "'scopes' must name at least one of embed, train, admin");
      for (auto& s : scopes) {
        if (std::find(std::begin(kScopes), std::end(kScopes), s) == std::end(kScopes))
          return to_error(errc::bad_request,
                          "unknown scope '" + s + "'; scopes are embed, train, admin");
        if (!has_scope(owner, s))
          return to_error(errc::forbidden, "you cannot grant scope '" + s + "' you do not have");
      }
      if (expires_in_s < 0 || expires_in_s > 10LL * 36525 * 864)
        return to_error(errc::bad_request, "'expires_in_s' must be positive and at most ten years");
      new_key nk;
      nk.secret = "rk_" + crypto::random_token(32);
      auto& k = nk.record;
      k.id = crypto::random_id("k_");
      k.user_id = owner.user_id;
      k.name = name;
      k.scopes = scopes;
      k.key_hash = crypto::secret_hash(nk.secret);
      k.prefix = nk.secret.substr(0, 8);
      k.created_at = unix_now();
      k.expires_at = expires_in_s > 0 ? k.created_at + expires_in_s : 0;
      auto rp = self->make_response_promise<new_key>();
      self->request(self->state.store, timeout, caf::put_atom::value, k)
        .then([=](caf::ok_atom) mutable { rp.deliver(nk); },
              [=](caf::error& e) mutable { rp.deliver(e); });
      return rp;
    },
    [=](list_atom, key_atom, const principal& owner) -> caf::result<std::vector<key_record>> {
      return self->delegate(self->state.store, list_atom::value, key_atom::value, owner.user_id);
    },
    [=](caf::delete_atom, key_atom, const principal& owner,
        const std::string& id) -> caf::result<caf::ok_atom> {
      // Forget the cached entry at once: the key dies with this request.
      for (auto i = self->state.keys.begin(); i != self->state.keys.end(); ++i)
        if (i->second.key.id == id && i->second.key.user_id == owner.user_id) {
          self->state.keys.erase(i);
          break;
        }
      return self->delegate(self->state.store, caf::delete_atom::value, key_atom::value,
                            owner.user_id, id);
    },
  };
}

} // namespace rookery

#include "actors/store_actor.hpp"

#include <caf/all.hpp>

#include "messages/registration.hpp"
#include "store/store.hpp"

namespace rookery {

namespace {

template <class T>
caf::result<T> lift(result<T> r) {
  if (r)
    return std::move(r).value();
  return to_error(r.error());
}

caf::result<caf::ok_atom> lift(status st) {
  if (st)
    return caf::ok_atom::value;
  return to_error(st.error());
}

} // namespace

store_actor::behavior_type store_impl(store_actor::stateful_pointer<store_state> self,
                                      std::shared_ptr<Store> shared) {
  self->state.db = std::move(shared);
  Store* d = self->state.db.get();
  auto db = [d]() -> Store& { return *d; };
  return {
    [=](caf::put_atom, user_record& u) -> caf::result<user_record> {
      return lift(db().create_user(u));
    },
    [=](caf::get_atom, user_atom, const std::string& name) -> caf::result<user_record> {
      return lift(db().find_user_by_name(name));
    },
    [=](caf::get_atom, user_atom, uint64_t id) -> caf::result<user_record> {
      return lift(db().find_user(id));
    },
    [=](count_atom, user_atom) -> caf::result<int64_t> { return lift(db().count_users()); },
    [=](caf::put_atom, const session_record& s) -> caf::result<caf::ok_atom> {
      return lift(db().create_session(s));
    },
    [=](caf::get_atom, session_atom, const std::string& hash) -> caf::result<session_record> {
      return lift(db().find_session_by_token_hash(hash));
    },
    [=](caf::delete_atom, session_atom, const std::string& id) -> caf::result<caf::ok_atom> {
      return lift(db().delete_session(id));
    },
    [=](list_atom, session_atom, int64_t now) -> caf::result<std::vector<session_record>> {
      db().purge_expired_sessions(now);
      return lift(db().active_sessions(now));
    },
    [=](caf::put_atom, const key_record& k) -> caf::result<caf::ok_atom> {
      return lift(db().create_key(k));
    },
    [=](list_atom, key_atom, uint64_t user) -> caf::result<std::vector<key_record>> {
      return lift(db().list_keys(user));
    },
    [=](caf::get_atom, key_atom, const std::string& hash) -> caf::result<key_record> {
      return lift(db().find_key_by_hash(hash));
    },
    [=](caf::delete_atom, key_atom, uint64_t user,
        const std::string& id) -> caf::result<caf::ok_atom> {
      return lift(db().delete_key(user, id));
    },
    [=](caf::put_atom, const job_record& j) -> caf::result<caf::ok_atom> {
      return lift(db().create_job(j));
    },
    [=](caf::update_atom, const job_record& j) -> caf::result<caf::ok_atom> {
      return lift(db().update_job(j));
    },
    [=](caf::get_atom, job_atom, const std::string& id) -> caf::result<job_record> {
      return lift(db().find_job(id));
    },
    [=](list_atom, job_atom, uint64_t user) -> caf::result<std::vector<job_record>> {
      return lift(db().list_jobs(user));
    },
    [=](list_atom, job_atom) -> caf::result<std::vector<job_record>> {
      return lift(db().unfinished_jobs());
    },
    [=](caf::update_atom, const job_record& j,
        const std::string& holder) -> caf::result<caf::ok_atom> {
      return lift(db().update_job(j, holder));
    },
    [=](claim_atom, const std::string& owner, int64_t now, int64_t lease_s, uint32_t limit,
        bool ignore_leases) -> caf::result<std::vector<job_record>> {
      return lift(db().claim_jobs(owner, now, lease_s, limit, ignore_leases));
    },
    [=](claim_atom, job_atom, const std::string& id, const std::string& owner, int64_t now,
        int64_t lease_s) -> caf::result<job_record> {
      return lift(db().claim_job(id, owner, now, lease_s));
    },
    [=](renew_atom, const std::string& owner,
        int64_t until) -> caf::result<std::vector<std::string>> {
      return lift(db().renew_leases(owner, until));
    },
    [=](release_atom, const std::string& owner) -> caf::result<caf::ok_atom> {
      return lift(db().release_jobs(owner));
    },
    [=](cancel_atom, job_atom, const std::string& id, int64_t now) -> caf::result<job_record> {
      return lift(db().cancel_job(id, now));
    },
    [=](failure_atom, const std::string& name, int64_t now,
        int64_t window_s) -> caf::result<login_failures_record> {
      return lift(db().note_login_failure(name, now, window_s));
    },
    [=](caf::get_atom, failure_atom, const std::string& name) -> caf::result<login_failures_record> {
      return lift(db().login_failures(name));
    },
    [=](caf::delete_atom, failure_atom, const std::string& name) -> caf::result<caf::ok_atom> {
      return lift(db().clear_login_failures(name));
    },
    [=](caf::put_atom, const model_record& m) -> caf::result<caf::ok_atom> {
      return lift(db().put_model(m));
    },
    [=](list_atom, model_atom) -> caf::result<std::vector<model_record>> {
      return lift(db().list_models());
    },
  };
}

} // namespace rookery

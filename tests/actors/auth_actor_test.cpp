// The auth actor against a mock store and mock hashers, on CAF's test
// coordinator: bearer tokens unknown here are looked up in the store, cached,
// revalidated once stale; the login lockout is read from the store and failed
// logins are counted there.
#define CAF_SUITE auth_actor
#include "actors/auth.hpp"

#include "tests/actors/fixture.hpp"

using namespace rookery;
using namespace rookery::testing;

namespace {

struct auth_fixture : actor_fixture {
  std::shared_ptr<store_script> db = std::make_shared<store_script>();
  std::shared_ptr<message_log> hashed = std::make_shared<message_log>();
  store_actor store;
  hasher_actor hasher;
  auth_actor auth;
  std::string token = "tok-3f9a0c1b2d4e5f60";
  std::string hash;

  auth_fixture() {
    hash = crypto::secret_hash(token);
    store = keep(sys.spawn(mock_store, db));
    hasher = keep(sys.spawn(mock_hasher, hashed));
    sched.run();
    user_record alice;
    alice.id = 7;
    alice.username = "Alice";
    alice.password_hash = "H(right)";
    db->users[7] = alice;
    db->users_by_name["alice"] = alice;
    session_record s;
    s.id = "s_1";
    s.token_hash = hash;
    s.user_id = 7;
    s.scopes = {"embed", "train"};
    s.created_at = unix_now();
    s.expires_at = s.created_at + 3600;
    db->sessions[hash] = s; // opened on "another gateway": unknown to auth
  }

  void start(auth_settings st) {
    auth = keep(sys.spawn(auth_impl, store, std::vector<hasher_actor>{hasher}, st));
    sched.run_once(); // auth's start: it lists the sessions (purging expired ones)
    expect((list_atom, session_atom, int64_t), from(auth).to(store).with(_, _, _));
    sched.run();
  }

  std::shared_ptr<reply<principal>> authn() {
    auto r = ask<principal>(auth, authn_atom::value, std::string{"bearer"}, token);
    sched.run();
    return r;
  }

  size_t session_lookups() const {
    size_t n = 0;
    for (auto& m : all_of<caf::get_atom, session_atom, std::string>(db->log))
      n += m.get_as<std::string>(2) == hash ? 1 : 0;
    return n;
  }

  size_t user_lookups() const {
    return count_of<caf::get_atom, user_atom, uint64_t>(db->log);
  }

  size_t failures_noted() const {
    return count_of<failure_atom, std::string, int64_t, int64_t>(db->log);
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(auth_actor_tests, auth_fixture)

CAF_TEST(an unknown bearer token is looked up in the store and then cached) {
  start(auth_settings{}); // revalidate_ms = 0: a cached session is trusted for ever
  auto r = ask<principal>(auth, authn_atom::value, std::string{"bearer"}, token);
  sched.run_once(); // the probe sends its request
  expect((authn_atom, std::string, std::string),
         from(last_probe).to(auth).with(_, std::string{"bearer"}, token));
  expect((caf::get_atom, session_atom, std::string), from(auth).to(store).with(_, _, hash));
  expect((session_record), from(store).to(auth).with(_));
  expect((caf::get_atom, user_atom, uint64_t), from(auth).to(store).with(_, _, uint64_t{7}));
  sched.run();
  CAF_REQUIRE(r->done);
  CAF_REQUIRE(r->ok);
  CAF_CHECK_EQUAL(r->value.user_id, 7u);
  CAF_CHECK_EQUAL(r->value.username, "Alice");
  CAF_CHECK_EQUAL(r->value.session_id, "s_1");
  CAF_CHECK_EQUAL(r->value.scopes, (std::vector<std::string>{"embed", "train"}));
  CAF_CHECK_EQUAL(session_lookups(), 1u);
  CAF_CHECK_EQUAL(user_lookups(), 1u);
  // Later, even once revalidate_ms would have passed were it set: the cache
  // answers and the store is not asked again.
  sleep_ms(5);
  auto again = authn();
  CAF_REQUIRE(again->ok);
  CAF_CHECK_EQUAL(again->value.session_id, "s_1");
  CAF_CHECK_EQUAL(session_lookups(), 1u);
  CAF_CHECK_EQUAL(user_lookups(), 1u);
}

CAF_TEST(a token the store does not know is refused) {
  start(auth_settings{});
  db->sessions.clear();
  auto r = authn();
  CAF_REQUIRE(r->done);
  CAF_CHECK(!r->ok);
  CAF_CHECK(r->code() == errc::unauthorized);
  CAF_CHECK_EQUAL(session_lookups(), 1u);
  CAF_CHECK_EQUAL(user_lookups(), 0u);
}

CAF_TEST(a stale cached session is revalidated and dies once the store drops it) {
  auth_settings st;
  st.revalidate_ms = 1;
  start(st);
  auto first = authn();
  CAF_REQUIRE(first->ok);
  CAF_CHECK_EQUAL(session_lookups(), 1u);
  sleep_ms(5); // the steady clock: the cache is stale now
  auto second = authn();
  CAF_REQUIRE(second->ok);
  CAF_CHECK_EQUAL(second->value.session_id, "s_1");
  CAF_CHECK_EQUAL(session_lookups(), 2u);
  CAF_CHECK_EQUAL(user_lookups(), 1u); // the cached session actor is reused
  // Logged out on another gateway: gone from the store.
  db->sessions.clear();
  sleep_ms(5);
  auto third = authn();
  CAF_REQUIRE(third->done);
  CAF_CHECK(!third->ok);
  CAF_CHECK(third->code() == errc::unauthorized);
  CAF_CHECK_EQUAL(session_lookups(), 3u);
  // Forgotten here too: the next use asks the store again, and is refused.
  auto fourth = authn();
  CAF_CHECK(fourth->code() == errc::unauthorized);
  CAF_CHECK_EQUAL(session_lookups(), 4u);
}

CAF_TEST(a stale session is trusted while the store is unreachable) {
  auth_settings st;
  st.revalidate_ms = 1;
  start(st);
  CAF_REQUIRE(authn()->ok);
  db->session_error = errc::unavailable;
  sleep_ms(5);
  auto r = authn();
  CAF_CHECK_EQUAL(session_lookups(), 2u);
  CAF_REQUIRE(r->done);
  CAF_CHECK(r->ok);
  CAF_CHECK_EQUAL(r->value.user_id, 7u);
}

CAF_TEST(a locked-out user is refused without asking the hashers) {
  auth_settings st;
  st.lockout_after = 10;
  st.window_s = 900;
  start(st);
  db->failures["alice"] = login_failures_record{"alice", 10, unix_now() - 10};
  auto r = ask<login_result>(auth, login_atom::value, std::string{"Alice"},
                             std::string{"right"}, std::string{"127.0.0.1"});
  sched.run_once();
  expect((login_atom, std::string, std::string, std::string),
         from(last_probe).to(auth).with(_, std::string{"Alice"}, _, _));
  // The counter is read under the lower-cased name.
  expect((caf::get_atom, failure_atom, std::string),
         from(auth).to(store).with(_, _, std::string{"alice"}));
  sched.run();
  CAF_REQUIRE(r->done);
  CAF_CHECK(!r->ok);
  CAF_CHECK(r->code() == errc::too_many_requests);
  CAF_CHECK(hashed->empty()); // not even the right password is checked
  CAF_CHECK_EQUAL((count_of<caf::get_atom, user_atom, std::string>(db->log)), 0u);
  CAF_CHECK_EQUAL(failures_noted(), 0u);
}

CAF_TEST(a lockout window that has passed no longer locks) {
  auth_settings st;
  st.lockout_after = 10;
  st.window_s = 900;
  start(st);
  db->failures["alice"] = login_failures_record{"alice", 10, unix_now() - 901};
  auto r = ask<login_result>(auth, login_atom::value, std::string{"Alice"},
                             std::string{"right"}, std::string{"127.0.0.1"});
  sched.run();
  CAF_REQUIRE(r->done);
  CAF_REQUIRE(r->ok);
  CAF_CHECK(!r->value.token.empty());
  CAF_CHECK_EQUAL((count_of<verify_atom, std::string, std::string>(*hashed)), 1u);
  CAF_CHECK_EQUAL((count_of<caf::delete_atom, failure_atom, std::string>(db->log)), 1u);
  CAF_CHECK_EQUAL(failures_noted(), 0u);
}

CAF_TEST(failed logins are counted in the store under the lower-cased name) {
  auth_settings st;
  st.window_s = 600;
  start(st);
  auto before = unix_now();
  // A wrong password of a known user.
  auto wrong = ask<login_result>(auth, login_atom::value, std::string{"ALICE"},
                                 std::string{"wrong"}, std::string{"127.0.0.1"});
  sched.run();
  // An unknown user: a hash is still computed (timing), then the failure noted.
  auto unknown = ask<login_result>(auth, login_atom::value, std::string{"BoB"},
                                   std::string{"pw"}, std::string{"127.0.0.1"});
  sched.run();
  auto after = unix_now();
  CAF_REQUIRE(wrong->done);
  CAF_CHECK(wrong->code() == errc::unauthorized);
  CAF_REQUIRE(unknown->done);
  CAF_CHECK(unknown->code() == errc::unauthorized);
  CAF_CHECK_EQUAL((count_of<verify_atom, std::string, std::string>(*hashed)), 1u);
  CAF_CHECK_EQUAL((count_of<hash_atom, std::string>(*hashed)), 1u);
  auto noted = all_of<failure_atom, std::string, int64_t, int64_t>(db->log);
  CAF_REQUIRE_EQUAL(noted.size(), 2u);
  CAF_CHECK_EQUAL(noted[0].get_as<std::string>(1), "alice");
  CAF_CHECK_EQUAL(noted[1].get_as<std::string>(1), "bob");
  for (auto& m : noted) {
    CAF_CHECK_GREATER_OR_EQUAL(m.get_as<int64_t>(2), before);
    CAF_CHECK_LESS_OR_EQUAL(m.get_as<int64_t>(2), after);
    CAF_CHECK_EQUAL(m.get_as<int64_t>(3), 600);
  }
  CAF_CHECK_EQUAL(db->failures["alice"].count, 1u);
  CAF_CHECK_EQUAL((count_of<caf::put_atom, session_record>(db->log)), 0u);
}

CAF_TEST_FIXTURE_SCOPE_END()

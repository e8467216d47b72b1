// Accounts, sessions and API keys against a real server process.
#include <catch2/catch.hpp>

#include "harness.hpp"

using namespace rookery::test;
using nlohmann::json;

namespace {
const header_list kJson = {{"Content-Type", "application/json"}};
header_list bearer(const std::string& t) {
  return {{"Authorization", "Bearer " + t}};
}
} // namespace

TEST_CASE("sign-up, login, me, logout", "[integration][auth]") {
  temp_dir dir;
  server s{dir.path};
  auto token = signup_and_login(s, "alice");
  auto me = http("GET", s.url("/v1/auth/me"), "", bearer(token));
  REQUIRE(me.status == 200);
  CHECK(me.json()["username"] == "alice");
  CHECK(me.json()["is_admin"] == false);
  CHECK(me.headers.count("x-request-id") == 1);
  // A second sign-up with the same name is refused.
  auto dup = http("POST", s.url("/v1/users"), json{{"username", "alice"}, {"password", "whatever123"}}.dump(), kJson);
  CHECK(dup.status == 409);
  CHECK(dup.headers["content-type"] == "application/problem+json");
  // Wrong password.
  auto bad = http("POST", s.url("/v1/auth/login"), json{{"username", "alice"}, {"password", "nope-nope"}}.dump(), kJson);
  CHECK(bad.status == 401);
  // Logout kills the token at once.
  auto out = http("POST", s.url("/v1/auth/logout"), "", bearer(token));
  CHECK(out.status == 204);
  CHECK(http("GET", s.url("/v1/auth/me"), "", bearer(token)).status == 401);
  // No credentials, garbage credentials.
  CHECK(http("GET", s.url("/v1/auth/me")).status == 401);
  CHECK(http("GET", s.url("/v1/auth/me"), "", bearer("not-a-token")).status == 401);
}

TEST_CASE("malformed account requests get 400 problem+json", "[integration][auth]") {
  temp_dir dir;
  server s{dir.path};
  for (std::string body : {"", "{not json", "[1,2]", R"({"username":"bob"})",
                           R"({"username":"b","password":"longenough"})",
                           R"({"username":"bobby","password":"short"})"}) {
    auto r = http("POST", s.url("/v1/users"), body, kJson);
    INFO(body << " -> " << r.body);
    CHECK(r.status == 400);
    CHECK(r.json()["status"] == 400);
    CHECK(r.json()["detail"].is_string());
  }
  CHECK(http("POST", s.url("/v1/auth/login"), "{oops", kJson).status == 400);
}

TEST_CASE("repeated failed logins are slowed, then refused with 429", "[integration][auth]") {
  temp_dir dir;
  server s{dir.path, {}, {{"ROOKERY_LOGIN_SLOWDOWN_AFTER", "2"}, {"ROOKERY_LOGIN_LOCKOUT_AFTER", "4"}}};
  signup_and_login(s, "carol");
  auto wrong = json{{"username", "carol"}, {"password", "wrong-password"}}.dump();
  CHECK(http("POST", s.url("/v1/auth/login"), wrong, kJson).status == 401);
  CHECK(http("POST", s.url("/v1/auth/login"), wrong, kJson).status == 401);
  auto t0 = std::chrono::steady_clock::now();
  CHECK(http("POST", s.url("/v1/auth/login"), wrong, kJson).status == 401);
  auto slowed = std::chrono::steady_clock::now() - t0;
  CHECK(slowed >= std::chrono::milliseconds(200));
  CHECK(http("POST", s.url("/v1/auth/login"), wrong, kJson).status == 401);
  auto locked = http("POST", s.url("/v1/auth/login"), wrong, kJson);
  CHECK(locked.status == 429);
  // Even the right password is refused while locked.
  auto right = json{{"username", "carol"}, {"password", "correct horse battery"}}.dump();
  CHECK(http("POST", s.url("/v1/auth/login"), right, kJson).status == 429);
}

TEST_CASE("API keys: create, use, list, isolation, revoke, rate limit", "[integration][keys]") {
  temp_dir dir;
  server s{dir.path, {}, {{"ROOKERY_KEY_RATE_PER_S", "1"}, {"ROOKERY_KEY_BURST", "5"}}};
  auto alice = signup_and_login(s, "alice");
  auto bob = signup_and_login(s, "bobby");
  auto made = http("POST", s.url("/v1/keys"), json{{"name", "ci"}, {"scopes", {"embed"}}}.dump(),
                   {{"Content-Type", "application/json"}, {"Authorization", "Bearer " + alice}});
  REQUIRE(made.status == 201);
  auto key = made.json()["key"].get<std::string>();
  auto id = made.json()["id"].get<std::string>();
  CHECK(key.size() >= 40);
  // The key authenticates, by header and as a bearer token.
  auto me = http("GET", s.url("/v1/auth/me"), "", {{"X-API-Key", key}});
  REQUIRE(me.status == 200);
  CHECK(me.json()["auth"] == "api_key");
  CHECK(me.json()["scopes"] == json::array({"embed"}));
  // Listing never shows the secret; bob sees none of alice's keys.
  auto list = http("GET", s.url("/v1/keys"), "", bearer(alice));
  REQUIRE(list.status == 200);
  REQUIRE(list.json()["keys"].size() == 1);
  CHECK(list.json()["keys"][0].count("key") == 0);
  CHECK(list.body.find(key) == std::string::npos);
  CHECK(http("GET", s.url("/v1/keys"), "", bearer(bob)).json()["keys"].empty());
  // Bob cannot delete alice's key: 404, and it still works.
  CHECK(http("DELETE", s.url("/v1/keys/" + id), "", bearer(bob)).status == 404);
  // Unknown scope, a scope the caller lacks.
  CHECK(http("POST", s.url("/v1/keys"), json{{"name", "x"}, {"scopes", {"root"}}}.dump(),
             {{"Authorization", "Bearer " + alice}}).status == 400);
  CHECK(http("POST", s.url("/v1/keys"), json{{"name", "x"}, {"scopes", {"admin"}}}.dump(),
             {{"Authorization", "Bearer " + alice}}).status == 403);
  // Rate limit: burst 5 at 1/s; the key has been used once above.
  int limited = 0;
  for (int i = 0; i < 8; ++i)
    if (http("GET", s.url("/v1/auth/me"), "", {{"X-API-Key", key}}).status == 429)
      ++limited;
  CHECK(limited >= 2);
  // Revoke: the key dies at once.
  CHECK(http("DELETE", s.url("/v1/keys/" + id), "", bearer(alice)).status == 204);
  CHECK(http("GET", s.url("/v1/auth/me"), "", {{"X-API-Key", key}}).status == 401);
}

TEST_CASE("users, keys and sessions survive a restart", "[integration][store]") {
  temp_dir dir;
  std::string token, key;
  {
    server s{dir.path};
    token = signup_and_login(s, "dave");
    auto made = http("POST", s.url("/v1/keys"), json{{"name", "k"}, {"scopes", {"embed"}}}.dump(),
                     bearer(token));
    key = made.json()["key"];
    CHECK(s.stop() == 0);
  }
  server s{dir.path};
  CHECK(http("GET", s.url("/v1/auth/me"), "", bearer(token)).status == 200);
  CHECK(http("GET", s.url("/v1/auth/me"), "", {{"X-API-Key", key}}).status == 200);
  auto login = http("POST", s.url("/v1/auth/login"),
                    json{{"username", "dave"}, {"password", "correct horse battery"}}.dump(), kJson);
  CHECK(login.status == 200);
}

TEST_CASE("admin-only sign-up and the first admin from the environment", "[integration][auth]") {
  temp_dir dir;
  server s{dir.path, {}, {{"ROOKERY_SIGNUP", "admin"}, {"ROOKERY_ADMIN_USER", "root"},
                          {"ROOKERY_ADMIN_PASSWORD", "admin-password"}}};
  auto cred = json{{"username", "eve"}, {"password", "eve-password"}}.dump();
  CHECK(http("POST", s.url("/v1/users"), cred, kJson).status == 401);
  auto login = http("POST", s.url("/v1/auth/login"),
                    json{{"username", "root"}, {"password", "admin-password"}}.dump(), kJson);
  REQUIRE(login.status == 200);
  auto admin = login.json()["token"].get<std::string>();
  CHECK(http("GET", s.url("/v1/auth/me"), "", bearer(admin)).json()["is_admin"] == true);
  CHECK(http("POST", s.url("/v1/users"), cred, bearer(admin)).status == 201);
}

#include <catch2/catch.hpp>

#include <algorithm>
#include <set>
#include <string>

#include "common/crypto.hpp"

// The unit-test PCH includes torch after Catch, and glog/c10 logging redefines
// CHECK(cond) as a fatal assertion. Restore Catch's non-fatal, variadic CHECK.
#undef CHECK
#define CHECK(...) \
  INTERNAL_CATCH_TEST("CHECK", Catch::ResultDisposition::ContinueOnFailure, __VA_ARGS__)

using namespace rookery;

namespace {

bool is_base64url(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'
           || c == '_';
  });
}

bool is_lower_hex(const std::string& s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// Argon2id at MIN limits keeps these tests fast; restores the previous limits.
struct min_pwhash_limits {
  crypto::pwhash_params saved = crypto::get_pwhash_params();
  min_pwhash_limits() { crypto::set_pwhash_params(crypto::pwhash_params::minimum()); }
  ~min_pwhash_limits() { crypto::set_pwhash_params(saved); }
};

} // namespace

TEST_CASE("init is idempotent", "[crypto]") {
  crypto::init();
  crypto::init();
  SUCCEED();
}

TEST_CASE("password hash and verify round-trip", "[crypto]") {
  min_pwhash_limits limits;
  auto hash = crypto::hash_password("correct horse battery staple");
  REQUIRE_FALSE(hash.empty());
  CHECK(hash.rfind("$argon2id$", 0) == 0);
  CHECK(crypto::verify_password(hash, "correct horse battery staple"));
  CHECK_FALSE(crypto::verify_password(hash, "correct horse battery stapl"));
  CHECK_FALSE(crypto::verify_password(hash, ""));
  CHECK_FALSE(crypto::verify_password("", "correct horse battery staple"));
  CHECK_FALSE(crypto::verify_password("$argon2id$garbage", "correct horse battery staple"));
}

TEST_CASE("password hashes are salted", "[crypto]") {
  min_pwhash_limits limits;
  auto a = crypto::hash_password("hunter2");
  auto b = crypto::hash_password("hunter2");
  REQUIRE_FALSE(a.empty());
  REQUIRE_FALSE(b.empty());
  CHECK(a != b);
  CHECK(crypto::verify_password(a, "hunter2"));
  CHECK(crypto::verify_password(b, "hunter2"));
}

TEST_CASE("pwhash params are clamped and drive needs_rehash", "[crypto]") {
  min_pwhash_limits limits;
  crypto::set_pwhash_params({0, 0});
  auto p = crypto::get_pwhash_params();
  CHECK(p.opslimit == crypto::pwhash_params::minimum().opslimit);
  CHECK(p.memlimit == crypto::pwhash_params::minimum().memlimit);

  auto hash = crypto::hash_password("pw");
  REQUIRE_FALSE(hash.empty());
  CHECK_FALSE(crypto::needs_rehash(hash));
  auto stronger = crypto::pwhash_params::minimum();
  stronger.opslimit += 1;
  crypto::set_pwhash_params(stronger);
  CHECK(crypto::needs_rehash(hash));
  CHECK(crypto::needs_rehash("not a hash"));
}

TEST_CASE("random_token is URL-safe base64 and unique", "[crypto]") {
  auto t = crypto::random_token();
  CHECK(t.size() == 43); // ceil(32 * 8 / 6), no padding
  CHECK(is_base64url(t));
  CHECK(crypto::random_token(16).size() == 22);
  CHECK(crypto::random_token(0).empty());

  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    auto tok = crypto::random_token(32);
    REQUIRE(tok.size() == 43);
    REQUIRE(is_base64url(tok));
    seen.insert(tok);
  }
  CHECK(seen.size() == 1000);
}

TEST_CASE("random_id is prefix plus lowercase hex", "[crypto]") {
  auto id = crypto::random_id("k_");
  REQUIRE(id.size() == 2 + 16);
  CHECK(id.rfind("k_", 0) == 0);
  CHECK(is_lower_hex(id.substr(2)));
  CHECK(crypto::random_id("j_", 4).size() == 2 + 8);
  CHECK(crypto::random_id("k_") != crypto::random_id("k_"));
}

TEST_CASE("secret_hash is deterministic BLAKE2b-256 hex", "[crypto]") {
  auto a = crypto::secret_hash("rk_some-secret");
  CHECK(a.size() == 64);
  CHECK(is_lower_hex(a));
  CHECK(a == crypto::secret_hash("rk_some-secret"));
  CHECK(a != crypto::secret_hash("rk_some-secreT"));
  // Known answer: unkeyed BLAKE2b with a 32-byte digest of "abc".
  CHECK(crypto::secret_hash("abc")
        == "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319");
}

TEST_CASE("constant_time_equal", "[crypto]") {
  CHECK(crypto::constant_time_equal("abc", "abc"));
  CHECK(crypto::constant_time_equal("", ""));
  CHECK_FALSE(crypto::constant_time_equal("abc", "abd"));
  CHECK_FALSE(crypto::constant_time_equal("abc", "abcd"));
  CHECK_FALSE(crypto::constant_time_equal("abc", ""));
  std::string with_nul("a\0b", 3), other("a\0c", 3);
  CHECK_FALSE(crypto::constant_time_equal(with_nul, other));
}

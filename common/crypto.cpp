#include "common/crypto.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <sodium.h>

namespace rookery::crypto {

namespace {

std::atomic<unsigned long long> g_opslimit{crypto_pwhash_OPSLIMIT_INTERACTIVE};
std::atomic<size_t> g_memlimit{crypto_pwhash_MEMLIMIT_INTERACTIVE};

} // namespace

void init() {
  // A function-local static is initialised exactly once, even under races.
  static const bool initialised = [] {
    if (sodium_init() < 0) {
      std::fputs("rookery: libsodium initialisation failed\n", stderr);
      std::abort();
    }
    return true;
  }();
  (void) initialised;
}

std::string random_token(size_t bytes) {
  init();
  if (bytes == 0)
    return {};
  std::vector<unsigned char> buf(bytes);
  randombytes_buf(buf.data(), buf.size());
  constexpr int variant = sodium_base64_VARIANT_URLSAFE_NO_PADDING;
  // The encoded length includes the terminating NUL.
  std::string out(sodium_base64_ENCODED_LEN(bytes, variant), '\0');
  sodium_bin2base64(out.data(), out.size(), buf.data(), buf.size(), variant);
  out.resize(out.size() - 1);
  sodium_memzero(buf.data(), buf.size());
  return out;
}

std::string random_id(const std::string& prefix, size_t bytes) {
  init();
  std::vector<unsigned char> buf(bytes);
  randombytes_buf(buf.data(), buf.size());
  std::string hex(bytes * 2 + 1, '\0');
  sodium_bin2hex(hex.data(), hex.size(), buf.data(), buf.size());
  hex.resize(bytes * 2);
  return prefix + hex;
}

pwhash_params pwhash_params::interactive() {
  return {crypto_pwhash_OPSLIMIT_INTERACTIVE, crypto_pwhash_MEMLIMIT_INTERACTIVE};
}

pwhash_params pwhash_params::minimum() {
  return {crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN};
}

void set_pwhash_params(pwhash_params params) {
  auto min = pwhash_params::minimum();
  g_opslimit = params.opslimit < min.opslimit ? min.opslimit : params.opslimit;
  g_memlimit = params.memlimit < min.memlimit ? min.memlimit : params.memlimit;
}

pwhash_params get_pwhash_params() {
  return {g_opslimit.load(), g_memlimit.load()};
}

std::string hash_password(const std::string& password) {
  init();
  auto params = get_pwhash_params();
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str_alg(out, password.data(), password.size(), params.opslimit,
                            params.memlimit, crypto_pwhash_ALG_ARGON2ID13)
      != 0)
    return {}; // the only documented failure: the memory limit could not be allocated
  return out;
}

bool verify_password(const std::string& hash, const std::string& password) {
  init();
  // libsodium reads `hash` as a NUL-terminated string of < STRBYTES chars.
  if (hash.empty() || hash.size() >= crypto_pwhash_STRBYTES)
    return false;
  return crypto_pwhash_str_verify(hash.c_str(), password.data(), password.size()) == 0;
}

bool needs_rehash(const std::string& hash) {
  init();
  if (hash.empty() || hash.size() >= crypto_pwhash_STRBYTES)
    return true;
  auto params = get_pwhash_params();
  // crypto_pwhash_str_needs_rehash is algorithm-specific; the argon2id variant
  // also reports other algorithms (e.g. argon2i) as needing a rehash.
  return crypto_pwhash_argon2id_str_needs_rehash(hash.c_str(), params.opslimit, params.memlimit)
         != 0;
}

std::string secret_hash(const std::string& secret) {
  init();
  unsigned char digest[crypto_generichash_BYTES]; // 32 bytes = BLAKE2b-256
  crypto_generichash(digest, sizeof digest,
                     reinterpret_cast<const unsigned char*>(secret.data()), secret.size(),
                     nullptr, 0);
  char hex[sizeof digest * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
  return std::string(hex, sizeof digest * 2);
}

bool constant_time_equal(const std::string& a, const std::string& b) {
  init();
  if (a.size() != b.size())
    return false;
  return sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

} // namespace rookery::crypto

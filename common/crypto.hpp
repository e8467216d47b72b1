// Small libsodium wrappers: random tokens and ids, Argon2id password hashes,
// BLAKE2b digests of bearer tokens / API keys, constant-time comparison.
// Every function calls init() itself, so callers never need to.
// Nothing here throws.
#pragma once
#include <cstddef>
#include <string>

namespace rookery::crypto {

/// Initialises libsodium once (thread-safe, idempotent). Aborts the process
/// with a message on stderr if libsodium cannot be initialised.
void init();

/// `bytes` random bytes, URL-safe base64 without padding (43 chars for 32 bytes).
std::string random_token(size_t bytes = 32);

/// prefix + 2*bytes lowercase hex digits, e.g. random_id("k_") -> "k_3f9a0c1b2d4e5f60".
std::string random_id(const std::string& prefix, size_t bytes = 8);

/// Argon2id cost parameters used by hash_password.
struct pwhash_params {
  unsigned long long opslimit;
  size_t memlimit; // bytes

  /// crypto_pwhash_*_INTERACTIVE (the default): 2 passes, 64 MiB.
  static pwhash_params interactive();
  /// crypto_pwhash_*_MIN: only for tests, where hashing speed matters more.
  static pwhash_params minimum();
};

/// Sets the process-wide parameters for hash_password. Values below the
/// libsodium minimums are raised to them. Thread-safe.
void set_pwhash_params(pwhash_params params);
pwhash_params get_pwhash_params();

/// Argon2id hash in the modular "$argon2id$v=19$m=...,t=...,p=1$salt$hash"
/// format (salt included). Returns "" if the memory limit cannot be allocated.
std::string hash_password(const std::string& password);

/// True iff `hash` is a valid libsodium pwhash string for `password`.
/// Malformed or empty hashes give false.
bool verify_password(const std::string& hash, const std::string& password);

/// True when `hash` was made with parameters other than the current ones (or is
/// not an Argon2id hash) and should be recomputed at the next successful login.
bool needs_rehash(const std::string& hash);

/// BLAKE2b-256 of `secret` as 64 lowercase hex digits. Deterministic and unkeyed:
/// this is what the store keeps for tokens and API keys (which are already
/// high-entropy, so no salt or slow hash is needed).
std::string secret_hash(const std::string& secret);

/// Constant-time equality for equal lengths; false at once on a length mismatch.
bool constant_time_equal(const std::string& a, const std::string& b);

} // namespace rookery::crypto

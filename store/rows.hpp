// What the two store backends share: the column lists of every table and the
// readers that turn a row into a record. A reader takes any row type with
// text(col), i64(col) and real(col) (SQLite's statement, libpq's row), so the
// backends cannot disagree on the order of columns or on how a record is read.
// Internal to store/.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "messages/records.hpp"

namespace rookery::store_rows {

// Scopes are stored as a JSON array of strings.
inline std::string scopes_to_text(const std::vector<std::string>& scopes) {
  return nlohmann::json(scopes).dump();
}

inline std::vector<std::string> scopes_from_text(const std::string& text) {
  std::vector<std::string> out;
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_array())
    return out;
  for (auto& e : j)
    if (e.is_string())
      out.push_back(e.get<std::string>());
  return out;
}

#define USER_COLUMNS "id, username, password_hash, is_admin, created_at"
template <class Row>
user_record read_user(const Row& s) {
  user_record u;
  u.id = static_cast<uint64_t>(s.i64(0));
  u.username = s.text(1);
  u.password_hash = s.text(2);
  u.is_admin = s.i64(3) != 0;
  u.created_at = s.i64(4);
  return u;
}

#define SESSION_COLUMNS "id, token_hash, user_id, scopes, created_at, expires_at"
template <class Row>
session_record read_session(const Row& s) {
  session_record r;
  r.id = s.text(0);
  r.token_hash = s.text(1);
  r.user_id = static_cast<uint64_t>(s.i64(2));
  r.scopes = scopes_from_text(s.text(3));
  r.created_at = s.i64(4);
  r.expires_at = s.i64(5);
  return r;
}

#define KEY_COLUMNS "id, user_id, name, scopes, key_hash, prefix, created_at, expires_at"
template <class Row>
key_record read_key(const Row& s) {
  key_record k;
  k.id = s.text(0);
  k.user_id = static_cast<uint64_t>(s.i64(1));
  k.name = s.text(2);
  k.scopes = scopes_from_text(s.text(3));
  k.key_hash = s.text(4);
  k.prefix = s.text(5);
  k.created_at = s.i64(6);
  k.expires_at = s.i64(7);
  return k;
}

#define JOB_COLUMNS                                                                     \
  "id, user_id, kind, state, spec_json, result_json, error, progress, created_at, "   \
  "started_at, finished_at, progress_json, owner, lease_until"
template <class Row>
job_record read_job(const Row& s) {
  job_record j;
  j.id = s.text(0);
  j.user_id = static_cast<uint64_t>(s.i64(1));
  j.kind = s.text(2);
  j.state = s.text(3);
  j.spec_json = s.text(4);
  j.result_json = s.text(5);
  j.error = s.text(6);
  j.progress = s.real(7);
  j.created_at = s.i64(8);
  j.started_at = s.i64(9);
  j.finished_at = s.i64(10);
  j.progress_json = s.text(11);
  j.owner = s.text(12);
  j.lease_until = s.i64(13);
  return j;
}

#define MODEL_COLUMNS "name, version, arch, format, path, config_json, owner_id, created_at"
template <class Row>
model_record read_model(const Row& s) {
  model_record m;
  m.name = s.text(0);
  m.version = static_cast<uint32_t>(s.i64(1));
  m.arch = s.text(2);
  m.format = s.text(3);
  m.path = s.text(4);
  m.config_json = s.text(5);
  m.owner_id = static_cast<uint64_t>(s.i64(6));
  m.created_at = s.i64(7);
  return m;
}

template <class Row>
login_failures_record read_failures(const Row& s) {
  return login_failures_record{s.text(0), static_cast<uint32_t>(s.i64(1)), s.i64(2)};
}

} // namespace rookery::store_rows

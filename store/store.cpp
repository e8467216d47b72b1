#include "store/store.hpp"

namespace rookery {

bool Store::is_postgres(const std::string& where) {
  return where.rfind("postgresql://", 0) == 0 || where.rfind("postgres://", 0) == 0;
}

result<std::unique_ptr<Store>> Store::open(const std::string& where) {
  if (is_postgres(where))
    return open_postgres_store(where);
  return open_sqlite_store(where);
}

std::string lockout_name(const std::string& username) {
  std::string out = username;
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z')
      c = static_cast<char>(c - 'A' + 'a');
  return out;
}

} // namespace rookery

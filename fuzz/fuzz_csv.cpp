// libFuzzer target: the CSV table reader, with a small max_bytes so the
// decoded-size bound is reached too.
#include <cstddef>
#include <cstdint>

#include "common/json_limits.hpp"
#include "datasets/detail.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = fuzz::write_input(data, size, "input.csv");
  for (uint64_t max_bytes : {uint64_t{1} << 16, ~uint64_t{0}}) {
    auto t = rookery::data::detail::parse_csv(path, max_bytes);
    if (t) {
      // What the importer relies on: a rectangular table of bounded width
      // whose column names are UTF-8.
      if (t->columns.empty() || t->columns.size() > rookery::data::detail::kMaxCsvColumns ||
          t->values.size() != t->columns.size() * static_cast<size_t>(t->rows))
        __builtin_trap();
      for (auto& c : t->columns)
        if (!rookery::jsonx::valid_utf8(c))
          __builtin_trap();
    }
  }
  return 0;
}

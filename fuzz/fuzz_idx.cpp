// libFuzzer target: the IDX reader (raw, or any libarchive compression
// filter), header only and with data.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "datasets/detail.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = fuzz::write_input(data, size, "input-idx");
  std::vector<uint8_t> buf;
  auto r = rookery::data::detail::read_idx_file(path, [&](const std::vector<int64_t>& dims) {
    int64_t total = 1;
    for (auto d : dims)
      total *= d;
    // The reader promises to allocate no more than the file holds: for an
    // uncompressed one (an IDX magic), no more than its size.
    const bool raw = size >= 3 && data[0] == 0 && data[1] == 0 && data[2] == 8;
    if (total > rookery::data::detail::kMaxIdxBytes || (raw && static_cast<size_t>(total) > size))
      __builtin_trap();
    buf.assign(static_cast<size_t>(total), 0);
    return buf.data();
  });
  (void)r;
  (void)rookery::data::detail::read_idx_file(path, nullptr);
  return 0;
}

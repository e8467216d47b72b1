// libFuzzer target: the restricted unpickler behind load_state_dict (a
// torch.save archive's data.pkl). Every storage record the pickle asks for
// exists and holds 256 zero bytes, so tensor rebuilding is exercised too.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "models/state_dict.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view pickle(reinterpret_cast<const char*>(data), size);
  auto r = rookery::detail::read_state_dict_pickle(
    pickle, [](const std::string& key) -> std::optional<std::string> {
      if (key.empty() || key.size() > 8)
        return std::nullopt;
      return std::string(256, '\0');
    });
  (void)r;
  return 0;
}

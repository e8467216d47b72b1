// libFuzzer target: the data-set importer (tar/zip/compressed archives of
// class folders, decoded with OpenCV; or a CSV), end to end into a scratch
// data directory that is emptied after every input.
#include <cstddef>
#include <cstdint>
#include <filesystem>

#include <opencv2/core.hpp>

#include "datasets/registry.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  cv::setNumThreads(1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace fs = std::filesystem;
  const auto path = fuzz::write_input(data, size, "upload.bin");
  rookery::data::dataset_paths paths;
  paths.data_dir = (fuzz::scratch_dir() / "data").string();
  rookery::data::import_options o;
  o.name = "fuzzed";
  o.owner_id = 1;
  o.max_bytes = 64u << 20;
  o.max_entries = 1000;
  // The first byte picks the options, so resizing and channels are covered.
  if (size > 0) {
    o.image_size = (data[0] & 1) ? 8 : 0;
    static const int64_t channels[] = {0, 1, 3};
    o.channels = channels[(data[0] >> 1) % 3];
  }
  auto d = rookery::data::import_dataset(paths, path, o);
  (void)d;
  std::error_code ec;
  fs::remove_all(paths.data_dir, ec);
  return 0;
}

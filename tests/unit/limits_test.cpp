// Bounds of the binary and recursive decoders (issue 8, "Hardening"): the
// restricted unpickler behind load_state_dict, the image-folder and CSV
// importers and the IDX reader. Every case here is a file an attacker can
// upload; each one crashed, was accepted past a limit, or answered 500 before
// the bounds were added.
#include <catch2/catch.hpp>

#include <archive.h>
#include <archive_entry.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include <caffe2/serialize/inline_container.h>
#include <opencv2/imgcodecs.hpp>
#include <torch/torch.h>

#include "datasets/detail.hpp"
#include "datasets/registry.hpp"
#include "models/state_dict.hpp"
#include "tensor_files.hpp"

// glog (through torch) defines a fatal CHECK(cond); keep Catch's.
#undef CHECK
#define CHECK(...) \
  INTERNAL_CATCH_TEST("CHECK", Catch::ResultDisposition::ContinueOnFailure, __VA_ARGS__)

namespace fs = std::filesystem;
using namespace rookery;

namespace {

// --- pickles by hand -------------------------------------------------------------

/// A torch.save-style zip archive holding `pickle` as data.pkl (and
/// `records` as data/<key>).
void write_checkpoint(const fs::path& p, const std::string& pickle,
                      const std::vector<std::pair<std::string, std::string>>& records = {}) {
  caffe2::serialize::PyTorchStreamWriter w(p.string());
  w.writeRecord("data.pkl", pickle.data(), pickle.size());
  static const std::string little = "little";
  w.writeRecord("byteorder", little.data(), little.size());
  for (auto& [key, bytes] : records)
    w.writeRecord("data/" + key, bytes.data(), bytes.size());
  w.writeEndOfFile();
}

std::string proto2() { return std::string("\x80\x02", 2); }

std::string u32le(uint32_t v) {
  std::string s(4, '\0');
  for (int k = 0; k < 4; ++k)
    s[static_cast<size_t>(k)] = static_cast<char>((v >> (8 * k)) & 0xff);
  return s;
}

std::string binput(uint32_t i) { return "r" + u32le(i); } // LONG_BINPUT
std::string binget(uint32_t i) { return "j" + u32le(i); } // LONG_BINGET
std::string K(uint8_t v) { return std::string("K") + static_cast<char>(v); } // BININT1
std::string str(const std::string& s) { return "X" + u32le(static_cast<uint32_t>(s.size())) + s; }

status load(const std::string& pickle, const std::vector<std::pair<std::string, std::string>>& records = {}) {
  test::temp_dir dir("rookery-limits-");
  const auto path = dir.path / "weights.pth";
  write_checkpoint(path, pickle, records);
  torch::nn::Linear net(2, 2);
  return load_state_dict(*net, path.string());
}

void expect_refused(const status& st, const std::string& says) {
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().code == errc::unprocessable);
  CHECK_THAT(st.error().message, Catch::Contains(says));
}

// --- archives ---------------------------------------------------------------------

/// A ustar archive (names stored as raw bytes, no charset conversion).
void write_tar(const fs::path& p, const std::vector<std::pair<std::string, std::string>>& files) {
  archive* a = archive_write_new();
  archive_write_set_format_ustar(a);
  REQUIRE(archive_write_open_filename(a, p.c_str()) == ARCHIVE_OK);
  for (const auto& [path, data] : files) {
    archive_entry* e = archive_entry_new();
    archive_entry_copy_pathname(e, path.c_str());
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, static_cast<la_int64_t>(data.size()));
    REQUIRE(archive_write_header(a, e) == ARCHIVE_OK);
    REQUIRE(archive_write_data(a, data.data(), data.size()) == static_cast<la_ssize_t>(data.size()));
    archive_entry_free(e);
  }
  REQUIRE(archive_write_close(a) == ARCHIVE_OK);
  archive_write_free(a);
}

std::string png(int w, int h, int value = 0) {
  cv::Mat m(h, w, CV_8UC1, cv::Scalar(value));
  std::vector<uint8_t> buf;
  REQUIRE(cv::imencode(".png", m, buf));
  return std::string(buf.begin(), buf.end());
}

void write_raw(const fs::path& p, const std::string& data) {
  std::ofstream out(p, std::ios::binary);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

struct scratch {
  test::temp_dir tmp{"rookery-limits-"};
  data::dataset_paths paths;
  scratch() {
    paths.data_dir = (tmp.path / "data").string();
    fs::create_directories(paths.data_dir);
  }
  fs::path file(const std::string& name) const { return tmp.path / name; }
  /// Nothing under <data>/datasets but (empty) per-owner directories u<id>/.
  bool nothing_stored() const {
    std::error_code ec;
    auto dir = fs::path(paths.data_dir) / "datasets";
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      auto name = it->path().filename().string();
      if (!(name.size() > 1 && name[0] == 'u' && fs::is_directory(it->path()) && fs::is_empty(it->path())))
        return false;
    }
    return true;
  }
};

data::import_options opts(const std::string& name) {
  data::import_options o;
  o.name = name;
  o.owner_id = 7;
  return o;
}

} // namespace

// --- the unpickler ---------------------------------------------------------------------

TEST_CASE("the state_dict unpickler bounds nesting depth", "[limits]") {
  SECTION("a million nested lists are refused, not a stack overflow") {
    // ] x N then APPEND x (N-1): each list goes into the one below it.
    const size_t n = 1'000'000;
    std::string p = proto2() + std::string(n, ']') + std::string(n - 1, 'a') + ".";
    expect_refused(load(p), "nested deeper than");
  }
  SECTION("nesting built through the memo after the fact is refused too") {
    // N empty lists, memoised; then list i+1 is appended into list i, each
    // after list i is already inside list i-1: a chain N deep whose depth no
    // single insertion shows.
    const uint32_t n = 300'000;
    std::string p = proto2();
    for (uint32_t i = 0; i < n; ++i)
      p += "]" + binput(i) + "0";
    for (uint32_t i = 0; i + 1 < n; ++i)
      p += binget(i) + binget(i + 1) + "a0";
    p += binget(0) + ".";
    expect_refused(load(p), "modified after it was placed inside another container");
  }
  SECTION("a self-referencing _rebuild_from_type_v2 call does not recurse forever") {
    // L = [_rebuild_from_type_v2, None, L]; REDUCE(_rebuild_from_type_v2, L)
    // used to call itself on L's third item, which is L.
    std::string p = proto2() + "ctorch._tensor\n_rebuild_from_type_v2\n" + binput(0) + "]" + binput(1) +
                    binget(0) + "aNa" + binget(1) + "aR.";
    expect_refused(load(p), "nested deeper than");
  }
  SECTION("moderate nesting still reads") {
    // {"weight": [[[...]]] 40 deep}: read, then reported as a non-tensor key.
    std::string p = proto2() + "}" + str("weight") + std::string(40, ']') +
                    std::string(39, 'a') + "s.";
    auto st = load(p);
    REQUIRE_FALSE(st.ok());
    CHECK_THAT(st.error().message, Catch::Contains("does not match the model"));
  }
}

TEST_CASE("the state_dict unpickler bounds its memo, objects and storages", "[limits]") {
  SECTION("memo") {
    std::string p = proto2() + "N" + std::string(pickle_limits::kMaxMemo + 1, '\x94') + ".";
    expect_refused(load(p), "memo");
  }
  SECTION("objects") {
    std::string p = proto2();
    for (size_t i = 0; i <= pickle_limits::kMaxObjects; ++i)
      p += "N0";
    p += "}.";
    expect_refused(load(p), "objects");
  }
  SECTION("a storage whose element count overflows its byte size") {
    // {"weight": _rebuild_tensor_v2(persistent_load(('storage', FloatStorage,
    //  '0', 'cpu', 2^62)), 0, (1,), (1,), False, OrderedDict())}: 2^62 floats
    //  are 2^64 bytes, which wrapped to 0 and passed the size check.
    std::string numel = "\x8a\x08" + std::string("\0\0\0\0\0\0\0\x40", 8);
    std::string p = proto2() + "}" + str("weight") + "ctorch._utils\n_rebuild_tensor_v2\n" + "((" +
                    str("storage") + "ctorch\nFloatStorage\n" + str("0") + str("cpu") + numel +
                    "tQ" + K(0) + "(" + K(1) + "t(" + K(1) + "t\x89" + "ccollections\nOrderedDict\n)R" +
                    "tRs.";
    expect_refused(load(p, {{"0", std::string(16, '\0')}}), "needs");
  }
  SECTION("a tensor view whose element count overflows int64") {
    std::string big = "J" + u32le(0x7fffffff);
    std::string p = proto2() + "}" + str("weight") + "ctorch._utils\n_rebuild_tensor_v2\n" + "((" +
                    str("storage") + "ctorch\nFloatStorage\n" + str("0") + str("cpu") + K(4) + "tQ" +
                    K(0) + "(" + big + big + big + "t(" + K(0) + K(0) + K(0) + "t\x89" +
                    "ccollections\nOrderedDict\n)R" + "tRs.";
    expect_refused(load(p, {{"0", std::string(16, '\0')}}), "elements");
  }
}

// --- image folders -------------------------------------------------------------------------

TEST_CASE("image folder imports count decoded pixels toward max_bytes", "[limits]") {
  scratch s;
  // Two 4096x4096 black PNGs: ~100 KB of archive, 32 MiB of pixels.
  write_tar(s.file("big.tar"), {{"a/1.png", png(4096, 4096)}, {"b/1.png", png(4096, 4096)}});
  REQUIRE(fs::file_size(s.file("big.tar")) < 1'000'000);
  auto o = opts("big");
  o.max_bytes = 8u << 20;
  auto d = data::import_dataset(s.paths, s.file("big.tar").string(), o);
  REQUIRE_FALSE(d.ok());
  CHECK(d.error().code == errc::payload_too_large);
  CHECK_THAT(d.error().message, Catch::Contains("decoded"));
  CHECK(s.nothing_stored());
}

TEST_CASE("image folder imports check image dimensions before decoding", "[limits]") {
  scratch s;
  // A small PNG whose header claims 30000 x 30000 pixels (2.7 GB decoded).
  std::string huge = png(8, 8);
  const uint32_t side = 30000;
  for (int k = 0; k < 4; ++k) {
    huge[static_cast<size_t>(16 + k)] = static_cast<char>((side >> (24 - 8 * k)) & 0xff);
    huge[static_cast<size_t>(20 + k)] = static_cast<char>((side >> (24 - 8 * k)) & 0xff);
  }
  write_tar(s.file("huge.tar"), {{"a/1.png", png(8, 8)}, {"b/huge.png", huge}});
  auto d = data::import_dataset(s.paths, s.file("huge.tar").string(), opts("huge"));
  REQUIRE_FALSE(d.ok());
  CHECK(d.error().code == errc::payload_too_large);
  CHECK_THAT(d.error().message, Catch::Contains("b/huge.png"));
  CHECK_THAT(d.error().message, Catch::Contains("30000x30000"));
  CHECK(s.nothing_stored());
}

TEST_CASE("a class folder name that is not UTF-8 is a 400 naming the member", "[limits]") {
  scratch s;
  // "café" in Latin-1.
  write_tar(s.file("latin1.tar"), {{"caf\xe9/1.png", png(8, 8)}, {"dog/1.png", png(8, 8, 9)}});
  auto d = data::import_dataset(s.paths, s.file("latin1.tar").string(), opts("latin1"));
  REQUIRE_FALSE(d.ok());
  CHECK(d.error().code == errc::bad_request);
  CHECK_THAT(d.error().message, Catch::Contains("not valid UTF-8"));
  CHECK_THAT(d.error().message, Catch::Contains("1.png"));
  CHECK(s.nothing_stored());
}

// --- CSV ---------------------------------------------------------------------------------------

TEST_CASE("CSV imports bound columns, fields and decoded size, and need UTF-8 names", "[limits]") {
  scratch s;
  auto expect = [&](const std::string& text, errc code, const std::string& says,
                    uint64_t max_bytes = 1u << 30) {
    write_raw(s.file("t.csv"), text);
    auto o = opts("t");
    o.format = "csv";
    o.max_bytes = max_bytes;
    auto d = data::import_dataset(s.paths, s.file("t.csv").string(), o);
    REQUIRE_FALSE(d.ok());
    CHECK(d.error().code == code);
    CHECK_THAT(d.error().message, Catch::Contains(says));
    CHECK(s.nothing_stored());
  };
  expect("x,caf\xe9\n1,2\n", errc::bad_request, "column 2 of the CSV header is not valid UTF-8");

  std::string wide;
  for (size_t i = 0; i <= data::detail::kMaxCsvColumns; ++i)
    wide += (i ? ",c" : "c") + std::to_string(i);
  expect(wide + "\n", errc::bad_request, "columns");

  expect("a," + std::string(data::detail::kMaxCsvFieldBytes + 1, 'b') + "\n1,2\n", errc::bad_request,
         "longer than");

  // 62 bytes of text, 30 doubles (240 bytes) once parsed.
  std::string rows = "a\n";
  for (int i = 0; i < 30; ++i)
    rows += "1\n";
  expect(rows, errc::payload_too_large, "decoded", 100);
}

// --- IDX ---------------------------------------------------------------------------------------

TEST_CASE("IDX headers are checked against the file size before allocating", "[limits]") {
  test::temp_dir dir("rookery-limits-");
  // 1000 x 1000 x 1000 bytes promised by a 20-byte file.
  const std::string header("\0\0\x08\x03\0\0\x03\xe8\0\0\x03\xe8\0\0\x03\xe8", 16);
  write_raw(dir.path / "big-idx3-ubyte", header + "abcd");
  bool allocated = false;
  std::vector<uint8_t> buf(64);
  auto r = data::detail::read_idx_file((dir.path / "big-idx3-ubyte").string(),
                                       [&](const std::vector<int64_t>&) {
                                         allocated = true;
                                         return buf.data();
                                       });
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == errc::unprocessable);
  CHECK_THAT(r.error().message, Catch::Contains("truncated"));
  CHECK_FALSE(allocated);
}

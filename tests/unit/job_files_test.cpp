// A job's directory as plain functions (common/job_files.hpp).
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "common/job_files.hpp"

// The unit-test PCH includes torch after Catch, and glog/c10 logging redefines
// CHECK(cond) as a fatal assertion. Restore Catch's non-fatal, variadic CHECK.
#undef CHECK
#define CHECK(...) \
  INTERNAL_CATCH_TEST("CHECK", Catch::ResultDisposition::ContinueOnFailure, __VA_ARGS__)

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace rookery;

namespace {

struct scratch {
  fs::path root;
  scratch() {
    root = fs::temp_directory_path() / ("job_files_" + std::to_string(std::random_device{}()));
    fs::create_directories(root);
  }
  ~scratch() {
    std::error_code ec;
    fs::remove_all(root, ec);
  }
  void put(const std::string& rel, const std::string& text) const {
    fs::create_directories((root / rel).parent_path());
    std::ofstream(root / rel) << text;
  }
};

} // namespace

TEST_CASE("job files: input written atomically and read back", "[unit][jobs]") {
  scratch s;
  auto path = jobs::input_path(s.root.string(), "j_1");
  CHECK(path == (s.root / "j_1" / "input.bin").string());
  std::string bytes("\x00\x01\xff payload", 12);
  REQUIRE(jobs::write_atomically(path, bytes));
  CHECK(!fs::exists(path + ".tmp"));
  auto back = jobs::read_all(path);
  REQUIRE(back);
  CHECK(*back == bytes);
  CHECK(!jobs::read_all((s.root / "nope").string()));
  // A directory where the file should go: an error, not a crash.
  fs::create_directories(s.root / "dir.bin.tmp");
  CHECK(!jobs::write_atomically((s.root / "dir.bin").string(), "x"));
}

TEST_CASE("job files: the metric history keeps the last points and skips junk", "[unit][jobs]") {
  scratch s;
  std::string lines;
  for (int i = 0; i < 10; ++i)
    lines += json{{"step", i}, {"loss", 1.0 / (i + 1)}}.dump() + "\n";
  lines += "not json\n[1,2]\n";
  s.put("metrics.jsonl", lines);
  auto all = json::parse(jobs::read_history(s.root.string()));
  REQUIRE(all.size() == 10);
  CHECK(all[0]["step"] == 0);
  auto last3 = json::parse(jobs::read_history(s.root.string(), 3));
  REQUIRE(last3.size() == 3);
  CHECK(last3[0]["step"] == 7);
  CHECK(last3[2]["step"] == 9);
  CHECK(json::parse(jobs::read_history((s.root / "missing").string())) == json::array());
}

TEST_CASE("job files: artifacts are listed and served only from inside the job", "[unit][jobs]") {
  scratch s;
  auto dir = (s.root / "j_2").string();
  s.put("j_2/samples/step_10.png", "png");
  s.put("j_2/metrics.jsonl", "{}\n");
  s.put("j_2/checkpoint.pt.tmp", "half");
  s.put("j_2/input.bin", "secret input");
  s.put("outside.txt", "not yours");
  auto listing = json::parse(jobs::list_artifacts(dir, "j_2"));
  CHECK(listing["job"] == "j_2");
  auto& arts = listing["artifacts"];
  REQUIRE(arts.size() == 2);
  CHECK(arts[0]["path"] == "metrics.jsonl");
  CHECK(arts[0]["content_type"] == "application/x-ndjson");
  CHECK(arts[1]["path"] == "samples/step_10.png");
  CHECK(arts[1]["content_type"] == "image/png");
  CHECK(arts[1]["bytes"] == 3);
  CHECK(arts[1]["href"] == "/v1/jobs/j_2/artifacts/samples/step_10.png");
  CHECK(json::parse(jobs::list_artifacts((s.root / "none").string(), "x"))["artifacts"].empty());

  auto f = jobs::artifact_file(dir, "j_2", "samples/step_10.png");
  REQUIRE(f);
  CHECK(fs::path(*f) == fs::weakly_canonical(s.root / "j_2/samples/step_10.png"));
  for (auto bad : {"../outside.txt", "samples/../../outside.txt", "/etc/passwd", "input.bin",
                   "samples", "missing.png", ""}) {
    INFO(bad);
    auto r = jobs::artifact_file(dir, "j_2", bad);
    REQUIRE(!r);
    CHECK(r.error().code == errc::not_found);
  }
  // A link out of the directory is not served.
  fs::create_symlink(s.root / "outside.txt", s.root / "j_2" / "link.txt");
  CHECK(!jobs::artifact_file(dir, "j_2", "link.txt"));
}

TEST_CASE("job files: content types by extension", "[unit][jobs]") {
  CHECK(std::string(jobs::content_type_of("a/b.png")) == "image/png");
  CHECK(std::string(jobs::content_type_of("r.json")) == "application/json");
  CHECK(std::string(jobs::content_type_of("notes.txt")) == "text/plain; charset=utf-8");
  CHECK(std::string(jobs::content_type_of("model.pt")) == "application/octet-stream");
}

// The tutorials under docs/tutorials/ run as written: every ```sh block of a
// tutorial, in order, as one bash script against a real server (set -e and
// pipefail: any failing command fails the test).
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "integration/harness.hpp"

#include <catch2/catch.hpp>

using namespace rookery::test;

namespace {

std::string sh_blocks(const std::string& markdown) {
  std::istringstream in(markdown);
  std::string line, out;
  bool inside = false;
  while (std::getline(in, line)) {
    if (!inside && line == "```sh") {
      inside = true;
      out += "# --- block\n";
    } else if (inside && line == "```") {
      inside = false;
    } else if (inside) {
      out += line + "\n";
    }
  }
  return out;
}

/// Runs the tutorial's commands; returns what they printed (stdout + stderr).
std::string run_tutorial(const std::string& name, int& status) {
  temp_dir dir;
  server s{dir.path};
  auto script = sh_blocks(read_file(std::string(ROOKERY_SOURCE_DIR) + "/docs/tutorials/" + name));
  REQUIRE(script.find("# --- block") != std::string::npos);
  const std::string path = dir.path + "/tutorial.sh", log = dir.path + "/tutorial.log";
  std::ofstream(path) << "set -euo pipefail\ncd '" << dir.path << "'\n" << script;
  const std::string cmd = "ROOKERY=" + s.url("") + " timeout 400 bash '" + path + "' > '" + log
                          + "' 2>&1";
  status = std::system(cmd.c_str());
  return read_file(log);
}

} // namespace

TEST_CASE("docs/tutorials/time-series.md runs as written", "[integration][tutorial]") {
  int status = -1;
  auto out = run_tutorial("time-series.md", status);
  INFO(out);
  REQUIRE(status == 0);
  CHECK(out.find("series_classification") != std::string::npos);
  CHECK(out.find("does not suit data set 'waves'") != std::string::npos);
  CHECK(out.find("suggested lr: ") != std::string::npos);
  CHECK(out.find("200 image/png") != std::string::npos);
  CHECK(out.find("learned") != std::string::npos);
  CHECK(out.find("mase_seasonal_naive") != std::string::npos);
  CHECK(out.find("\"pipeline\": \"charts\"") != std::string::npos);
  CHECK(out.find("\"pipeline\": \"timeseries\"") != std::string::npos);
}

TEST_CASE("docs/tutorials/text.md runs as written", "[integration][tutorial][text]") {
  int status = -1;
  auto out = run_tutorial("text.md", status);
  INFO(out);
  REQUIRE(status == 0);
  CHECK(out.find("\"pipeline\": \"text\"") != std::string::npos);
  CHECK(out.find("dog~puppy ") != std::string::npos);
  CHECK(out.find("fortunes\t") != std::string::npos);
  CHECK(out.find("\"format\": \"text_folder\"") != std::string::npos);
  CHECK(out.find("does not suit data set 'reviews'") != std::string::npos);
  CHECK(out.find("suggested lr: ") != std::string::npos);
  CHECK(out.find("200 image/png") != std::string::npos);
  CHECK(out.find("\"fine_tuned_from\": \"text-lm\"") != std::string::npos);
  CHECK(out.find("\"serves\": \"text_embedding\"") != std::string::npos);
  CHECK(out.find("learned") != std::string::npos);
  CHECK(out.find("\"pipeline\": \"review-sentiment\"") != std::string::npos);
}

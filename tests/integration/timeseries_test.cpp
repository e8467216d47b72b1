// Time-series training over HTTP against the real server: the series data
// sets listed, a UCR upload, blocks that do not suit a data set refused, the
// LR range test as a job, an InceptionTime job trained, registered as a
// pipeline and embedding uploaded CSV series by class.
#include <chrono>
#include <cmath>
#include <sstream>
#include <thread>

#include "integration/harness.hpp"
#include "models/minirocket.hpp"

#include <catch2/catch.hpp>

using json = nlohmann::json;
using namespace rookery::test;

namespace {

header_list bearer(const std::string& token) {
  return {{"Authorization", "Bearer " + token}};
}

std::string csv_of(const std::vector<double>& x) {
  std::ostringstream out;
  out << "value\n";
  for (double v : x)
    out << v << "\n";
  return out.str();
}

} // namespace

TEST_CASE("time-series jobs: data sets, blocks, LR finder, train, register, embed",
          "[integration][timeseries]") {
  temp_dir dir;
  server s{dir.path};
  auto alice = signup_and_login(s, "alice");

  auto list = http("GET", s.url("/v1/datasets"), "", bearer(alice));
  REQUIRE(list.status == 200);
  const auto listing = list.json();
  bool have_sc = false;
  for (auto& d : listing["datasets"])
    if (d["name"] == "synthetic-control") {
      have_sc = true;
      CHECK(d["kind"] == "series_classification");
      CHECK(d["item_shape"] == json::array({1, 60}));
    }
  CHECK(have_sc);

  // A UCR-format upload is sniffed and imported as a series data set.
  std::string tsv;
  for (int i = 0; i < 24; ++i) {
    tsv += i % 2 ? "2" : "1";
    for (int t = 0; t < 40; ++t)
      tsv += "\t" + std::to_string(i % 2 ? std::sin(t * 0.4) : 0.05 * t);
    tsv += "\n";
  }
  const std::string boundary = "tsboundary7";
  std::string form = "--" + boundary + "\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nwaves\r\n"
                     "--" + boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"w.tsv\"\r\n"
                     "Content-Type: text/tab-separated-values\r\n\r\n" + tsv + "\r\n--" + boundary + "--\r\n";
  header_list h = bearer(alice);
  h.emplace_back("Content-Type", "multipart/form-data; boundary=" + boundary);
  auto up = http("POST", s.url("/v1/datasets"), form, h);
  REQUIRE(up.status == 201);
  CHECK(up.json()["kind"] == "series_classification");
  CHECK(up.json()["format"] == "ucr");

  // Blocks that do not suit the data set: a 400 that names both.
  auto bad = http("POST", s.url("/v1/jobs"),
                  json{{"trainer", "timeseries"}, {"dataset", "synthetic-control"},
                       {"task", {{"target", {{"block", "continuous"}}}}}}.dump(), bearer(alice));
  REQUIRE(bad.status == 400);
  CHECK(bad.headers["content-type"] == "application/problem+json");
  auto detail = bad.json()["detail"].get<std::string>();
  CHECK_THAT(detail, Catch::Contains("continuous") && Catch::Contains("synthetic-control"));

  // The LR range test as a job: suggested_lr in the result, the curve as an artifact.
  auto lf = http("POST", s.url("/v1/jobs"),
                 json{{"trainer", "timeseries"}, {"dataset", "waves"},
                      {"model", {{"arch", "minirocket"}, {"options", {{"features", 168}}}}},
                      {"hyper", {{"lr_find", true}, {"lr_find_steps", 30}, {"batch_size", 4}}}}.dump(),
                 bearer(alice));
  REQUIRE(lf.status == 202);
  for (auto key : {"id", "state", "href", "events", "artifacts"})
    CHECK(lf.json().contains(key));
  auto lf_job = wait_for_job(s, alice, lf.json()["id"].get<std::string>());
  REQUIRE(lf_job["state"] == "succeeded");
  CHECK(lf_job["result"]["outcome"] == "lr_find");
  REQUIRE(lf_job["result"]["suggested_lr"].is_number());
  auto png = http("GET", s.url("/v1/jobs/" + lf_job["id"].get<std::string>()
                               + "/artifacts/artifacts/lr_find.png"), "", bearer(alice));
  CHECK(png.status == 200);

  // Train InceptionTime on synthetic control, register it, embed CSV uploads.
  auto sub = http("POST", s.url("/v1/jobs"),
                  json{{"trainer", "timeseries"}, {"dataset", "synthetic-control"},
                       {"model", {{"arch", "inception_time"}, {"options", {{"nf", 8}, {"depth", 3}}}}},
                       {"hyper", {{"epochs", 4}, {"batch_size", 32}, {"lr", 0.003}}}}.dump(),
                  bearer(alice));
  REQUIRE(sub.status == 202);
  auto id = sub.json()["id"].get<std::string>();
  auto job = wait_for_job(s, alice, id);
  REQUIRE(job["state"] == "succeeded");
  CHECK(job["metrics"]["val_acc"].get<double>() > 0.8);
  CHECK(job["result"]["model"]["serves"] == "series_embedding");
  auto reg = http("POST", s.url("/v1/jobs/" + id + "/register"), R"({"name":"sc-inception"})",
                  bearer(alice));
  REQUIRE(reg.status == 201);
  CHECK(reg.json()["dim"] == 32);

  // Fresh series (another seed than the training set's): same-class pairs
  // are closer than cross-class pairs.
  auto fresh = rookery::synthetic_control::generate(3, 60, 99);
  std::vector<std::vector<float>> emb;
  for (auto& x : fresh.x) {
    auto e = http("POST", s.url("/v1/embed?pipeline=sc-inception"), csv_of(x), bearer(alice));
    REQUIRE(e.status == 200);
    auto j = e.json();
    CHECK(j["pipeline"] == "sc-inception");
    CHECK(j["dim"] == 32);
    emb.push_back(j["embedding"].get<std::vector<float>>());
  }
  double same = 0, other = 0;
  int n_same = 0, n_other = 0;
  for (size_t a = 0; a < emb.size(); ++a)
    for (size_t b = a + 1; b < emb.size(); ++b) {
      double c = cosine(emb[a], emb[b]);
      if (fresh.y[a] == fresh.y[b]) {
        same += c;
        ++n_same;
      } else {
        other += c;
        ++n_other;
      }
    }
  CHECK(same / n_same > other / n_other + 0.1);
  // The pipeline is listed with its operators.
  auto p = http("GET", s.url("/v1/pipelines/sc-inception"), "", bearer(alice));
  REQUIRE(p.status == 200);
  CHECK(p.body.find("series_model") != std::string::npos);
  // A series with the wrong channel count is a clear 400.
  auto two = http("POST", s.url("/v1/embed?pipeline=sc-inception"), "a,b\n1,2\n0,4\n5,1\n2,8\n",
                  bearer(alice));
  CHECK(two.status == 400);
}

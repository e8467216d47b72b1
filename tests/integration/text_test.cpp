// Text over HTTP against the real server: the built-in `text` pipeline
// (prose detected from the bytes, {"text"} and {"texts"} JSON), bad text
// refused clearly, and a text job (an LM fine-tuned from the built-in one,
// then a classifier) trained, registered as a pipeline and embedding.
#include <chrono>
#include <cmath>
#include <thread>

#include "integration/harness.hpp"

#include <catch2/catch.hpp>

using json = nlohmann::json;
using namespace rookery::test;

namespace {

header_list bearer(const std::string& token) {
  return {{"Authorization", "Bearer " + token}};
}

} // namespace

TEST_CASE("the built-in text pipeline embeds prose, {text} and {texts}", "[integration][text]") {
  temp_dir dir;
  server s{dir.path};
  auto alice = signup_and_login(s, "alice");

  auto p = http("GET", s.url("/v1/pipelines/text"), "", bearer(alice));
  REQUIRE(p.status == 200);
  CHECK(p.json()["ready"] == true);
  CHECK(p.json()["kind"] == "text");

  // Prose: libmagic says text/plain, the content rules keep it prose.
  auto e = http("POST", s.url("/v1/embed"), "A small dog barked at the postman all morning.\n", bearer(alice));
  REQUIRE(e.status == 200);
  auto j = e.json();
  CHECK(j["pipeline"] == "text");
  CHECK(j["mime"] == "text/plain");
  CHECK(j["model"] == "text-lm");
  const auto dim = j["dim"].get<int>();
  CHECK(dim > 0);
  auto v = j["embedding"].get<std::vector<float>>();
  REQUIRE(v.size() == static_cast<size_t>(dim));
  double norm = 0;
  for (float x : v)
    norm += x * x;
  CHECK(std::fabs(norm - 1) < 1e-3);

  // {"text"} gives the same vector as the prose itself.
  auto t = http("POST", s.url("/v1/embed"), json{{"text", "A small dog barked at the postman all morning.\n"}}.dump(),
                bearer(alice));
  REQUIRE(t.status == 200);
  CHECK(t.json()["mime"] == "application/vnd.rookery.text+json");
  auto tv = t.json()["embedding"].get<std::vector<float>>();
  CHECK(cosine(tv, v) > 0.9999);

  // {"texts"}: items in order, each like a single answer.
  auto b = http("POST", s.url("/v1/embed"),
                json{{"texts", {"a dog barked", "the stock market fell sharply today", "a dog barked"}}}.dump(),
                bearer(alice));
  REQUIRE(b.status == 200);
  auto items = b.json()["items"];
  REQUIRE(items.size() == 3);
  for (auto& it : items) {
    CHECK(it["pipeline"] == "text");
    CHECK(it["status"] == 200);
  }
  auto e0 = items[0]["embedding"].get<std::vector<float>>();
  auto e2 = items[2]["embedding"].get<std::vector<float>>();
  CHECK(cosine(e0, e2) > 0.9999);
  // One text is still a batch of one.
  auto one = http("POST", s.url("/v1/embed"), R"({"texts": ["just one"]})", bearer(alice));
  REQUIRE(one.status == 200);
  CHECK(one.json()["items"].size() == 1);

  // A numeric CSV still goes to the timeseries pipeline.
  auto csv = http("POST", s.url("/v1/embed"), "x\n1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n", bearer(alice));
  REQUIRE(csv.status == 200);
  CHECK(csv.json()["pipeline"] == "timeseries");

  // Bad text: clear 4xx problems, never a dropped connection.
  for (auto& [body, status] : std::vector<std::pair<std::string, int>>{
         {R"({"texts": []})", 400},
         {R"({"texts": [1, 2]})", 400},
         {R"({"texts": "not an array"})", 400},
         {json{{"texts", std::vector<std::string>(65, "x")}}.dump(), 413},
         {R"({"text": 42})", 400},
         {R"({"text": "   "})", 400}}) {
    auto r = http("POST", s.url("/v1/embed?pipeline=text"), body, bearer(alice));
    CHECK(r.status == status);
    CHECK(r.headers["content-type"] == "application/problem+json");
  }
  // Prose that merely starts with '{' is prose.
  auto brace = http("POST", s.url("/v1/embed?pipeline=text"), "{curly} braces open this sentence.", bearer(alice));
  CHECK(brace.status == 200);
  auto latin1 = http("POST", s.url("/v1/embed?pipeline=text"), std::string("caf\xe9 au lait"), bearer(alice));
  CHECK(latin1.status == 400);
  CHECK_THAT(latin1.json()["detail"].get<std::string>(), Catch::Contains("UTF-8"));
}

TEST_CASE("text jobs: fine-tune the built-in LM, classify, register, embed", "[integration][text]") {
  temp_dir dir;
  server s{dir.path};
  auto alice = signup_and_login(s, "alice");

  auto list = http("GET", s.url("/v1/datasets/wordnet"), "", bearer(alice));
  REQUIRE(list.status == 200);
  CHECK(list.json()["kind"] == "text_classification");

  // A block that does not suit the data set: 400 naming both.
  auto bad = http("POST", s.url("/v1/jobs"),
                  json{{"trainer", "text"}, {"dataset", "synthetic-control"}}.dump(), bearer(alice));
  REQUIRE(bad.status == 400);
  CHECK_THAT(bad.json()["detail"].get<std::string>(),
             Catch::Contains("synthetic-control") && Catch::Contains("text_classification"));

  // The LM fine-tuned on fortunes from the built-in one (a few steps).
  auto lm = http("POST", s.url("/v1/jobs"),
                 json{{"trainer", "text"}, {"dataset", "fortunes"},
                      {"task", {{"target", {{"block", "lm"}}}}},
                      {"model", {{"arch", "awd_lstm"}, {"pretrained", "text-lm"}}},
                      {"hyper", {{"epochs", 1}, {"batch_size", 8}, {"bptt", 20}, {"max_steps", 6},
                                 {"limit_train", 200}, {"limit_test", 40}}}}.dump(),
                 bearer(alice));
  REQUIRE(lm.status == 202);
  for (auto key : {"id", "state", "href", "events", "artifacts"})
    CHECK(lm.json().contains(key));
  auto lm_job = wait_for_job(s, alice, lm.json()["id"].get<std::string>());
  REQUIRE(lm_job["state"] == "succeeded");
  CHECK(lm_job["result"]["model"]["serves"] == "text_embedding");
  CHECK(lm_job["result"]["fine_tuned_from"] == "text-lm");
  CHECK(lm_job["result"]["perplexity"].get<double>() > 1);
  auto reg = http("POST", s.url("/v1/jobs/" + lm_job["id"].get<std::string>() + "/register"),
                  R"({"name":"fortunes-lm"})", bearer(alice));
  REQUIRE(reg.status == 201);

  // The classifier from the fine-tuned LM.
  auto clf = http("POST", s.url("/v1/jobs"),
                  json{{"trainer", "text"}, {"dataset", "fortunes"},
                       {"model", {{"arch", "awd_lstm"}, {"pretrained", "fortunes-lm"}}},
                       {"task", {{"input", {{"max_len", 64}}}}},
                       {"hyper", {{"epochs", 2}, {"batch_size", 16}, {"limit_train", 64},
                                  {"limit_test", 32}}}}.dump(),
                  bearer(alice));
  REQUIRE(clf.status == 202);
  auto clf_job = wait_for_job(s, alice, clf.json()["id"].get<std::string>());
  REQUIRE(clf_job["state"] == "succeeded");
  CHECK(clf_job["metrics"].contains("val_acc"));
  auto reg2 = http("POST", s.url("/v1/jobs/" + clf_job["id"].get<std::string>() + "/register"),
                   R"({"name":"fortunes-clf"})", bearer(alice));
  REQUIRE(reg2.status == 201);
  auto e = http("POST", s.url("/v1/embed?pipeline=fortunes-clf"), "Never trust a computer you cannot lift.",
                bearer(alice));
  REQUIRE(e.status == 200);
  CHECK(e.json()["pipeline"] == "fortunes-clf");
  CHECK(e.json()["dim"] == reg2.json()["dim"]);
  auto pl = http("GET", s.url("/v1/pipelines/fortunes-clf"), "", bearer(alice));
  REQUIRE(pl.status == 200);
  CHECK(pl.body.find("text_model") != std::string::npos);
}

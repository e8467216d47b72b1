// The gateway's model router against a mock worker directory and mock worker
// registries, on CAF's test coordinator.
#define CAF_SUITE model_router_actor
#include "actors/model_router.hpp"

#include "tests/actors/fixture.hpp"

using namespace rookery;
using namespace rookery::testing;

namespace {

/// One worker's registry: what it has and what it was asked.
struct registry_script {
  message_log log;
  std::map<std::string, model_meta> models;
  errc infer_error = errc::none;  // answered to every inference when set
  errc put_error = errc::none;    // answered to every import when set
};

model_registry_actor::behavior_type mock_registry(model_registry_actor::pointer,
                                                  std::shared_ptr<registry_script> s,
                                                  float mark) {
  return {
    [=](infer_atom a, const std::string& name, tensor_msg& t) -> caf::result<tensor_msg> {
      s->log.push_back(caf::make_message(a, name, t));
      if (s->infer_error != errc::none)
        return to_error(s->infer_error, "mock registry: refused");
      if (s->models.count(name) == 0)
        return to_error(errc::not_found, "no model '" + name + "'");
      tensor_msg out;
      out.shape = {1, 1};
      out.data = {mark}; // which worker answered
      return out;
    },
    [=](info_atom a, const std::string& name) -> caf::result<model_meta> {
      s->log.push_back(caf::make_message(a, name));
      auto i = s->models.find(name);
      if (i == s->models.end())
        return to_error(errc::not_found, "no model '" + name + "'");
      return i->second;
    },
    [=](list_atom a) -> caf::result<std::vector<model_meta>> {
      s->log.push_back(caf::make_message(a));
      std::vector<model_meta> out;
      for (auto& [n, m] : s->models)
        out.push_back(m);
      return out;
    },
    [=](caf::put_atom a, const model_import& r) -> caf::result<model_meta> {
      s->log.push_back(caf::make_message(a, r));
      if (s->put_error != errc::none)
        return to_error(s->put_error, "mock registry: the weights do not fit");
      auto& m = s->models[r.name];
      m.name = r.name;
      m.version += 1;
      m.status = "installed";
      return m;
    },
    [=](caf::delete_atom a, const std::string& name) -> caf::result<caf::ok_atom> {
      s->log.push_back(caf::make_message(a, name));
      if (s->models.erase(name) == 0)
        return to_error(errc::not_found, "no model '" + name + "'");
      return caf::ok_atom::value;
    },
    [=](caf::get_atom a, const std::string& name) -> caf::result<model_pool> {
      s->log.push_back(caf::make_message(a, name));
      return to_error(errc::not_found, "mock registry: no pools");
    },
  };
}

model_meta meta(const std::string& name, uint32_t version) {
  model_meta m;
  m.name = name;
  m.version = version;
  m.ready = true;
  m.status = "ready";
  return m;
}

struct router_fixture : actor_fixture {
  std::shared_ptr<registry_script> w1 = std::make_shared<registry_script>();
  std::shared_ptr<registry_script> w2 = std::make_shared<registry_script>();
  std::shared_ptr<directory_script> dir = std::make_shared<directory_script>();
  temp_dir kept; // the gateways' <data>/gateway-models
  model_registry_actor r1, r2;
  model_router_actor router;

  router_fixture() {
    r1 = keep(sys.spawn(mock_registry, w1, 1.0f));
    r2 = keep(sys.spawn(mock_registry, w2, 2.0f));
    dir->registries = {{"w1:1", caf::actor_cast<caf::actor>(r1)}, {"w2:2", caf::actor_cast<caf::actor>(r2)}};
    auto d = keep(sys.spawn(mock_directory, dir));
    router = keep(sys.spawn(model_router_impl, d, std::chrono::seconds(5), std::chrono::seconds(5),
                            kept.path.string()));
    sched.run();
  }

  std::shared_ptr<reply<tensor_msg>> infer(const std::string& name) {
    tensor_msg t;
    t.shape = {1, 3, 2, 2};
    t.data.assign(12, 0.5f);
    auto r = ask<tensor_msg>(router, infer_atom::value, name, t);
    sched.run();
    return r;
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(model_router_actor_tests, router_fixture)

CAF_TEST(inference goes round robin over the workers) {
  w1->models["r18"] = meta("r18", 1);
  w2->models["r18"] = meta("r18", 1);
  std::vector<float> answered;
  for (int i = 0; i < 4; ++i) {
    auto r = infer("r18");
    CAF_REQUIRE(r->ok);
    answered.push_back(r->value.data.at(0));
  }
  CAF_CHECK_EQUAL((count_of<infer_atom, std::string, tensor_msg>(w1->log)), 2u);
  CAF_CHECK_EQUAL((count_of<infer_atom, std::string, tensor_msg>(w2->log)), 2u);
  CAF_CHECK_NOT_EQUAL(answered[0], answered[1]);
}

CAF_TEST(an inference that finds its worker unable to serve is tried once on another) {
  w1->models["r18"] = meta("r18", 1);
  w2->models["r18"] = meta("r18", 1);
  w1->infer_error = errc::unavailable;
  for (int i = 0; i < 2; ++i) { // whichever worker comes first, w2 answers
    auto r = infer("r18");
    CAF_REQUIRE(r->ok);
    CAF_CHECK_EQUAL(r->value.data.at(0), 2.0f);
  }
  // A model's own answer is not retried: bad input stays bad elsewhere.
  w1->infer_error = errc::bad_request;
  w2->infer_error = errc::bad_request;
  auto before = w1->log.size() + w2->log.size();
  auto r = infer("r18");
  CAF_REQUIRE(!r->ok);
  CAF_CHECK_EQUAL(r->code(), errc::bad_request);
  CAF_CHECK_EQUAL(w1->log.size() + w2->log.size(), before + 1);
}

CAF_TEST(metadata comes from the first worker that has the model) {
  w2->models["only2"] = meta("only2", 3);
  auto m = ask<model_meta>(router, info_atom::value, std::string{"only2"});
  sched.run();
  CAF_REQUIRE(m->ok);
  CAF_CHECK_EQUAL(m->value.version, 3u);
  auto none = ask<model_meta>(router, info_atom::value, std::string{"ghost"});
  sched.run();
  CAF_REQUIRE(!none->ok);
  CAF_CHECK_EQUAL(none->code(), errc::not_found);
}

CAF_TEST(the list merges the workers and says where they differ) {
  w1->models["both"] = meta("both", 1);
  w2->models["both"] = meta("both", 1);
  w1->models["one"] = meta("one", 1);
  w1->models["skew"] = meta("skew", 1);
  w2->models["skew"] = meta("skew", 2);
  auto l = ask<std::vector<model_meta>>(router, list_atom::value);
  sched.run();
  CAF_REQUIRE(l->ok);
  std::map<std::string, model_meta> by_name;
  for (auto& m : l->value)
    by_name[m.name] = m;
  CAF_REQUIRE_EQUAL(by_name.size(), 3u);
  CAF_CHECK_EQUAL(by_name["both"].status, "ready");
  CAF_CHECK(by_name["one"].status.find("on 1 of 2 workers") != std::string::npos);
  CAF_CHECK_EQUAL(by_name["skew"].version, 2u); // the newest
  CAF_CHECK(by_name["skew"].status.find("workers differ: versions 1, 2") != std::string::npos);
}

CAF_TEST(an import carries the bytes of the file to every worker) {
  temp_dir tmp;
  write_bytes(tmp.path / "w.pth", "weights-bytes");
  model_import req;
  req.name = "r18";
  req.arch = "resnet18";
  req.weights_path = (tmp.path / "w.pth").string();
  auto r = ask<model_meta>(router, caf::put_atom::value, req);
  sched.run();
  CAF_REQUIRE(r->ok);
  CAF_CHECK_EQUAL(r->value.version, 1u);
  CAF_CHECK_EQUAL(r->value.status, "installed");
  for (auto* w : {w1.get(), w2.get()}) {
    auto puts = all_of<caf::put_atom, model_import>(w->log);
    CAF_REQUIRE_EQUAL(puts.size(), 1u);
    CAF_CHECK_EQUAL(puts[0].get_as<model_import>(1).weights, "weights-bytes");
    CAF_CHECK_EQUAL(puts[0].get_as<model_import>(1).weights_path, "");
  }
  // One worker refuses: the answer says so; both refuse: the error.
  w2->put_error = errc::unprocessable;
  auto partial = ask<model_meta>(router, caf::put_atom::value, req);
  sched.run();
  CAF_REQUIRE(partial->ok);
  CAF_CHECK(partial->value.status.find("installed on 1 of 2 workers") != std::string::npos);
  CAF_CHECK(partial->value.status.find("w2:2") != std::string::npos);
  w1->put_error = errc::unprocessable;
  auto refused = ask<model_meta>(router, caf::put_atom::value, req);
  sched.run();
  CAF_REQUIRE(!refused->ok);
  CAF_CHECK_EQUAL(refused->code(), errc::unprocessable);
}

CAF_TEST(a removal is fine where the model was and not_found only when nowhere) {
  w1->models["r18"] = meta("r18", 1);
  auto ok = ask<caf::ok_atom>(router, caf::delete_atom::value, std::string{"r18"});
  sched.run();
  CAF_CHECK(ok->ok);
  CAF_CHECK_EQUAL((count_of<caf::delete_atom, std::string>(w2->log)), 1u);
  auto gone = ask<caf::ok_atom>(router, caf::delete_atom::value, std::string{"r18"});
  sched.run();
  CAF_REQUIRE(!gone->ok);
  CAF_CHECK_EQUAL(gone->code(), errc::not_found);
}

CAF_TEST(without workers every request is unavailable) {
  dir->registries.clear();
  auto r = infer("r18");
  CAF_REQUIRE(!r->ok);
  CAF_CHECK_EQUAL(r->code(), errc::unavailable);
  auto l = ask<std::vector<model_meta>>(router, list_atom::value);
  sched.run();
  CAF_CHECK_EQUAL(l->code(), errc::unavailable);
}

CAF_TEST(a worker that joins later gets the models put through the gateway) {
  temp_dir tmp;
  write_bytes(tmp.path / "w.pth", "weights-bytes");
  model_import req;
  req.name = "r18";
  req.arch = "resnet18";
  req.preprocess_json = R"({"size":224})";
  req.weights_path = (tmp.path / "w.pth").string();
  auto up = ask<model_meta>(router, caf::put_atom::value, req);
  sched.run();
  CAF_REQUIRE(up->ok);
  // A fresh worker: it gets r18, bytes and all, before anything else.
  auto w3 = std::make_shared<registry_script>();
  auto r3 = keep(sys.spawn(mock_registry, w3, 3.0f));
  sched.run();
  auto done = ask<caf::ok_atom>(router, backfill_atom::value, caf::actor_cast<caf::actor>(r3),
                                std::string{"w3:3"});
  sched.run();
  CAF_REQUIRE(done->ok);
  auto puts = all_of<caf::put_atom, model_import>(w3->log);
  CAF_REQUIRE_EQUAL(puts.size(), 1u);
  CAF_CHECK_EQUAL(puts[0].get_as<model_import>(1).name, "r18");
  CAF_CHECK_EQUAL(puts[0].get_as<model_import>(1).arch, "resnet18");
  CAF_CHECK_EQUAL(puts[0].get_as<model_import>(1).preprocess_json, R"({"size":224})");
  CAF_CHECK_EQUAL(puts[0].get_as<model_import>(1).weights, "weights-bytes");
  // Once it has it, nothing more is sent.
  auto again = ask<caf::ok_atom>(router, backfill_atom::value, caf::actor_cast<caf::actor>(r3),
                                 std::string{"w3:3"});
  sched.run();
  CAF_REQUIRE(again->ok);
  CAF_CHECK_EQUAL((count_of<caf::put_atom, model_import>(w3->log)), 1u);
  // Removed through the gateway: no longer back-filled.
  auto del = ask<caf::ok_atom>(router, caf::delete_atom::value, std::string{"r18"});
  sched.run();
  CAF_CHECK(del->ok);
  auto w4 = std::make_shared<registry_script>();
  auto r4 = keep(sys.spawn(mock_registry, w4, 4.0f));
  sched.run();
  auto none = ask<caf::ok_atom>(router, backfill_atom::value, caf::actor_cast<caf::actor>(r4),
                                std::string{"w4:4"});
  sched.run();
  CAF_REQUIRE(none->ok);
  CAF_CHECK_EQUAL((count_of<caf::put_atom, model_import>(w4->log)), 0u);
}

CAF_TEST_FIXTURE_SCOPE_END()

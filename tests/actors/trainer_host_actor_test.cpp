// The trainer host's admission and path mapping, on CAF's test coordinator
// (no run is started here: trainers are detached actors with real training).
#define CAF_SUITE trainer_host_actor
#include "actors/trainer_host.hpp"

#include "tests/actors/fixture.hpp"

using namespace rookery;
using namespace rookery::testing;

namespace {

struct host_fixture : actor_fixture {
  trainer_host_actor host;
  host_fixture() {
    trainer_host_settings s;
    s.max_running = 2;
    host = keep(sys.spawn(trainer_host_impl, s));
    sched.run();
  }
};

} // namespace

CAF_TEST(paths under the data directory of the gateway move to where this worker mounts it) {
  CAF_CHECK_EQUAL(map_shared_path("/var/lib/rookery/jobs/j_1", "/var/lib/rookery", ""),
                  "/var/lib/rookery/jobs/j_1");
  CAF_CHECK_EQUAL(map_shared_path("/var/lib/rookery/jobs/j_1", "/var/lib/rookery", "/shared"),
                  "/shared/jobs/j_1");
  CAF_CHECK_EQUAL(map_shared_path("/var/lib/rookery/./jobs//j_1", "/var/lib/rookery/", "/shared"),
                  "/shared/jobs/j_1");
  // Outside the gateway's data directory: refused (empty).
  CAF_CHECK_EQUAL(map_shared_path("/etc/passwd", "/var/lib/rookery", "/shared"), "");
  CAF_CHECK_EQUAL(map_shared_path("/var/lib/rookery/../etc", "/var/lib/rookery", "/shared"), "");
}

CAF_TEST_FIXTURE_SCOPE(trainer_host_actor_tests, host_fixture)

CAF_TEST(an idle host reports its capacity and ignores cancels of unknown runs) {
  caf::anon_send(host, cancel_atom::value, std::string{"j_nope"});
  sched.run();
  auto r = ask2<uint32_t, uint32_t>(host, info_atom::value);
  sched.run();
  CAF_REQUIRE(r->ok);
  uint32_t used = r->value.first, capacity = r->value.second;
  CAF_CHECK_EQUAL(used, 0u);
  CAF_CHECK_EQUAL(capacity, 2u);
}

CAF_TEST(a malformed run is refused before anything starts) {
  train_run bad; // no id, no directory, no receiver
  auto r = ask2<uint32_t, uint32_t>(host, start_atom::value, bad);
  sched.run();
  CAF_REQUIRE(r->done);
  CAF_CHECK_EQUAL(r->code(), errc::bad_request);
  train_run outside;
  outside.job_id = "j_1";
  outside.job_dir = "/elsewhere/jobs/j_1";
  outside.data_dir = "/var/lib/rookery";
  outside.receiver = caf::actor_cast<caf::actor>(self);
  // A host that maps the gateway's paths refuses a directory outside them.
  trainer_host_settings s;
  s.shared_data = "/shared";
  auto mapping = keep(sys.spawn(trainer_host_impl, s));
  sched.run();
  auto r2 = ask2<uint32_t, uint32_t>(mapping, start_atom::value, outside);
  sched.run();
  CAF_REQUIRE(r2->done);
  CAF_CHECK_EQUAL(r2->code(), errc::bad_request);
}

CAF_TEST_FIXTURE_SCOPE_END()

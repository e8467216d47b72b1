// The test binary's main and CAF's test engine (header-only in CAF 0.17):
// exactly one file of actor_tests includes unit_test_impl.hpp. Run it as
// `actor_tests` (all suites), `actor_tests -s auth_actor`, or with `-v 4`
// for every check. Each test case has a 30 s watchdog (option -r).
#define CAF_SUITE actor_tests
#include <caf/test/unit_test_impl.hpp>

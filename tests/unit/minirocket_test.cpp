// MiniRocket and the synthetic control chart data (models/minirocket.hpp):
// the features against a NumPy reference (tests/tools/minirocket_ref.py),
// determinism, and that a ridge classifier on the features tells the six
// classes apart.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "common/mime.hpp"
#include "common/series_text.hpp"
#include "models/minirocket.hpp"

using namespace rookery;
using nlohmann::json;

namespace {

std::vector<double> prepared(std::vector<double> x, int64_t length) {
  return minirocket::resample(minirocket::standardise(std::move(x)), length);
}

} // namespace

TEST_CASE("synthetic control: 600 seeded series of the six published classes", "[minirocket]") {
  auto set = synthetic_control::generate();
  REQUIRE(set.x.size() == 600);
  REQUIRE(set.x[0].size() == 60);
  auto again = synthetic_control::generate();
  CHECK(again.x == set.x); // the same everywhere: splitmix64, no std distributions
  CHECK(synthetic_control::generate(100, 60, 1).x != set.x);
  auto slope = [](const std::vector<double>& y) {
    double a = 0, b = 0;
    for (size_t i = 0; i < 10; ++i)
      a += y[i], b += y[y.size() - 1 - i];
    return (b - a) / 10;
  };
  double up = 0, down = 0;
  for (size_t i = 0; i < 100; ++i) {
    up += slope(set.x[200 + i]);   // increasing trend
    down += slope(set.x[300 + i]); // decreasing trend
  }
  CHECK(up / 100 > 8);
  CHECK(down / 100 < -8);
  for (size_t i = 0; i < 100; ++i)
    CHECK(set.y[i] == 0);
}

TEST_CASE("MiniRocket matches a NumPy implementation, and its features separate the classes",
          "[minirocket]") {
  auto set = synthetic_control::generate(20, 60, 3);
  std::vector<std::vector<double>> train;
  for (auto& s : set.x)
    train.push_back(prepared(s, 60));
  std::vector<int64_t> picked;
  auto p = minirocket::fit(train, 1000, 11, &picked);
  REQUIRE(p);
  CHECK(p->num_features() == 84 * 11);
  // Series to compare: some of the set, one longer and one shorter than the
  // fit length (the transform takes any length >= 9).
  std::vector<std::vector<double>> series = {train[0], train[45], train[119]};
  series.push_back(prepared(set.x[7], 150));
  series.push_back(prepared(set.x[70], 17));
  json features = json::array();
  for (auto& s : series) {
    auto f = minirocket::transform(*p, s);
    REQUIRE(f);
    REQUIRE(f->size() == p->num_features());
    features.push_back(*f);
  }
  CHECK_FALSE(minirocket::transform(*p, std::vector<double>(8, 1.0)));

  const char* py = "/usr/bin/python3";
  if (!std::filesystem::exists(py)) {
    WARN("skipped the NumPy comparison: no /usr/bin/python3");
  } else {
    auto dir = std::filesystem::temp_directory_path() / ("rookery-minirocket-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    json c{{"num_features", 1000}, {"train", train}, {"picked", picked},
           {"params", json::parse(p->to_json())}, {"series", series}, {"features", features}};
    std::ofstream(dir / "case.json") << c.dump();
    auto cmd = std::string(py) + " " + ROOKERY_SOURCE_DIR + "/tests/tools/minirocket_ref.py " + (dir / "case.json").string()
               + " > " + (dir / "out.json").string() + " 2>&1";
    const int rc = std::system(cmd.c_str());
    std::ifstream in(dir / "out.json");
    std::string out((std::istreambuf_iterator<char>(in)), {});
    std::printf("minirocket vs NumPy: %s", out.c_str());
    INFO(out);
    CHECK(rc == 0);
    std::filesystem::remove_all(dir);
  }

  // A ridge classifier on the standardised features, as MiniRocket is used
  // (dual form: 120 x 120 system), trained here and scored on a held-out set
  // of the same six classes (another seed).
  auto test = synthetic_control::generate(20, 60, 4);
  const size_t nf = p->num_features(), n = train.size();
  std::vector<std::vector<double>> X, T;
  for (auto& s : train) {
    auto f = minirocket::transform(*p, s).value();
    X.emplace_back(f.begin(), f.end());
  }
  for (auto& s : test.x) {
    auto f = minirocket::transform(*p, prepared(s, 60)).value();
    T.emplace_back(f.begin(), f.end());
  }
  for (size_t k = 0; k < nf; ++k) {
    double m = 0, v = 0;
    for (auto& x : X)
      m += x[k] / static_cast<double>(n);
    for (auto& x : X)
      v += (x[k] - m) * (x[k] - m) / static_cast<double>(n);
    const double sd = std::sqrt(v) > 1e-12 ? std::sqrt(v) : 1.0;
    for (auto& x : X)
      x[k] = (x[k] - m) / sd;
    for (auto& x : T)
      x[k] = (x[k] - m) / sd;
  }
  auto dotd = [](const std::vector<double>& u, const std::vector<double>& w) {
    double d = 0;
    for (size_t k = 0; k < u.size(); ++k)
      d += u[k] * w[k];
    return d;
  };
  // (K + lambda I) alpha = Y, K = X X^T, Y one-hot in {-1, 1}; Gauss-Jordan.
  const double lambda = 10.0;
  std::vector<std::vector<double>> A(n, std::vector<double>(n + 6, 0.0));
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < n; ++j)
      A[i][j] = dotd(X[i], X[j]) + (i == j ? lambda : 0.0);
    for (int c = 0; c < 6; ++c)
      A[i][n + static_cast<size_t>(c)] = set.y[i] == c ? 1.0 : -1.0;
  }
  for (size_t col = 0; col < n; ++col) {
    size_t piv = col;
    for (size_t r = col + 1; r < n; ++r)
      if (std::fabs(A[r][col]) > std::fabs(A[piv][col]))
        piv = r;
    std::swap(A[col], A[piv]);
    for (size_t r = 0; r < n; ++r) {
      if (r == col)
        continue;
      const double f = A[r][col] / A[col][col];
      for (size_t k = col; k < n + 6; ++k)
        A[r][k] -= f * A[col][k];
    }
  }
  int right = 0;
  for (size_t t = 0; t < T.size(); ++t) {
    std::vector<double> score(6, 0.0);
    for (size_t i = 0; i < n; ++i) {
      const double kv = dotd(T[t], X[i]);
      for (size_t c = 0; c < 6; ++c)
        score[c] += kv * A[i][n + c] / A[i][i];
    }
    int best = 0;
    for (int c = 1; c < 6; ++c)
      if (score[static_cast<size_t>(c)] > score[static_cast<size_t>(best)])
        best = c;
    right += best == test.y[t] ? 1 : 0;
  }
  const double acc = right / static_cast<double>(T.size());
  std::printf("minirocket + ridge accuracy on synthetic control (120 train, 120 held out): %.3f\n", acc);
  CHECK(acc >= 0.9);
}

TEST_CASE("series uploads: tables, rows and JSON; content rules for sniffing", "[minirocket][series]") {
  auto t = parse_series("year,volume\n1871,1120\n1872,1160\n1873,963\n1874,1210\n");
  REQUIRE(t);
  REQUIRE(t->channels.size() == 1); // the year column is the time axis
  CHECK(t->names[0] == "volume");
  CHECK(t->channels[0] == std::vector<double>{1120, 1160, 963, 1210});
  t = parse_series("date,co2\n1958-03,315.7\n1958-04,NA\n1958-05,317.5\n");
  REQUIRE(t);
  CHECK(t->channels[0][1] == Approx(316.6)); // interpolated
  t = parse_series("1.5\t2.5\t3.5\t4.5\n"); // one UCR-style row
  REQUIRE(t);
  CHECK(t->channels[0].size() == 4);
  t = parse_series(R"({"series": [1, 2, null, 4]})");
  REQUIRE(t);
  CHECK(t->channels[0][2] == Approx(3.0));
  t = parse_series("[[1,2,3],[4,5,6]]");
  REQUIRE(t);
  CHECK(t->channels.size() == 2);
  CHECK_FALSE(parse_series("a,b\n1,2\n3\n"));
  CHECK_FALSE(parse_series("1,2\n3,x\n"));
  CHECK_FALSE(parse_series("[[1,2],[3]]"));
  CHECK_FALSE(parse_series(""));
  auto big = parse_series(std::string(200000, '1').insert(0, "[").append("]"));
  CHECK_FALSE(big);
  CHECK(parse_series(std::string("1\n").append(std::string("2\n")).append("3\n"), series_limits{2, 64}).error().code
        == errc::payload_too_large);

  CHECK(refine_mime("t,v\n1,2\n2,3\n3,5\n", "text/csv") == "text/csv");
  CHECK(refine_mime("1\n2\n3.5\n", "text/plain") == "text/csv");
  CHECK(refine_mime("The quick brown fox, as they say,\njumps.\n", "text/plain") == "text/plain");
  CHECK(refine_mime("[1, 2, 3]", "application/json") == "application/vnd.rookery.series+json");
  CHECK(refine_mime(R"({"texts": ["a"]})", "application/json") == "application/vnd.rookery.text+json");
  CHECK(refine_mime(R"({"a": 1})", "application/json") == "application/json");
  CHECK(refine_mime("\x89PNG", "image/png") == "image/png");
}

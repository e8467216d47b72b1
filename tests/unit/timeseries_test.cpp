// Time-series tasks: the spec reader, the series blocks, the series data
// sets (synthetic control, statsmodels' CSVs, UCR .tsv and UEA .ts uploads),
// the timeseries trainer (InceptionTime, LSTM/GRU, MiniRocket; forecasting
// against seasonal naive) under fit(), the LR range test and the trainer table.
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "datasets/registry.hpp"
#include "datasets/series.hpp"
#include "models/series_nets.hpp"
#include "trainers/blocks.hpp"
#include "trainers/spec.hpp"
#include "trainers/trainer.hpp"
#include "unit/tensor_files.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace rookery;
using namespace rookery::train;

namespace {

data::dataset_paths paths_in(const fs::path& dir) {
  data::dataset_paths p;
  p.data_dir = dir.string();
  return p;
}

bool statsmodels_installed() {
  return fs::exists("/usr/lib/python3/dist-packages/statsmodels/datasets/sunspots/sunspots.csv");
}

} // namespace

TEST_CASE("spec_reader reads typed keys and names the first bad one by its path", "[trainers]") {
  json j{{"n", 3}, {"x", 0.5}, {"flag", true}, {"mode", "b"}, {"names", {"a", "b"}}, {"f", 4.0}};
  int64_t n = 0, f = 0;
  double x = 0;
  bool flag = false;
  std::string mode;
  std::vector<std::string> names;
  spec_reader r(j, "task.input");
  r.integer("n", n, 1, 10).number("x", x, 0, 1).boolean("flag", flag).choice("mode", mode, {"a", "b"})
    .strings("names", names).integer("f", f, 0, 10);
  REQUIRE(r.done());
  CHECK(n == 3);
  CHECK(f == 4); // an integral float is an integer
  CHECK(names.size() == 2);
  CHECK(mode == "b");
  for (auto [bad, key] : std::vector<std::pair<json, std::string>>{
         {{{"n", 11}}, "task.input.n"}, {{{"n", 2.5}}, "task.input.n"},
         {{{"x", "one"}}, "task.input.x"}, {{{"mode", "c"}}, "task.input.mode"},
         {{{"names", {"a", "a"}}}, "task.input.names"}, {{{"flag", 1}}, "task.input.flag"},
         {{{"n", 1e300}}, "out of range"}}) {
    int64_t n2 = 0;
    double x2 = 0;
    bool b2 = false;
    std::string m2;
    std::vector<std::string> s2;
    spec_reader r2(bad, "task.input");
    r2.integer("n", n2, 1, 10).number("x", x2, 0, 1).choice("mode", m2, {"a", "b"})
      .strings("names", s2).boolean("flag", b2);
    auto st = r2.done();
    REQUIRE_FALSE(st);
    CHECK(st.error().code == errc::bad_request);
    CHECK_THAT(st.error().message, Catch::Contains(key));
  }
  CHECK_FALSE(spec_object(json{{"hyper", 3}}, "hyper"));
  CHECK(spec_object(json{{"hyper", nullptr}}, "hyper"));
}

TEST_CASE("the trainer table lists every kind once and refuses unknown ones", "[trainers]") {
  std::set<std::string> names;
  for (auto& k : trainer_kinds())
    CHECK(names.insert(k.name).second);
  for (auto want : {"classifier", "gan", "autoencoder", "rnn", "timeseries"})
    CHECK(names.count(want) == 1);
  test::temp_dir tmp("rookery_table_");
  auto r = make_trainer(json{{"trainer", "quantum"}, {"dataset", "synthetic-control"}},
                        paths_in(tmp.path), 1, false);
  REQUIRE_FALSE(r);
  CHECK_THAT(r.error().message, Catch::Contains("timeseries"));
}

TEST_CASE("series blocks standardise per channel, pad, crop and resample", "[trainers][timeseries]") {
  series_block b;
  b.length = 4;
  b.fit_to({{{1, 2, 3, 4}, {10, 10, 10, 10}}, {{3, 4, 5, 6}, {20, 20, 20, 20}}});
  CHECK(b.channels == 2);
  CHECK(b.mean[0] == Approx(3.5));
  CHECK(b.mean[1] == Approx(15));
  auto e = b.encode({{3.5, 3.5}, {15, 15, 15, 15, 15, 25}});
  REQUIRE(e);
  // Channel 0 is short: padded with the (standardised) mean 0; channel 1 is
  // long: its last 4 points.
  CHECK((*e)[0] == Approx(0));
  CHECK((*e)[2] == Approx(0));
  CHECK((*e)[7] == Approx(10 / b.std[1]));
  CHECK_FALSE(b.encode({{1, 2, 3}}));
  series_block r;
  r.length = 5;
  r.fit = "resample";
  r.standardize = "none";
  r.fit_to({{{0, 4}}});
  auto rs = r.encode({{0, 4}});
  REQUIRE(rs);
  CHECK((*rs)[2] == Approx(2));
  auto back = series_block::from_json(json::parse(b.to_json()));
  REQUIRE(back);
  CHECK(back->mean == b.mean);
}

TEST_CASE("blocks that do not suit the data set are a 400 naming both", "[trainers][timeseries]") {
  auto sc = data::builtin_series_info("synthetic-control");
  REQUIRE(sc);
  auto t = parse_series_task(json::object(), *sc);
  REQUIRE(t);
  CHECK(t->target.block == "label");
  CHECK(t->target.classes.size() == 6);
  auto bad = parse_series_task(json{{"task", {{"target", {{"block", "continuous"}}}}}}, *sc);
  REQUIRE_FALSE(bad);
  CHECK_THAT(bad.error().message, Catch::Contains("continuous") && Catch::Contains("synthetic-control"));
  auto bad_in = parse_series_task(json{{"task", {{"input", {{"block", "text"}}}}}}, *sc);
  REQUIRE_FALSE(bad_in);
  CHECK_THAT(bad_in.error().message, Catch::Contains("text") && Catch::Contains("synthetic-control"));
  if (statsmodels_installed()) {
    auto ss = data::builtin_series_info("sunspots");
    REQUIRE(ss);
    auto f = parse_series_task(json::object(), *ss);
    REQUIRE(f);
    CHECK(f->target.block == "continuous");
    CHECK(f->target.horizon == 11);
    auto lab = parse_series_task(json{{"task", {{"target", {{"block", "label"}}}}}}, *ss);
    REQUIRE_FALSE(lab);
    CHECK_THAT(lab.error().message, Catch::Contains("label") && Catch::Contains("sunspots"));
  }
}

TEST_CASE("series data sets: synthetic control, statsmodels CSVs, UCR and UEA uploads",
          "[datasets][timeseries]") {
  auto sc = data::builtin_series_info("synthetic-control");
  REQUIRE(sc);
  auto set = data::load_series(*sc);
  REQUIRE(set);
  CHECK(set->train_x.size() == 300);
  CHECK(set->test_x.size() == 300);
  CHECK(set->train_x[0][0].size() == 60);
  auto small = data::load_series(*sc, 12, 6);
  REQUIRE(small);
  CHECK(small->train_x.size() == 12);
  CHECK(std::set<int64_t>(small->train_y.begin(), small->train_y.end()).size() == 6); // balanced

  if (statsmodels_installed()) {
    for (auto name : {"sunspots", "nile", "co2", "elnino", "elec-equip", "macrodata"}) {
      INFO(name);
      auto d = data::builtin_series_info(name);
      REQUIRE(d);
      REQUIRE(d->available);
      auto s = data::load_series(*d);
      REQUIRE(s);
      CHECK(s->series[0].size() > 90);
      for (double v : s->series[0])
        REQUIRE(std::isfinite(v));
    }
    auto mac_info = data::builtin_series_info("macrodata");
    auto mac = data::load_series(*mac_info);
    CHECK(mac->channels == 3);
    auto sun_info = data::builtin_series_info("sunspots");
    CHECK(data::load_series(*sun_info)->series[0].size() == 309);
  }

  // UCR 2018 .tsv: label first, NaN padding of the shorter series.
  auto tsv = data::parse_ucr_tsv("1\t0.5\t1.5\t2.5\tNaN\n2\t3\t2\t1\t0\n");
  REQUIRE(tsv);
  CHECK(tsv->x.size() == 2);
  CHECK(tsv->x[0][0].size() == 3);
  CHECK(tsv->max_length == 4);
  CHECK(tsv->labels[1] == "2");
  auto bad = data::parse_ucr_tsv("1\t0.5\tabc\n");
  REQUIRE_FALSE(bad);
  CHECK_THAT(bad.error().message, Catch::Contains("line 1"));
  // UEA .ts: header, two dimensions, a missing value.
  auto ts = data::parse_ts("# comment\n@problemName demo\n@timeStamps false\n@univariate false\n"
                           "@classLabel true up down\n@data\n1,2,3:4,?,6:up\n3,2,1:6,5,4:down\n");
  REQUIRE(ts);
  CHECK(ts->channels == 2);
  CHECK(ts->x[0][1][1] == Approx(5)); // interpolated
  CHECK(ts->labels[0] == "up");
  CHECK_FALSE(data::parse_ts("@data\n1,2:up\n1,2,3:4:down\n")); // dimension count changes
  CHECK(data::sniff_series_format("@problemName x\n@data\n") == "ts");
  CHECK(data::sniff_series_format("1\t2\t3\t4\n2\t3\t4\t5\n") == "ucr");
  CHECK(data::sniff_series_format("a,b\n1,2\n") == "");
  auto split = data::split_by_class({"a", "a", "a", "a", "b", "b"}, 0.5);
  CHECK(split == std::vector<bool>{false, false, true, true, false, true});

  // An upload through the importer, then listed, found and loaded.
  test::temp_dir tmp("rookery_ucr_");
  auto file = tmp.path / "up.tsv";
  {
    std::ofstream out(file);
    for (int i = 0; i < 20; ++i) {
      out << (i % 2 ? "2" : "1");
      for (int t = 0; t < 30; ++t)
        out << '\t' << (i % 2 ? std::sin(t * 0.5) : 0.1 * t);
      out << '\n';
    }
  }
  data::import_options opt;
  opt.name = "waves";
  opt.owner_id = 3;
  auto paths = paths_in(tmp.path);
  auto d = data::import_dataset(paths, file.string(), opt);
  REQUIRE(d);
  CHECK(d->kind == "series_classification");
  CHECK(d->format == "ucr");
  CHECK(d->train_size == 16);
  CHECK(d->test_size == 4);
  auto found = data::find_dataset(paths, "waves", 3, false);
  REQUIRE(found);
  auto loaded = data::load_series(*found);
  REQUIRE(loaded);
  CHECK(loaded->train_x.size() == 16);
  CHECK(loaded->classes == std::vector<std::string>{"1", "2"});
  // A built-in's name cannot be taken.
  opt.name = "sunspots";
  CHECK(data::import_dataset(paths, file.string(), opt).error().code == errc::conflict);
}

TEST_CASE("InceptionTime has residual shortcuts, an ensemble, and freezes its body", "[timeseries]") {
  series::net_options o;
  o.in_channels = 2;
  o.outputs = 3;
  o.nf = 4;
  o.depth = 6;
  o.ensemble = 2;
  series::SeriesNet net(o);
  auto x = torch::randn({5, 2, 30});
  CHECK(net->forward(x).sizes() == torch::IntArrayRef({5, 3}));
  CHECK(net->features(x).sizes() == torch::IntArrayRef({5, 2 * 16}));
  int shortcuts = 0;
  for (auto& item : net->named_parameters())
    shortcuts += item.key().find("shortcut") != std::string::npos;
  CHECK(shortcuts == 2 * 2 * 3); // 2 per member (depth 6), conv + bn weight + bn bias each
  net->freeze_body(true);
  for (auto& item : net->named_parameters())
    CHECK(item.value().requires_grad() == (item.key().find("head") != std::string::npos));
  o.arch = "gru";
  o.bidirectional = true;
  series::SeriesNet gru(o);
  CHECK(gru->features(x).sizes() == torch::IntArrayRef({5, 2 * o.hidden}));
}

TEST_CASE("the timeseries trainer classifies synthetic control: InceptionTime, LSTM, MiniRocket",
          "[trainers][timeseries]") {
  test::temp_dir tmp("rookery_ts_");
  auto paths = paths_in(tmp.path);
  struct run_case {
    json model;
    json hyper;
    double min_acc;
  };
  for (auto c : std::vector<run_case>{
         {json{{"arch", "inception_time"}, {"options", {{"nf", 8}, {"depth", 3}}}},
          json{{"epochs", 4}, {"batch_size", 32}, {"lr", 0.003}}, 0.8},
         {json{{"arch", "lstm"}, {"options", {{"hidden", 32}, {"layers", 1}}}},
          json{{"epochs", 6}, {"batch_size", 16}, {"lr", 0.01}}, 0.5},
         {json{{"arch", "minirocket"}, {"options", {{"features", 840}}}},
          json{{"epochs", 20}, {"batch_size", 32}, {"lr", 0.01}}, 0.9}}) {
    INFO(c.model.dump());
    json spec{{"trainer", "timeseries"}, {"dataset", "synthetic-control"}, {"model", c.model},
              {"hyper", c.hyper}};
    auto t = make_trainer(spec, paths, 1, false);
    REQUIRE(t);
    run_context ctx;
    ctx.dir = (tmp.path / c.model["arch"].get<std::string>()).string();
    auto r = fit(**t, ctx);
    REQUIRE(r);
    CHECK(r->outcome == "completed");
    CHECK(r->final_metrics.at("val_acc") >= c.min_acc);
    REQUIRE(r->model);
    CHECK(r->model->what == serves::series_embedding);
    auto cfg = json::parse(std::ifstream(fs::path(ctx.dir) / "model" / "series_model.json"));
    CHECK(cfg["input"]["length"] == 60);
    CHECK(cfg["target"]["classes"].size() == 6);
  }
}

TEST_CASE("forecasting sunspots reports MASE beside the seasonal-naive forecast",
          "[trainers][timeseries]") {
  if (!statsmodels_installed()) {
    WARN("python3-statsmodels is not installed: nothing to forecast");
    return;
  }
  test::temp_dir tmp("rookery_fc_");
  json spec{{"trainer", "timeseries"}, {"dataset", "sunspots"},
            {"model", {{"arch", "gru"}, {"options", {{"hidden", 32}, {"layers", 1}}}}},
            {"hyper", {{"epochs", 8}, {"batch_size", 16}, {"lr", 0.01}}}};
  auto t = make_trainer(spec, paths_in(tmp.path), 1, false);
  REQUIRE(t);
  run_context ctx;
  ctx.dir = tmp.path.string();
  auto r = fit(**t, ctx);
  REQUIRE(r);
  const auto& m = r->final_metrics;
  REQUIRE(m.count("val_mase"));
  REQUIRE(m.count("val_mase_naive"));
  CHECK(m.at("val_mase_naive") > 0.3);
  CHECK(m.at("val_mase") > 0);
  auto extra = json::parse((*t)->result_extra());
  CHECK(extra["forecast"]["horizon"] == 11);
  // A label target on a forecasting set is refused before anything loads.
  spec["task"] = {{"target", {{"block", "label"}}}};
  CHECK(make_trainer(spec, paths_in(tmp.path), 1, false).error().code == errc::bad_request);
}

TEST_CASE("the LR range test sweeps the LR, draws the curve and suggests one", "[trainers][timeseries]") {
  test::temp_dir tmp("rookery_lrfind_");
  json spec{{"trainer", "timeseries"}, {"dataset", "synthetic-control"},
            {"model", {{"arch", "minirocket"}, {"options", {{"features", 168}}}}},
            {"hyper", {{"lr_find", true}, {"lr_find_steps", 40}, {"batch_size", 16}}}};
  auto t = make_trainer(spec, paths_in(tmp.path), 1, false);
  REQUIRE(t);
  run_context ctx;
  ctx.dir = tmp.path.string();
  auto r = fit(**t, ctx);
  REQUIRE(r);
  CHECK(r->outcome == "lr_find");
  REQUIRE(r->suggested_lr);
  CHECK(*r->suggested_lr > 1e-7);
  CHECK(*r->suggested_lr < 10);
  CHECK(fs::exists(tmp.path / "artifacts" / "lr_find.png"));
  CHECK_FALSE(r->model); // nothing exported, no checkpoints
  CHECK_FALSE(fs::exists(tmp.path / "checkpoints" / "last.pt"));
  auto curve = json::parse(std::ifstream(tmp.path / "artifacts" / "lr_find.json"));
  auto& pts = curve["points"];
  REQUIRE(pts.size() >= 5);
  CHECK(pts[1]["lr"].get<double>() > pts[0]["lr"].get<double>()); // rising
}

TEST_CASE("a timeseries run resumed from a checkpoint ends in the identical state",
          "[trainers][timeseries]") {
  test::temp_dir a_dir("rookery_tsres_a_"), b_dir("rookery_tsres_b_");
  json spec{{"trainer", "timeseries"}, {"dataset", "synthetic-control"},
            {"model", {{"arch", "inception_time"}, {"options", {{"nf", 4}, {"depth", 3}}}}},
            {"hyper", {{"epochs", 2}, {"batch_size", 32}, {"checkpoint_every", 2},
                       {"limit_train", 120}, {"limit_test", 30}}}};
  auto paths = paths_in(a_dir.path);
  auto a = make_trainer(spec, paths, 1, false);
  REQUIRE(a);
  run_context ca;
  ca.dir = a_dir.path.string();
  REQUIRE(fit(**a, ca));
  int calls = 0;
  {
    auto b = make_trainer(spec, paths, 1, false);
    run_context cb;
    cb.dir = b_dir.path.string();
    cb.cancelled = [&calls] { return ++calls > 9; }; // polls: 4 steps, 3 at the epoch end, steps 5 and 6
    auto r = fit(**b, cb);
    REQUIRE(r);
    CHECK(r->outcome == "cancelled");
  }
  auto b2 = make_trainer(spec, paths, 1, false);
  run_context cb2;
  cb2.dir = b_dir.path.string();
  auto r = fit(**b2, cb2);
  REQUIRE(r);
  CHECK(r->resumed);
  CHECK(r->resumed_from_step == 6);
  auto pa = (*a)->modules().at("model")->parameters();
  auto pb = (*b2)->modules().at("model")->parameters();
  REQUIRE(pa.size() == pb.size());
  for (size_t i = 0; i < pa.size(); ++i)
    CHECK(torch::equal(pa[i], pb[i]));
}

TEST_CASE("fine_tune starts from a registered series model and freezes its body",
          "[trainers][timeseries]") {
  test::temp_dir tmp("rookery_ft_");
  auto paths = paths_in(tmp.path);
  json base{{"trainer", "timeseries"}, {"dataset", "synthetic-control"},
            {"model", {{"arch", "inception_time"}, {"options", {{"nf", 4}, {"depth", 3}}}}},
            {"hyper", {{"epochs", 2}, {"batch_size", 32}, {"lr", 0.01}}}};
  auto a = make_trainer(base, paths, 1, false);
  REQUIRE(a);
  run_context ca;
  ca.dir = (tmp.path / "pre").string();
  REQUIRE(fit(**a, ca));
  // What POST /v1/jobs/{id}/register does with the export.
  fs::create_directories(tmp.path / "series-models");
  fs::copy(tmp.path / "pre" / "model", tmp.path / "series-models" / "charts", fs::copy_options::recursive);

  auto spec = base;
  spec["model"] = {{"arch", "inception_time"}, {"pretrained", "charts"}};
  spec["hyper"] = {{"epochs", 2}, {"batch_size", 32}, {"lr", 0.01}, {"freeze_epochs", 2}};
  auto b = make_trainer(spec, paths, 1, false);
  REQUIRE(b);
  run_context cb;
  cb.dir = (tmp.path / "ft").string();
  auto r = fit(**b, cb);
  REQUIRE(r);
  CHECK(r->final_metrics.at("val_acc") > 0.5);
  // Frozen for every epoch: the body is the registered model's, the head moved.
  auto pre = (*a)->modules().at("model")->named_parameters();
  int body = 0, heads_moved = 0;
  for (auto& item : (*b)->modules().at("model")->named_parameters()) {
    if (item.key().find("head") != std::string::npos) {
      heads_moved += !torch::equal(item.value(), pre[item.key()]);
    } else {
      ++body;
      CHECK(torch::equal(item.value(), pre[item.key()]));
    }
  }
  CHECK(body > 10);
  CHECK(heads_moved >= 1);
  CHECK_THAT((*b)->result_extra(), Catch::Contains("charts"));
  spec["model"]["pretrained"] = "nothing-here";
  CHECK(make_trainer(spec, paths, 1, false).error().code == errc::not_found);
}

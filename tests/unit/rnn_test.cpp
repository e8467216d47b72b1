// The RNN trainer (trainers/rnn_trainer.hpp) on small subsets of Debian's
// fortunes: hyper-parameter checks, the byte-level LM with truncated BPTT
// (loss falls, perplexity below uniform, the carried and detached hidden
// state, clipping, sampling, checkpoint resume with the state), packed
// classification, and the export of the weights.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "datasets/registry.hpp"
#include "tensor_files.hpp"
#include "trainers/rnn_trainer.hpp"
#include "trainers/trainer.hpp"

#undef CHECK
#define CHECK(...) INTERNAL_CATCH_TEST("CHECK", Catch::ResultDisposition::ContinueOnFailure, __VA_ARGS__)

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace rookery;
using namespace rookery::train;
using rookery::test::temp_dir;

namespace {

data::dataset_info fortunes() {
  static temp_dir data("rookery_rnn_data_");
  data::dataset_paths paths;
  paths.data_dir = data.path.string();
  auto ds = data::find_dataset(paths, "fortunes", 0, false);
  REQUIRE(ds.ok());
  REQUIRE(ds->available);
  return ds.value();
}

// A small LM: ~150 fortunes, 8 streams of 32-byte chunks, a 64-unit LSTM.
json lm_hyper() {
  return {{"task", "lm"},      {"cell", "lstm"},     {"hidden", 64},   {"embed_dim", 32},
          {"batch_size", 8},   {"bptt", 32},         {"lr", 3e-3},     {"limit_train", 150},
          {"limit_test", 30},  {"seed", 7},          {"sample_chars", 120}};
}

std::unique_ptr<RnnTrainer> make(const json& hyper, uint64_t init_seed = 0) {
  json spec = {{"trainer", "rnn"}, {"dataset", "fortunes"}, {"hyper", hyper}};
  auto t = make_rnn_trainer(spec, fortunes());
  REQUIRE(t.ok());
  std::unique_ptr<RnnTrainer> r(dynamic_cast<RnnTrainer*>(t.value().release()));
  REQUIRE(r);
  torch::manual_seed(init_seed ? init_seed : r->hyper().seed);
  auto st = r->setup();
  INFO((st ? std::string() : st.error().message));
  REQUIRE(st.ok());
  r->train_mode();
  return r;
}

// Global step g as (epoch, index).
metrics step(Trainer& t, int64_t g) {
  const auto spe = t.steps_per_epoch();
  return t.train_step(g / spe, g % spe);
}

double mean(const std::vector<double>& v, size_t from, size_t n) {
  return std::accumulate(v.begin() + from, v.begin() + from + n, 0.0) / static_cast<double>(n);
}

torch::Tensor flat_params(torch::nn::Module& m) {
  std::vector<torch::Tensor> ps;
  for (const auto& p : m.parameters())
    ps.push_back(p.detach().flatten().clone());
  return torch::cat(ps);
}

std::string save_module(torch::nn::Module& m) {
  torch::serialize::OutputArchive ar;
  m.save(ar);
  std::ostringstream out;
  ar.save_to(out);
  return out.str();
}

std::string save_optimizer(torch::optim::Optimizer& o) {
  torch::serialize::OutputArchive ar;
  o.save(ar);
  std::ostringstream out;
  ar.save_to(out);
  return out.str();
}

void load_module(torch::nn::Module& m, const std::string& bytes) {
  std::istringstream in(bytes);
  torch::serialize::InputArchive ar;
  ar.load_from(in);
  m.load(ar);
}

void load_optimizer(torch::optim::Optimizer& o, const std::string& bytes) {
  std::istringstream in(bytes);
  torch::serialize::InputArchive ar;
  ar.load_from(in);
  o.load(ar);
}

failure make_error(const json& hyper, const data::dataset_info& ds) {
  json spec = {{"trainer", "rnn"}, {"dataset", ds.name}, {"hyper", hyper}};
  auto t = make_rnn_trainer(spec, ds);
  REQUIRE_FALSE(t.ok());
  return t.error();
}

} // namespace

TEST_CASE("rnn trainer: bad hyper-parameters and data sets are bad_request naming the key",
          "[trainers]") {
  const auto ds = fortunes();
  struct bad {
    json hyper;
    std::string key;
  };
  const std::vector<bad> cases{
    {{{"task", "translate"}}, "hyper.task"},
    {{{"cell", "rnn"}}, "hyper.cell"},
    {{{"hidden", 0}}, "hyper.hidden"},
    {{{"hidden", "big"}}, "hyper.hidden"},
    {{{"layers", -1}}, "hyper.layers"},
    {{{"embed_dim", 2.5}}, "hyper.embed_dim"},
    {{{"bptt", 1}}, "hyper.bptt"},
    {{{"max_len", 0}}, "hyper.max_len"},
    {{{"dropout", 1.0}}, "hyper.dropout"},
    {{{"bidirectional", "yes"}}, "hyper.bidirectional"},
    {{{"task", "lm"}, {"bidirectional", true}}, "hyper.bidirectional"},
    {{{"classes", "zippy"}}, "hyper.classes"},
    {{{"classes", {"zippy", "no-such-category"}}}, "hyper.classes"},
    {{{"task", "classify"}, {"classes", {"zippy"}}}, "hyper.classes"},
    {{{"sample_temperature", -1}}, "hyper.sample_temperature"},
  };
  for (const auto& c : cases) {
    INFO(c.hyper.dump());
    auto f = make_error(c.hyper, ds);
    CHECK(f.code == errc::bad_request);
    CHECK(f.message.find(c.key) != std::string::npos);
  }
  // The common keys go through parse_hyper.
  CHECK(make_error({{"batch_size", 0}}, ds).code == errc::bad_request);

  auto images = ds;
  images.name = "fashion-mnist";
  images.kind = "image_classification";
  auto f = make_error(json::object(), images);
  CHECK(f.code == errc::bad_request);
  CHECK(f.message.find("text_classification") != std::string::npos);

  // Clipping: 1.0 by default for RNNs, the job's value (0 = off) otherwise.
  json spec = {{"trainer", "rnn"}, {"dataset", "fortunes"}, {"hyper", json::object()}};
  auto t = make_rnn_trainer(spec, ds);
  REQUIRE(t.ok());
  CHECK(t.value()->hyper().clip_grad_norm == 1.0);
  CHECK(t.value()->kind() == "rnn");
  spec["hyper"]["clip_grad_norm"] = 0;
  t = make_rnn_trainer(spec, ds);
  REQUIRE(t.ok());
  CHECK(t.value()->hyper().clip_grad_norm == 0.0);
}

TEST_CASE("rnn lm: loss falls, perplexity below uniform, samples, export", "[trainers]") {
  auto t = make(lm_hyper());
  const int64_t spe = t->steps_per_epoch();
  CHECK(spe == (t->stream_len() - 1) / 32);
  REQUIRE(spe >= 20);

  std::vector<double> losses;
  for (int64_t g = 0; g < 80; ++g) {
    auto m = step(*t, g);
    REQUIRE(m.count("loss"));
    REQUIRE(m.count("ppl"));
    CHECK(m["ppl"] == Approx(std::exp(m["loss"])));
    losses.push_back(m["loss"]);
  }
  const double first = mean(losses, 0, 5), last = mean(losses, losses.size() - 5, 5);
  INFO("first 5 steps " << first << " nats/char, last 5 " << last);
  CHECK(last < first - 0.5);

  auto v = t->validate();
  REQUIRE(v.count("val_loss"));
  REQUIRE(v.count("val_ppl"));
  INFO("val_loss " << v["val_loss"] << " val_ppl " << v["val_ppl"]);
  CHECK(std::isfinite(v["val_ppl"]));
  CHECK(v["val_ppl"] < 256.0 / 4); // a quarter of uniform over bytes
  CHECK(v["val_ppl"] == Approx(std::exp(v["val_loss"])));

  // Sampling: n bytes, a function of the seed; the model's mode is kept.
  auto a = t->sample("The ", 60, 0.8, 123);
  auto b = t->sample("The ", 60, 0.8, 123);
  auto c = t->sample("The ", 60, 0.8, 124);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  REQUIRE(c.ok());
  CHECK(a.value().size() == 60);
  CHECK(a.value() == b.value());
  CHECK(a.value() != c.value());
  CHECK(t->model()->is_training());
  auto greedy1 = t->sample("", 30, 0, 1), greedy2 = t->sample("", 30, 0, 2);
  REQUIRE(greedy1.ok());
  CHECK(greedy1.value() == greedy2.value());
  CHECK(t->sample("x", -1, 1, 1).error().code == errc::bad_request);

  temp_dir dir("rookery_rnn_art_");
  auto files = t->epoch_artifacts(1, dir.path.string());
  REQUIRE(files.size() == 1);
  CHECK(files[0] == "sample_epoch1.txt");
  std::ifstream in(dir.path / files[0], std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(text.size() == 120);
  // Same seed and prefix every epoch.
  CHECK(text == t->sample("", 120, 0.8, 7).value());

  // Export: not servable, but the weights and configuration are written.
  auto ex = t->export_model((dir.path / "model").string());
  REQUIRE_FALSE(ex.ok());
  CHECK(ex.error().code == errc::unprocessable);
  REQUIRE(fs::exists(dir.path / "model" / "model.pt"));
  REQUIRE(fs::exists(dir.path / "model" / "rnn.json"));
  std::ifstream cfg_in(dir.path / "model" / "rnn.json");
  auto cfg = json::parse(cfg_in);
  CHECK(cfg["task"] == "lm");
  CHECK(cfg["hidden"] == 64);
  CHECK(cfg["vocab"]["size"] == 256);
  CharRnn loaded(t->model()->options());
  torch::load(loaded, (dir.path / "model" / "model.pt").string());
  t->model()->eval();
  loaded->eval();
  auto x = torch::randint(0, 256, {2, 10}, torch::kLong);
  torch::NoGradGuard ng;
  CHECK(torch::equal(loaded->forward(x, loaded->initial_state(2)).first,
                     t->model()->forward(x, t->model()->initial_state(2)).first));
}

TEST_CASE("rnn lm: the hidden state is carried across chunks and detached", "[trainers]") {
  auto t = make(lm_hyper());
  CHECK(t->carried_state().h.abs().sum().item<double>() == 0);
  t->train_step(0, 0);
  auto s = t->carried_state();
  REQUIRE(s.h.defined());
  REQUIRE(s.c.defined());
  CHECK(s.h.sizes() == torch::IntArrayRef({1, 8, 64}));
  CHECK(s.h.abs().sum().item<double>() > 0);
  CHECK(s.c.abs().sum().item<double>() > 0);
  // Detached: the next chunk's backward cannot reach into this one's graph.
  CHECK_FALSE(s.h.requires_grad());
  CHECK_FALSE(s.h.grad_fn());
  CHECK_FALSE(s.c.grad_fn());
  // Backward through step 1 would throw if the state still led into step 0's
  // freed graph.
  for (int64_t i = 1; i < 20; ++i)
    REQUIRE(std::isfinite(t->train_step(0, i)["loss"]));
  const auto after19 = flat_params(*t->model());
  const double carried = t->train_step(0, 20)["loss"];

  // The same model and chunk from a zero state: a different loss, so the
  // carried state is really used.
  auto u = make(lm_hyper());
  for (int64_t i = 0; i < 20; ++i)
    u->train_step(0, i);
  REQUIRE(torch::equal(flat_params(*u->model()), after19));
  u->reset_state();
  CHECK(u->carried_state().h.abs().sum().item<double>() == 0);
  const double fresh = u->train_step(0, 20)["loss"];
  INFO("carried " << carried << " fresh " << fresh);
  CHECK(std::abs(carried - fresh) > 1e-3);

  // A new epoch starts from zeros, whatever was carried before.
  auto w = make(lm_hyper());
  w->train_step(0, 0);
  CHECK(w->carried_state().h.abs().sum().item<double>() > 0);
  w->train_step(1, 0);
  auto x = make(lm_hyper());
  x->train_step(0, 0);
  x->reset_state();
  x->train_step(1, 0);
  CHECK(torch::equal(flat_params(*w->model()), flat_params(*x->model())));

  // GRUs carry h only.
  auto hyper = lm_hyper();
  hyper["cell"] = "gru";
  auto g = make(hyper);
  g->train_step(0, 0);
  auto gs = g->carried_state();
  CHECK(gs.h.abs().sum().item<double>() > 0);
  CHECK_FALSE(gs.c.defined());
  CHECK(std::isfinite(g->train_step(0, 1)["loss"]));
}

TEST_CASE("rnn lm: gradient clipping bounds the update", "[trainers]") {
  auto hyper = lm_hyper();
  hyper["optimizer"] = "sgd";
  hyper["momentum"] = 0;
  hyper["lr"] = 0.5;
  hyper["clip_grad_norm"] = 1e-3;
  auto t = make(hyper);
  const auto before = flat_params(*t->model());
  auto m = t->train_step(0, 0);
  REQUIRE(m.count("grad_norm"));
  INFO("grad norm " << m["grad_norm"]);
  CHECK(m["grad_norm"] > 1e-3);
  // SGD without momentum moves by lr * (clipped gradient): at most lr * clip.
  const double moved = (flat_params(*t->model()) - before).norm().item<double>();
  INFO("update norm " << moved);
  CHECK(moved > 0);
  CHECK(moved <= 0.5 * 1e-3 * 1.001);

  // Without clipping the same step moves far more.
  hyper["clip_grad_norm"] = 0;
  auto u = make(hyper);
  u->train_step(0, 0);
  CHECK((flat_params(*u->model()) - before).norm().item<double>() > 10 * moved);
}

TEST_CASE("rnn lm: a resumed run continues with the identical carried state", "[trainers]") {
  const auto hyper = lm_hyper();
  auto a = make(hyper);
  std::vector<double> straight;
  for (int64_t g = 0; g < 10; ++g)
    straight.push_back(step(*a, g)["loss"]);

  auto b = make(hyper);
  for (int64_t g = 0; g < 5; ++g)
    CHECK(step(*b, g)["loss"] == straight[static_cast<size_t>(g)]);
  REQUIRE(b->modules().count("model"));
  REQUIRE(b->modules().count("state"));
  REQUIRE(b->optimizers().count("optimizer"));
  const auto model = save_module(*b->modules()["model"]);
  const auto state = save_module(*b->modules()["state"]);
  const auto opt = save_optimizer(*b->optimizers()["optimizer"]);

  // A fresh trainer (other initial weights) restored from the checkpoint.
  auto c = make(hyper, 999);
  load_module(*c->modules()["model"], model);
  load_module(*c->modules()["state"], state);
  load_optimizer(*c->optimizers()["optimizer"], opt);
  for (int64_t g = 5; g < 10; ++g) {
    INFO("step " << g);
    CHECK(step(*c, g)["loss"] == Approx(straight[static_cast<size_t>(g)]).epsilon(1e-6));
  }
  CHECK(torch::allclose(flat_params(*c->model()), flat_params(*a->model()), 1e-6, 1e-7));

  // Without the state the resumed run starts step 5 from zeros: it differs.
  auto d = make(hyper, 999);
  load_module(*d->modules()["model"], model);
  load_optimizer(*d->optimizers()["optimizer"], opt);
  const double without = step(*d, 5)["loss"];
  INFO("with state " << straight[5] << " without " << without);
  CHECK(std::abs(without - straight[5]) > 1e-5);
}

TEST_CASE("rnn classify: packed sequences ignore padding; loss falls on three categories",
          "[trainers]") {
  // The classification of a text must not depend on the batch's padding,
  // for both cells and both directions.
  for (const std::string cell : {"lstm", "gru"}) {
    for (bool bidir : {false, true}) {
      INFO(cell << (bidir ? " bidirectional" : ""));
      torch::manual_seed(3);
      CharRnn m(CharRnnOptions().cell(cell).hidden(16).embed_dim(8).layers(2).bidirectional(
        bidir).outputs(3));
      m->eval();
      torch::NoGradGuard ng;
      auto x = torch::randint(1, 256, {2, 12}, torch::kLong);
      x[0].narrow(0, 5, 7).fill_(0);
      auto both = m->classify(x, torch::tensor({5, 12}, torch::kLong));
      auto alone = m->classify(x[0].narrow(0, 0, 5).unsqueeze(0), torch::tensor({5}, torch::kLong));
      CHECK(torch::allclose(both[0], alone[0], 1e-5, 1e-6));
      auto other = x.clone();
      other[0].narrow(0, 5, 7).fill_(77); // different padding bytes
      CHECK(torch::allclose(m->classify(other, torch::tensor({5, 12}, torch::kLong)), both, 1e-5,
                            1e-6));
    }
  }

  json hyper = {{"task", "classify"}, {"cell", "gru"},        {"hidden", 64},
                {"embed_dim", 32},    {"batch_size", 16},     {"max_len", 96},
                {"lr", 3e-3},         {"limit_train", 240},   {"limit_test", 60},
                {"seed", 11},         {"bidirectional", true},
                {"classes", {"zippy", "definitions", "startrek"}}};
  auto t = make(hyper);
  CHECK(t->classes() == std::vector<std::string>{"zippy", "definitions", "startrek"});
  CHECK(t->steps_per_epoch() == 15);
  CHECK(t->modules().count("state") == 0);
  auto v0 = t->validate();
  std::vector<double> losses;
  for (int64_t g = 0; g < 45; ++g) {
    auto m = step(*t, g);
    REQUIRE(m.count("acc"));
    CHECK(m["acc"] >= 0);
    CHECK(m["acc"] <= 1);
    losses.push_back(m["loss"]);
  }
  const double first = mean(losses, 0, 5), last = mean(losses, losses.size() - 5, 5);
  auto v = t->validate();
  INFO("first 5 " << first << " last 5 " << last << "; val_loss " << v0["val_loss"] << " -> "
                  << v["val_loss"] << ", val_acc " << v0["val_acc"] << " -> " << v["val_acc"]);
  CHECK(last < first);
  CHECK(v["val_loss"] < v0["val_loss"]);
  CHECK(v["val_acc"] >= 0);
  CHECK(v["val_acc"] <= 1);
  CHECK(t->epoch_artifacts(1, "/nonexistent").empty());
  CHECK(t->sample("a", 3, 1, 1).error().code == errc::unprocessable);
}

TEST_CASE("rnn lm through fit: artifacts, export, and a resume equal to the straight run",
          "[trainers]") {
  data::dataset_paths paths;
  static temp_dir data("rookery_rnn_fit_data_");
  paths.data_dir = data.path.string();
  auto hyper = lm_hyper();
  hyper["limit_train"] = 60;
  hyper["limit_test"] = 15;
  hyper["epochs"] = 2;
  hyper["log_every"] = 5;
  hyper["sample_chars"] = 40;
  const auto spec = [&](int64_t max_steps) {
    auto h = hyper;
    h["max_steps"] = max_steps;
    return json{{"trainer", "rnn"}, {"dataset", "fortunes"}, {"hyper", h}};
  };
  auto run = [&](const json& s, const fs::path& dir) {
    auto t = make_trainer(s, paths, 0, false);
    INFO((t ? std::string() : t.error().message));
    REQUIRE(t.ok());
    CHECK(t.value()->kind() == "rnn");
    run_context ctx;
    ctx.dir = dir.string();
    auto r = fit(*t.value(), ctx);
    INFO((r ? std::string() : r.error().message));
    REQUIRE(r.ok());
    return r.value();
  };

  // The straight run: one full epoch and 6 steps of the second.
  temp_dir straight_dir("rookery_rnn_fit_");
  auto probe = make_rnn_trainer(spec(0), fortunes());
  REQUIRE(probe.ok());
  torch::manual_seed(7);
  REQUIRE(probe.value()->setup().ok());
  const int64_t spe = probe.value()->steps_per_epoch();
  REQUIRE(spe > 6);
  const int64_t total = spe + 6;
  auto straight = run(spec(total), straight_dir.path);
  CHECK(straight.outcome == "max_steps");
  CHECK(straight.steps == total);
  REQUIRE(straight.final_metrics.count("val_ppl"));
  CHECK(std::isfinite(straight.final_metrics["val_ppl"]));
  CHECK_FALSE(straight.model.has_value()); // not servable...
  const auto& arts = straight.artifacts;
  for (const std::string a : {"artifacts/sample_epoch1.txt", "model/model.pt", "model/rnn.json"}) {
    INFO(a);
    CHECK(std::find(arts.begin(), arts.end(), a) != arts.end()); // ...but downloadable
    CHECK(fs::exists(straight_dir.path / a));
  }

  // The same run cut at step spe + 2 (mid-epoch, the state carried) and resumed.
  temp_dir cut_dir("rookery_rnn_fit_");
  auto first = run(spec(spe + 2), cut_dir.path);
  CHECK(first.steps == spe + 2);
  auto resumed = run(spec(total), cut_dir.path);
  CHECK(resumed.resumed);
  CHECK(resumed.resumed_from_step == spe + 2);
  CHECK(resumed.steps == total);
  INFO("straight loss " << straight.final_metrics["loss"] << " val_loss "
                        << straight.final_metrics["val_loss"] << "; resumed "
                        << resumed.final_metrics["loss"] << " "
                        << resumed.final_metrics["val_loss"]);
  CHECK(resumed.final_metrics["loss"] == Approx(straight.final_metrics["loss"]).epsilon(1e-6));
  CHECK(resumed.final_metrics["val_loss"] ==
        Approx(straight.final_metrics["val_loss"]).epsilon(1e-6));
}

// The text half of ULMFiT: the byte-level BPE tokenizer, the AWD-LSTM and its
// heads, the text block, WordNet as a data set, and the text trainer under
// fit() (language model, classifier with gradual unfreezing, resume, export,
// the served embedding).
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "datasets/datasets.hpp"
#include "datasets/detail.hpp"
#include "datasets/registry.hpp"
#include "models/text_nets.hpp"
#include "trainers/blocks.hpp"
#include "trainers/text_trainer.hpp"
#include "trainers/trainer.hpp"
#include "unit/tensor_files.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace rookery;

namespace {

data::dataset_paths paths_in(const fs::path& dir) {
  data::dataset_paths p;
  p.data_dir = dir.string();
  return p;
}

std::vector<std::string> small_corpus() {
  std::vector<std::string> out;
  const char* words[] = {"the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to",
                         "house", "garden", "quickly", "slowly", "under", "tree", "bird", "sang"};
  for (int i = 0; i < 600; ++i) {
    std::string s;
    for (int k = 0; k < 8; ++k)
      s += std::string(k ? " " : "") + words[(i * 7 + k * 5 + i / 3) % 18];
    out.push_back(s + ".");
  }
  return out;
}

bool fortunes_installed() { return fs::exists("/usr/share/games/fortunes/computers"); }
bool wordnet_installed() { return fs::exists("/usr/share/wordnet/data.noun"); }

} // namespace

TEST_CASE("the BPE tokenizer trains deterministically, round-trips any bytes and bounds its vocabulary",
          "[text]") {
  auto corpus = small_corpus();
  auto a = text::subword_tokenizer::train(corpus, 400);
  REQUIRE(a);
  auto b = text::subword_tokenizer::train(corpus, 400);
  REQUIRE(b);
  CHECK(a->bytes() == b->bytes()); // the same corpus, the same merges
  CHECK(a->vocab_size() <= 400);
  CHECK(a->vocab_size() > 270);
  auto ids = a->encode("the cat sat on a mat.");
  CHECK(ids.size() <= 7); // whole words are single pieces after training on them
  for (auto i : ids)
    CHECK((i >= 4 && i < a->vocab_size()));
  CHECK(a->decode(ids) == "the cat sat on a mat.");
  // Bytes that are not UTF-8 and unseen characters still encode (bytes are pieces).
  const std::string odd_text = "caf\xe9 \xff\xfe zebra";
  auto odd = a->encode(odd_text);
  CHECK(a->decode(odd) == odd_text);
  CHECK(a->encode("  leading and\n\ttrailing  ") == a->encode("leading and trailing"));
  // Round trip through its serialized form.
  test::temp_dir tmp("rookery_spm_");
  REQUIRE(a->save((tmp.path / "tokenizer.bpe").string()));
  auto c = text::subword_tokenizer::load((tmp.path / "tokenizer.bpe").string());
  REQUIRE(c);
  CHECK(c->encode("the dog ran") == a->encode("the dog ran"));
  // Refusals.
  CHECK(text::subword_tokenizer::train({}, 400).error().code == errc::bad_request);
  CHECK(text::subword_tokenizer::train(corpus, 10).error().code == errc::bad_request);
  CHECK(text::subword_tokenizer::from_bytes("not a model").error().code == errc::unprocessable);
  CHECK(text::subword_tokenizer::from_bytes("rookery-bpe 1\n4 900\n").error().code == errc::unprocessable);
}

TEST_CASE("AWD-LSTM: weight-dropped LSTMs, embedding dropout, a decoder tied to the embedding",
          "[text]") {
  torch::manual_seed(0);
  text::awd_options o;
  o.vocab = 50;
  o.emb = 8;
  o.hidden = 12;
  o.layers = 3;
  text::LanguageModel lm(o);
  auto names = lm->named_parameters();
  CHECK(names.contains("encoder.encoder.weight"));
  CHECK(names.contains("encoder.rnns.0.weight_hh_l0_raw"));
  CHECK(names.contains("encoder.rnns.2.weight_ih_l0"));
  CHECK(names.contains("decoder.bias"));
  CHECK(names["encoder.rnns.0.weight_ih_l0"].sizes() == torch::IntArrayRef{48, 8});  // 4 x hidden, emb
  CHECK(names["encoder.rnns.2.weight_hh_l0_raw"].sizes() == torch::IntArrayRef{32, 8}); // last layer: emb wide
  // Tied: the decoder has no weight of its own.
  int64_t n = 0;
  for (auto& p : lm->parameters())
    n += p.numel();
  int64_t expect = 50 * 8 + 50;
  for (auto [in, out] : {std::pair<int64_t, int64_t>{8, 12}, {12, 12}, {12, 8}})
    expect += 4 * out * (in + out) + 8 * out;
  CHECK(n == expect);

  auto x = torch::randint(4, 50, {3, 7}, torch::kLong);
  lm->eval();
  auto [y1, s1] = lm->forward(x);
  auto [y2, s2] = lm->forward(x);
  CHECK(y1.sizes() == torch::IntArrayRef{3, 7, 50});
  CHECK(torch::equal(y1, y2)); // eval: no dropout
  REQUIRE(s1.size() == 3);
  CHECK(s1[2].first.sizes() == torch::IntArrayRef{1, 3, 8});
  // Carrying the state = running the whole sequence at once.
  auto [ya, sa] = lm->forward(x.slice(1, 0, 4));
  auto [yb, sb] = lm->forward(x.slice(1, 4, 7), sa);
  CHECK(torch::allclose(yb, y1.slice(1, 4, 7), 1e-5, 1e-6));
  lm->train();
  auto [t1, u1] = lm->forward(x);
  auto [t2, u2] = lm->forward(x);
  CHECK(!torch::equal(t1, t2)); // training: weight drop and the variational masks differ
  // The loss reaches the embedding through the tied decoder and the input.
  auto loss = t1.sum();
  loss.backward();
  CHECK(names["encoder.encoder.weight"].grad().abs().sum().item<double>() > 0);

  CHECK_THAT(text::awd_options::from_json(json{{"emb", 0}}).error().message, Catch::Contains("model.options.emb"));
  CHECK_THAT(text::awd_options::from_json(json{{"dropout", 0.1}}).error().message,
             Catch::Contains("model.options.dropout"));
  CHECK(text::awd_options::from_json(json{{"weight_p", 1.0}}).error().code == errc::bad_request);
}

TEST_CASE("concat pooling reads only the real tokens, so padding changes nothing", "[text]") {
  torch::manual_seed(1);
  text::awd_options o;
  o.vocab = 30;
  o.emb = 6;
  o.hidden = 10;
  text::TextClassifier clf(o, 3);
  clf->eval();
  auto a = torch::randint(4, 30, {1, 5}, torch::kLong);
  auto padded = torch::cat({a, torch::zeros({1, 4}, torch::kLong)}, 1);
  auto fa = clf->features(a, torch::tensor({int64_t{5}}));
  auto fp = clf->features(padded, torch::tensor({int64_t{5}}));
  CHECK(fa.sizes() == torch::IntArrayRef{1, 48}); // 3 x (hidden 10 + emb 6): every layer's outputs
  CHECK(torch::allclose(fa, fp, 1e-6, 1e-6));
  // [last, max, mean] of known rows.
  auto h = torch::tensor({{1.f, -1.f}, {3.f, 2.f}, {100.f, 100.f}}).unsqueeze(0);
  auto p = text::concat_pool(h, torch::tensor({int64_t{2}}));
  CHECK(torch::allclose(p, torch::tensor({{3.f, 2.f, 3.f, 2.f, 2.f, 0.5f}})));
  auto q = text::concat_pool(h, torch::tensor({int64_t{2}}), false);
  CHECK(torch::allclose(q, torch::tensor({{3.f, 2.f, 2.f, 0.5f}})));
}

TEST_CASE("text blocks that do not suit the data set are a 400 naming both", "[text][trainers]") {
  data::dataset_info fortunes;
  fortunes.name = "fortunes";
  fortunes.kind = "text_classification";
  fortunes.classes = {"art", "computers"};
  data::dataset_info sc;
  sc.name = "synthetic-control";
  sc.kind = "series_classification";
  auto t = train::parse_text_task(json::object(), fortunes);
  REQUIRE(t);
  CHECK(t->target == "label");
  CHECK(t->input.vocab == 4000);
  CHECK(t->classes.size() == 2);
  auto lm = train::parse_text_task(json{{"task", {{"target", {{"block", "lm"}}}, {"input", {{"max_len", 64}}}}}}, fortunes);
  REQUIRE(lm);
  CHECK(lm->target == "lm");
  CHECK(lm->input.max_len == 64);
  auto e1 = train::parse_text_task(json::object(), sc).error().message;
  CHECK_THAT(e1, Catch::Contains("synthetic-control"));
  CHECK_THAT(e1, Catch::Contains("text_classification"));
  auto e2 = train::parse_text_task(json{{"task", {{"input", {{"block", "timeseries"}}}}}}, fortunes).error().message;
  CHECK_THAT(e2, Catch::Contains("timeseries"));
  CHECK_THAT(e2, Catch::Contains("fortunes"));
  auto e3 = train::parse_text_task(json{{"task", {{"target", {{"block", "continuous"}}}}}}, fortunes).error().message;
  CHECK_THAT(e3, Catch::Contains("continuous"));
  CHECK_THAT(e3, Catch::Contains("fortunes"));
  CHECK_THAT(train::parse_text_task(json{{"task", {{"input", {{"vocab", 5}}}}}}, fortunes).error().message,
             Catch::Contains("task.input.vocab"));
  CHECK_THAT(train::parse_text_task(json{{"task", {{"input", {{"lenght", 5}}}}}}, fortunes).error().message,
             Catch::Contains("task.input.lenght"));
}

TEST_CASE("WordNet's synsets read as lemma: gloss texts labelled by part of speech", "[text][datasets]") {
  test::temp_dir tmp("rookery_wn_");
  {
    std::ofstream f(tmp.path / "data.noun");
    f << "  1 This software and database is being provided to you, the LICENSEE, by  \n"
         "  2 Princeton University under the following license.\n"
         "02084071 05 n 03 dog 0 domestic_dog 0 Canis_familiaris 0 023 @ 02083346 n 0000 | a member of the "
         "genus Canis; \"the dog barked all night\"  \n"
         "00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 | that which is perceived or known  \n";
    std::ofstream g(tmp.path / "data.adj");
    g << "00001740 00 a 01 able(a) 0 005 = 05207437 n 0000 | (usually followed by `to') having the necessary means  \n";
  }
  auto c = data::detail::read_wordnet(tmp.path.string());
  REQUIRE(c);
  REQUIRE(c->texts.size() == 3);
  CHECK(c->texts[0] == "able: (usually followed by `to') having the necessary means");
  CHECK(c->labels[0] == 0); // adj
  CHECK(c->texts[1] == "dog, domestic dog, Canis familiaris: a member of the genus Canis; \"the dog barked all night\"");
  CHECK(c->labels[1] == 2); // noun
  CHECK(data::detail::read_wordnet((tmp.path / "none").string()).error().code == errc::not_found);
  if (wordnet_installed()) {
    data::dataset_paths p;
    auto d = data::find_dataset(p, "wordnet", 0, false);
    REQUIRE(d);
    CHECK(d->available);
    CHECK(d->train_size + d->test_size > 100000);
  }
}

TEST_CASE("the text trainer: an LM, then a classifier fine-tuned from it with gradual unfreezing",
          "[text][trainers]") {
  INFO("needs Debian's fortunes (scripts/setup.sh installs it)");
  REQUIRE(fortunes_installed());
  test::temp_dir tmp("rookery_text_");
  auto paths = paths_in(tmp.path);
  json lm_spec{{"trainer", "text"}, {"dataset", "fortunes"},
               {"task", {{"input", {{"vocab", 360}}}, {"target", {{"block", "lm"}}}}},
               {"model", {{"arch", "awd_lstm"}, {"options", {{"emb", 16}, {"hidden", 24}}}}},
               {"hyper", {{"epochs", 1}, {"batch_size", 8}, {"bptt", 16}, {"lr", 3e-3},
                          {"limit_train", 150}, {"limit_test", 30}, {"max_steps", 12}}}};
  auto t = train::make_trainer(lm_spec, paths, 1, false);
  REQUIRE(t);
  train::run_context ctx;
  ctx.dir = (tmp.path / "lm").string();
  auto r = train::fit(**t, ctx);
  REQUIRE(r);
  CHECK(r->final_metrics.count("val_perplexity"));
  CHECK(r->final_metrics["val_perplexity"] > 1);
  CHECK(r->final_metrics["val_perplexity"] < 360); // below the uniform 360 after 12 steps
  REQUIRE(r->model);
  CHECK(r->model->what == train::serves::text_embedding);
  CHECK(r->model->dim == 80); // [max, mean] of both layers: 2 x (24 + 16)
  const auto model_dir = fs::path(ctx.dir) / "model";
  CHECK(fs::exists(model_dir / "tokenizer.bpe"));
  auto m = text::load_text_model(model_dir.string());
  REQUIRE(m);
  CHECK((*m)->task == "lm");
  auto v1 = text::embed_text(**m, "A computer is a machine.");
  auto v2 = text::embed_text(**m, "A computer is a machine.");
  CHECK(v1.size() == 80);
  CHECK(v1 == v2);
  CHECK(text::embed_text(**m, "").size() == 80);

  // Register it as a text model and fine-tune a classifier from it.
  fs::create_directories(tmp.path / "text-models");
  fs::copy(model_dir, tmp.path / "text-models" / "tiny-lm", fs::copy_options::recursive);
  json clf_spec{{"trainer", "text"}, {"dataset", "fortunes"},
                {"model", {{"arch", "awd_lstm"}, {"pretrained", "tiny-lm"}}},
                {"task", {{"input", {{"max_len", 48}}}}},
                {"hyper", {{"epochs", 3}, {"batch_size", 16}, {"limit_train", 96}, {"limit_test", 32},
                           {"lr", 1e-2}}}};
  auto c = train::make_trainer(clf_spec, paths, 1, false);
  REQUIRE(c);
  // Gradual unfreezing: the embedding must not move in epoch 1 (only the head trains).
  train::run_context cctx;
  cctx.dir = (tmp.path / "clf").string();
  REQUIRE((*c)->setup());
  auto emb_before = (*c)->modules().at("model")->named_parameters()["encoder.encoder.weight"].clone();
  auto head_before = (*c)->modules().at("model")->named_parameters()["head.3.weight"].clone();
  (*c)->train_mode();
  (*c)->train_step(0, 0);
  auto now = (*c)->modules().at("model")->named_parameters();
  CHECK(torch::equal(now["encoder.encoder.weight"], emb_before));
  CHECK(!torch::equal(now["head.3.weight"], head_before));
  // The pretrained encoder's weights were copied in.
  auto lm_w = (*m)->lm->named_parameters()["encoder.rnns.0.weight_ih_l0"];
  CHECK(torch::equal(now["encoder.rnns.0.weight_ih_l0"], lm_w));
  // Discriminative LRs: group k from the top at lr / 2.6^k.
  auto& groups = (*c)->optimizers().at("opt")->param_groups();
  REQUIRE(groups.size() == 4); // head, rnns.1, rnns.0, embedding
  CHECK(groups[3].options().get_lr() == Approx(1e-2 / std::pow(2.6, 3)));

  auto c2 = train::make_trainer(clf_spec, paths, 1, false);
  REQUIRE(c2);
  auto rc = train::fit(**c2, cctx);
  REQUIRE(rc);
  CHECK(rc->final_metrics.count("val_acc"));
  CHECK_THAT(rc->model ? std::string("ok") : std::string("none"), Catch::Contains("ok"));
  auto cm = text::load_text_model((fs::path(cctx.dir) / "model").string());
  REQUIRE(cm);
  CHECK((*cm)->task == "classify");
  CHECK((*cm)->classes.size() > 10);
  CHECK(text::embed_text(**cm, "hello").size() == 80);

  // Refusals, before anything loads.
  auto bad = clf_spec;
  bad["model"]["pretrained"] = "no-such-lm";
  CHECK(train::make_trainer(bad, paths, 1, false).error().code == errc::not_found);
  bad = clf_spec;
  bad["model"]["options"] = {{"emb", 32}};
  CHECK_THAT(train::make_trainer(bad, paths, 1, false).error().message, Catch::Contains("drop_mult"));
  bad = clf_spec;
  bad["model"] = "inception_time";
  CHECK(train::make_trainer(bad, paths, 1, false).error().code == errc::bad_request);
}

TEST_CASE("a text LM run resumed from a checkpoint ends in the identical state", "[text][trainers]") {
  INFO("needs Debian's fortunes (scripts/setup.sh installs it)");
  REQUIRE(fortunes_installed());
  test::temp_dir a_dir("rookery_txres_a_"), b_dir("rookery_txres_b_");
  json spec{{"trainer", "text"}, {"dataset", "fortunes"},
            {"task", {{"input", {{"vocab", 300}}}, {"target", {{"block", "lm"}}}}},
            {"model", {{"arch", "awd_lstm"}, {"options", {{"emb", 8}, {"hidden", 12}}}}},
            {"hyper", {{"epochs", 1}, {"batch_size", 4}, {"bptt", 8}, {"checkpoint_every", 3},
                       {"limit_train", 40}, {"limit_test", 10}, {"max_steps", 8}}}};
  auto paths = paths_in(a_dir.path);
  auto a = train::make_trainer(spec, paths, 1, false);
  REQUIRE(a);
  train::run_context ca;
  ca.dir = a_dir.path.string();
  REQUIRE(train::fit(**a, ca));
  int calls = 0;
  {
    auto b = train::make_trainer(spec, paths, 1, false);
    train::run_context cb;
    cb.dir = b_dir.path.string();
    cb.cancelled = [&calls] { return ++calls > 4; }; // polled before steps 1..4; cancel at step 5 (after the step-3 checkpoint)
    auto r = train::fit(**b, cb);
    REQUIRE(r);
    CHECK(r->outcome == "cancelled");
  }
  auto b2 = train::make_trainer(spec, paths, 1, false);
  train::run_context cb2;
  cb2.dir = b_dir.path.string();
  auto r = train::fit(**b2, cb2);
  REQUIRE(r);
  CHECK(r->resumed);
  auto pa = (*a)->modules().at("model")->parameters();
  auto pb = (*b2)->modules().at("model")->parameters();
  REQUIRE(pa.size() == pb.size());
  for (size_t i = 0; i < pa.size(); ++i)
    CHECK(torch::equal(pa[i], pb[i]));
}

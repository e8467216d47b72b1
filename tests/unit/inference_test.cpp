// The inference-optimised model path (models/inference.hpp, issue 12): what
// prepare_traced()/prepare_script() build, when they refuse (the negative
// controls), and how embedding_model uses them. Parity of every zoo family's
// optimised graph with torchvision is in zoo_parity_test.cpp.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/script.h>
#include <torch/torch.h>

#include "models/embedding_model.hpp"
#include "models/inference.hpp"
#include "models/zoo/zoo.hpp"

using namespace rookery;

namespace {

std::shared_ptr<zoo::ZooModelImpl> frozen_resnet18() {
  auto m = zoo::create_model("resnet18", {});
  REQUIRE(m);
  auto net = m.value();
  net->eval();
  for (auto& p : net->parameters())
    p.set_requires_grad(false);
  return net;
}

bool has_pass(const inference::report& r, const std::string& prefix) {
  for (auto& p : r.passes)
    if (p.rfind(prefix, 0) == 0)
      return true;
  return false;
}

inference::options untimed() {
  inference::options o;
  o.time_it = false;
  return o;
}

} // namespace

TEST_CASE("inference: a zoo ResNet is traced, frozen, BN-folded and converted to oneDNN", "[inference]") {
  auto net = frozen_resnet18();
  inference::report rep;
  auto p = inference::prepare_traced([&](const torch::Tensor& x) { return net->forward_features(x); },
                                     {3, 64, 64}, untimed(), rep);
  INFO(rep.json());
  REQUIRE(p);
  CHECK(rep.mode == "optimized");
  CHECK(rep.batch_generic);
  CHECK(rep.parity <= 1e-4);
  CHECK(has_pass(rep, "trace"));
  CHECK(has_pass(rep, "freeze"));
  CHECK(has_pass(rep, "conv_bn_fold(20/20)")); // all of ResNet-18's 20 batch norms folded
  CHECK(has_pass(rep, "optimize_for_inference"));
  CHECK(rep.mkldnn_ops > 0);
  // The graph answers what the eager model does at batch sizes it was not traced at.
  c10::InferenceMode guard;
  auto x = torch::randn({5, 3, 64, 64});
  CHECK(inference::relative_error((*p)(x), net->forward_features(x)) <= 1e-4);
  auto json = nlohmann::json::parse(rep.json());
  CHECK(json["mode"] == "optimized");
  CHECK(json["shape"] == nlohmann::json({3, 64, 64}));
}

TEST_CASE("inference: a graph tied to its trace's batch size is run item by item", "[inference]") {
  auto net = frozen_resnet18();
  // x.size(0) is read in C++, so the trace records a reshape to (1, -1).
  auto fn = [&](const torch::Tensor& x) {
    return net->forward_features(x).reshape({x.size(0), -1}) * 2;
  };
  inference::report rep;
  auto p = inference::prepare_traced(fn, {3, 32, 32}, untimed(), rep);
  INFO(rep.json());
  REQUIRE(p);
  CHECK(rep.mode == "optimized");
  CHECK_FALSE(rep.batch_generic);
  c10::InferenceMode guard;
  auto x = torch::randn({4, 3, 32, 32});
  CHECK(inference::relative_error((*p)(x), fn(x)) <= 1e-4);
}

TEST_CASE("inference: negative control -- a model the trace cannot capture stays eager", "[inference]") {
  // A value the tracer cannot see (a C++ counter) becomes a constant of the
  // graph, so the graph is wrong for every later call; the parity check at load
  // must catch it and keep the eager model.
  int calls = 0;
  auto fn = [&](const torch::Tensor& x) { return x.mean({2, 3}) * static_cast<double>(++calls); };
  inference::report rep;
  auto p = inference::prepare_traced(fn, {3, 8, 8}, untimed(), rep);
  INFO(rep.json());
  CHECK_FALSE(p);
  CHECK(rep.mode == "eager");
  CHECK(rep.reason.find("differs from the eager model") != std::string::npos);
}

TEST_CASE("inference: a failing trace is reported, not thrown", "[inference]") {
  auto fn = [](const torch::Tensor& x) -> torch::Tensor {
    TORCH_CHECK(x.size(2) > 1000, "this model needs big inputs");
    return x;
  };
  inference::report rep;
  auto p = inference::prepare_traced(fn, {3, 8, 8}, untimed(), rep);
  CHECK_FALSE(p);
  CHECK(rep.mode == "eager");
  CHECK(rep.reason.find("this model needs big inputs") != std::string::npos);
}

TEST_CASE("inference: a TorchScript module is frozen and optimised with forward_features", "[inference]") {
  torch::jit::Module m("__torch__.Net");
  torch::manual_seed(0);
  m.register_parameter("w", torch::randn({8, 3, 3, 3}) * 0.2, false);
  m.register_parameter("g", torch::rand({8}) + 0.5, false);
  m.register_parameter("b", torch::randn({8}) * 0.1, false);
  m.register_buffer("mean", torch::randn({8}) * 0.1);
  m.register_buffer("var", torch::rand({8}) + 0.5);
  m.define(R"(
    def forward_features(self, x):
        y = torch.conv2d(x, self.w, None, [1, 1], [1, 1])
        y = torch.batch_norm(y, self.g, self.b, self.mean, self.var, False, 0.1, 1e-5, False)
        return torch.relu(y).mean([2, 3])
    def forward(self, x):
        return self.forward_features(x) * 3.0
  )");
  m.eval();
  inference::report rep;
  auto opt = inference::prepare_script(m, {"forward_features", "forward"}, {3, 16, 16}, untimed(), rep);
  INFO(rep.json());
  REQUIRE(opt);
  CHECK(rep.mode == "optimized");
  CHECK(rep.parity <= 1e-4);
  c10::InferenceMode guard;
  auto x = torch::randn({2, 3, 20, 20}); // any shape: a script is not specialised
  CHECK(inference::relative_error(opt->get_method("forward_features")({x}).toTensor(),
                                  m.get_method("forward_features")({x}).toTensor())
        <= 1e-4);
}

TEST_CASE("inference: embedding_model serves the prepared shape optimised, others eager", "[inference]") {
  auto m = embedding_model::create_untrained("resnet18");
  REQUIRE(m);
  auto& model = *m.value();
  std::vector<float> img(3 * 64 * 64, 0.25f), other(3 * 72 * 72, 0.25f);
  auto eager = model.embed({img.data()}, 3, 64, 64);
  REQUIRE(eager);
  CHECK(std::string(model.last_path()) == "eager");

  prepare_options po;
  po.shape = {3, 64, 64};
  po.time_it = false;
  model.prepare(po);
  auto info = nlohmann::json::parse(model.inference_json());
  INFO(info.dump());
  CHECK(info["mode"] == "optimized");
  CHECK(info["embed"]["mode"] == "optimized");
  CHECK(info["infer"]["mode"] == "eager"); // the /v2 path waits for its first request
  CHECK(model.optimized_for({3, 64, 64}));
  CHECK_FALSE(model.optimized_for({3, 72, 72}));
  CHECK_FALSE(model.infer_prepared());

  auto fast = model.embed({img.data(), img.data()}, 3, 64, 64);
  REQUIRE(fast);
  CHECK(std::string(model.last_path()) == "optimized");
  double dot = 0;
  for (size_t i = 0; i < fast->front().size(); ++i)
    dot += static_cast<double>(fast->front()[i]) * eager->front()[i];
  CHECK(dot == Approx(1.0).margin(1e-5)); // the same unit vector
  REQUIRE(model.embed({other.data()}, 3, 72, 72));
  CHECK(std::string(model.last_path()) == "eager");

  prepare_options logits = po;
  logits.embed = false;
  logits.logits = true;
  model.prepare(logits);
  CHECK(model.infer_prepared());
  REQUIRE(model.forward({img.data()}, 3, 64, 64));
  CHECK(std::string(model.last_path()) == "optimized");

  prepare_options off = po;
  off.enabled = false;
  off.why_disabled = "switched off for the test";
  model.prepare(off);
  info = nlohmann::json::parse(model.inference_json());
  CHECK(info["mode"] == "eager");
  CHECK(info["embed"]["reason"] == "switched off for the test");
}

#include "models/inference.hpp"

#include <algorithm>
#include <chrono>
#include <limits>

#include <torch/csrc/jit/frontend/tracer.h>
#include <torch/csrc/jit/passes/fixup_trace_scope_blocks.h>
#include <torch/csrc/jit/passes/normalize_ops.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

namespace rookery::inference {

namespace {

using clk = std::chrono::steady_clock;

double ms_since(clk::time_point t0) {
  return std::chrono::duration<double, std::milli>(clk::now() - t0).count();
}

std::string first_line(std::string s) {
  if (auto nl = s.find('\n'); nl != std::string::npos)
    s.resize(nl);
  return s;
}

torch::Tensor seeded_input(int64_t n, const std::vector<int64_t>& shape, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return torch::randn({n, shape.at(0), shape.at(1), shape.at(2)}, gen, torch::kFloat);
}

// Counts the nodes of `g` (nested blocks included) whose kind passes `pred`.
int count_nodes(const torch::jit::Block* b, const std::function<bool(const std::string&)>& pred) {
  int n = 0;
  for (const auto* node : b->nodes()) {
    if (pred(node->kind().toQualString()))
      ++n;
    for (const auto* sub : node->blocks())
      n += count_nodes(sub, pred);
  }
  return n;
}

int count_kind(const std::shared_ptr<torch::jit::Graph>& g, const std::string& kind) {
  return count_nodes(g->block(), [&](const std::string& k) { return k == kind; });
}

int count_mkldnn(const std::shared_ptr<torch::jit::Graph>& g) {
  return count_nodes(g->block(), [](const std::string& k) {
    return k == "prim::mkldnn_convolution" || k == "prim::MKLDNNHardSwish"
           || k == "prim::MKLDNNLayerNorm" || k == "aten::linear_mkldnn"
           || (k.find("mkldnn_") != std::string::npos && k.find("to_") == std::string::npos);
  });
}

// Best of `reps` calls of `f` on `x` after two warm-up calls (the JIT's
// profiling runs), in ms.
double time_best(const std::function<torch::Tensor(const torch::Tensor&)>& f, const torch::Tensor& x,
                 int reps = 3) {
  for (int i = 0; i < 2; ++i)
    f(x);
  double best = std::numeric_limits<double>::infinity();
  for (int i = 0; i < reps; ++i) {
    auto t0 = clk::now();
    f(x);
    best = std::min(best, ms_since(t0));
  }
  return best;
}

// The traced graph of `fn` on `example` as the forward method of a new module
// (weights are the graph's constants; the module has only `training`).
torch::jit::Module module_of_trace(const forward_fn& fn, const torch::Tensor& example) {
  torch::NoGradGuard no_grad;
  auto traced = torch::jit::tracer::trace(
    {example},
    [&](torch::jit::Stack in) -> torch::jit::Stack { return {fn(in.at(0).toTensor())}; },
    [](const torch::autograd::Variable&) { return std::string(); },
    /*strict=*/false, /*force_outplace=*/false);
  auto graph = traced.first->graph;
  torch::jit::FixupTraceScopeBlocks(graph, nullptr);
  torch::jit::NormalizeOps(graph);
  torch::jit::Module m(c10::QualifiedName("__torch__.rookery.Prepared"));
  m.register_attribute("training", c10::BoolType::get(), false);
  graph->insertInput(0, "self")->setType(m._ivalue()->type());
  auto* f = m._ivalue()->compilation_unit()->create_function(
    c10::QualifiedName(*m.type()->name(), "forward"), graph);
  m.type()->addMethod(f);
  return m;
}

torch::Tensor call_method(torch::jit::Module& m, const std::string& method, const torch::Tensor& x) {
  auto out = m.get_method(method)({x});
  TORCH_CHECK(out.isTensor(), "the prepared module returned no tensor");
  return out.toTensor();
}

// Times `eager` against `optimized` at batch 1 when opts.time_it (best of 5);
// false (with rep.reason) only when the optimised one is clearly slower (by
// more than 15 %): a load-time timing on a shared machine varies by about
// 10 %, and a coin flip must not decide which path a server takes.
bool not_slower(const forward_fn& eager, const forward_fn& optimized, const torch::Tensor& x,
                const options& opts, report& rep, const std::string& what) {
  if (!opts.time_it)
    return true;
  rep.eager_ms = time_best(eager, x, 5);
  rep.optimized_ms = time_best(optimized, x, 5);
  if (rep.optimized_ms <= rep.eager_ms * 1.15)
    return true;
  rep.reason = what + " is slower than eager here";
  return false;
}

// Runs one preparation: resets `rep`, applies opts.threads, times it into
// rep.prepare_ms, sets rep.mode from the outcome, and turns an exception into
// rep.reason. `body` returns nullopt with rep.reason set when it refuses.
template <class T, class F>
std::optional<T> preparation(const options& opts, report& rep, F&& body) {
  const auto t0 = clk::now();
  rep = report{};
  std::optional<T> out;
  try {
    if (opts.threads > 0 && at::get_num_threads() != opts.threads)
      at::set_num_threads(opts.threads);
    out = body();
  } catch (const c10::Error& e) {
    rep.reason = "cannot prepare: " + first_line(e.what_without_backtrace());
  } catch (const std::exception& e) {
    rep.reason = std::string("cannot prepare: ") + first_line(e.what());
  }
  rep.mode = out ? "optimized" : "eager";
  rep.prepare_ms = ms_since(t0);
  return out;
}

} // namespace

std::string report::json() const {
  nlohmann::json j{{"mode", mode},           {"passes", passes},
                   {"prepare_ms", prepare_ms}, {"batch_generic", batch_generic},
                   {"parity", parity},       {"eager_ms", eager_ms},
                   {"optimized_ms", optimized_ms}, {"onednn_ops", mkldnn_ops}};
  j["shape"] = shape.empty() ? nlohmann::json(nullptr) : nlohmann::json(shape);
  if (!reason.empty())
    j["reason"] = reason;
  return j.dump();
}

double relative_error(const torch::Tensor& a, const torch::Tensor& b) {
  auto fa = a.to(torch::kDouble).reshape({a.size(0), -1});
  auto fb = b.to(torch::kDouble).reshape({b.size(0), -1});
  if (fa.sizes() != fb.sizes())
    return std::numeric_limits<double>::infinity();
  const double scale = std::max(1.0, fb.abs().max().item<double>());
  return (fa - fb).abs().max().item<double>() / scale;
}

torch::Tensor prepared::operator()(const torch::Tensor& x) {
  if (batch_generic || x.size(0) == 1)
    return call_method(module, method, x);
  std::vector<torch::Tensor> rows;
  rows.reserve(static_cast<size_t>(x.size(0)));
  for (int64_t i = 0; i < x.size(0); ++i)
    rows.push_back(call_method(module, method, x.slice(0, i, i + 1)));
  return torch::cat(rows, 0);
}

std::optional<prepared> prepare_traced(const forward_fn& eager, const std::vector<int64_t>& shape,
                                       const options& opts, report& rep) {
  return preparation<prepared>(opts, rep, [&]() -> std::optional<prepared> {
    rep.shape = shape;
    if (shape.size() != 3) {
      rep.reason = "no input shape to prepare for";
      return std::nullopt;
    }
    auto example = seeded_input(1, shape, 1);
    auto traced = module_of_trace(eager, example);
    rep.passes.push_back("trace");
    const int bn_before = count_kind(traced.get_method("forward").graph(), "aten::batch_norm");
    auto frozen = torch::jit::freeze(traced, c10::nullopt, /*optimize_numerics=*/true);
    rep.passes.push_back("freeze");
    const int bn_after_freeze = count_kind(frozen.get_method("forward").graph(), "aten::batch_norm");
    if (bn_before > 0)
      rep.passes.push_back("conv_bn_fold(" + std::to_string(bn_before - bn_after_freeze) + "/"
                           + std::to_string(bn_before) + ")");
    auto optimized = torch::jit::optimize_for_inference(frozen);
    rep.passes.push_back("optimize_for_inference");
    rep.mkldnn_ops = count_mkldnn(optimized.get_method("forward").graph());
    if (rep.mkldnn_ops > 0)
      rep.passes.push_back("onednn");
    prepared p{optimized, true, "forward"};

    // Parity on inputs other than the trace's, at batch 1 and 3.
    c10::InferenceMode guard;
    auto x1 = seeded_input(1, shape, 2), x3 = seeded_input(3, shape, 3);
    auto want1 = eager(x1), want3 = eager(x3);
    rep.parity = relative_error(p(x1), want1);
    double e3 = std::numeric_limits<double>::infinity();
    try {
      e3 = relative_error(p(x3), want3);
    } catch (const c10::Error&) {
    }
    if (!(e3 <= opts.parity_tolerance)) { // the trace is tied to batch 1: item by item
      p.batch_generic = false;
      e3 = relative_error(p(x3), want3);
    }
    rep.batch_generic = p.batch_generic;
    rep.parity = std::max(rep.parity, e3);
    if (!(rep.parity <= opts.parity_tolerance)) {
      rep.reason = "the optimised graph differs from the eager model by " + std::to_string(rep.parity)
                   + " (relative; tolerance " + std::to_string(opts.parity_tolerance) + ")";
      return std::nullopt;
    }
    if (!not_slower(eager, [&](const torch::Tensor& x) { return p(x); }, x1, opts, rep,
                    "the optimised graph"))
      return std::nullopt;
    return p;
  });
}

std::optional<torch::jit::Module> prepare_script(const torch::jit::Module& module,
                                                 const std::vector<std::string>& methods,
                                                 const std::vector<int64_t>& probe_shape,
                                                 const options& opts, report& rep) {
  return preparation<torch::jit::Module>(opts, rep, [&]() -> std::optional<torch::jit::Module> {
    rep.batch_generic = true;
    std::vector<std::string> others;
    for (auto& m : methods)
      if (m != "forward")
        others.push_back(m);
    auto original = module.clone();
    original.eval();
    auto frozen = torch::jit::freeze(original, others, /*optimize_numerics=*/true);
    rep.passes.push_back("freeze");
    auto optimized = torch::jit::optimize_for_inference(frozen, others);
    rep.passes.push_back("optimize_for_inference");
    for (auto& m : methods)
      rep.mkldnn_ops += count_mkldnn(optimized.get_method(m).graph());
    if (rep.mkldnn_ops > 0)
      rep.passes.push_back("onednn");
    c10::InferenceMode guard;
    auto x1 = seeded_input(1, probe_shape, 2), x3 = seeded_input(3, probe_shape, 3);
    auto first = [](const c10::IValue& v) -> torch::Tensor {
      if (v.isTensor())
        return v.toTensor();
      if (v.isTuple())
        for (auto& e : v.toTupleRef().elements())
          if (e.isTensor())
            return e.toTensor();
      TORCH_CHECK(false, "the module returned no tensor");
    };
    auto run = [&](torch::jit::Module& m, const std::string& method) {
      return [&m, &method, &first](const torch::Tensor& x) { return first(m.get_method(method)({x})); };
    };
    for (auto& m : methods)
      for (auto* x : {&x1, &x3})
        rep.parity = std::max(rep.parity, relative_error(run(optimized, m)(*x), run(original, m)(*x)));
    if (!(rep.parity <= opts.parity_tolerance)) {
      rep.reason = "the optimised module differs from the loaded one by " + std::to_string(rep.parity);
      return std::nullopt;
    }
    if (!not_slower(run(original, methods.front()), run(optimized, methods.front()), x1, opts, rep,
                    "the optimised module"))
      return std::nullopt;
    return optimized;
  });
}

} // namespace rookery::inference

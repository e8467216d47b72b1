#include "models/zoo/mnasnet.hpp"

#include <cmath>

#include "models/zoo/classic_util.hpp"
#include "models/zoo/families.hpp"

namespace rookery::zoo {

namespace nn = torch::nn;
using namespace classic;

namespace {

// TensorFlow's 0.9997 decay as a PyTorch momentum.
constexpr double bn_momentum = 1.0 - 0.9997;

class MnasInvertedResidualImpl : public nn::Module {
public:
  MnasInvertedResidualImpl(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t expand) {
    TORCH_CHECK(stride == 1 || stride == 2, "stride should be 1 or 2, got ", stride);
    TORCH_CHECK(k == 3 || k == 5, "kernel_size should be 3 or 5, got ", k);
    const int64_t mid = in * expand;
    residual_ = in == out && stride == 1;
    layers = register_module(
      "layers", nn::Sequential(conv2d(in, mid, 1, 1, 0, 1, false), batch_norm(mid, 1e-5, bn_momentum),
                               relu(), conv2d(mid, mid, k, stride, k / 2, mid, false),
                               batch_norm(mid, 1e-5, bn_momentum), relu(),
                               conv2d(mid, out, 1, 1, 0, 1, false), batch_norm(out, 1e-5, bn_momentum)));
  }
  torch::Tensor forward(torch::Tensor x) {
    return residual_ ? layers->forward(x) + x : layers->forward(x);
  }
  nn::Sequential layers{nullptr};

private:
  bool residual_ = false;
};
TORCH_MODULE(MnasInvertedResidual);

Seq stack(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t expand, int64_t repeats) {
  Seq s(MnasInvertedResidual(in, out, k, stride, expand));
  for (int64_t i = 1; i < repeats; ++i)
    s->push_back(MnasInvertedResidual(out, out, k, 1, expand));
  return s;
}

} // namespace

MNASNetImpl::MNASNetImpl(const MNASNetOptions& o) {
  TORCH_CHECK(o.alpha > 0, "alpha should be greater than 0.0, got ", o.alpha);
  TORCH_CHECK(o.num_classes >= 0 && o.in_channels > 0, "bad MNASNet options");
  const int64_t base[8] = {32, 16, 24, 40, 80, 96, 192, 320};
  int64_t d[8];
  for (int i = 0; i < 8; ++i)
    d[i] = make_divisible(static_cast<double>(base[i]) * o.alpha, 8);
  auto bn = [](int64_t n) { return batch_norm(n, 1e-5, bn_momentum); };
  layers = nn::Sequential(conv2d(o.in_channels, d[0], 3, 2, 1, 1, false), bn(d[0]), relu(),
                          conv2d(d[0], d[0], 3, 1, 1, d[0], false), bn(d[0]), relu(),
                          conv2d(d[0], d[1], 1, 1, 0, 1, false), bn(d[1]));
  layers->push_back(stack(d[1], d[2], 3, 2, 3, 3));
  layers->push_back(stack(d[2], d[3], 5, 2, 3, 3));
  layers->push_back(stack(d[3], d[4], 5, 2, 6, 3));
  layers->push_back(stack(d[4], d[5], 3, 1, 6, 2));
  layers->push_back(stack(d[5], d[6], 5, 2, 6, 4));
  layers->push_back(stack(d[6], d[7], 3, 1, 6, 1));
  layers->push_back(conv2d(d[7], 1280, 1, 1, 0, 1, false));
  layers->push_back(bn(1280));
  layers->push_back(relu());
  register_module("layers", layers);
  classifier = register_module("classifier", nn::Sequential(dropout(o.dropout)));
  for (auto& m : modules(false)) {
    if (auto* c = m->as<nn::Conv2d>()) {
      kaiming_normal_(c->weight, /*fan_out=*/true);
    } else if (auto* b = m->as<nn::BatchNorm2d>()) {
      nn::init::ones_(b->weight);
      nn::init::zeros_(b->bias);
    }
  }
  reset_classifier(o.num_classes);
}

void MNASNetImpl::reset_classifier(int64_t n) {
  TORCH_CHECK(n >= 0, "num_classes must be >= 0");
  if (fc)
    classifier->unregister_module("1");
  fc = nullptr;
  if (n > 0) {
    fc = nn::Linear(1280, n);
    // kaiming_uniform_(mode=fan_out, nonlinearity=sigmoid): bound = sqrt(3 / fan_out).
    const double bound = std::sqrt(3.0 / static_cast<double>(n));
    nn::init::uniform_(fc->weight, -bound, bound);
    nn::init::zeros_(fc->bias);
    classifier->register_module("1", fc);
  }
}

torch::Tensor MNASNetImpl::forward_features(torch::Tensor x) {
  return layers->forward(x).mean({2, 3});
}

torch::Tensor MNASNetImpl::forward(torch::Tensor x) {
  x = forward_features(x);
  if (!fc)
    return x;
  return fc(classifier->forward(x));
}

std::vector<torch::Tensor> MNASNetImpl::forward_stages(torch::Tensor x) {
  std::vector<torch::Tensor> out;
  run_sequential(layers, x, {7, 8, 9, 11, 16}, &out);
  return out;
}

std::vector<std::shared_ptr<nn::Module>> MNASNetImpl::backbone() {
  return {layers.ptr()};
}

std::shared_ptr<nn::Module> MNASNetImpl::head() {
  if (fc)
    return fc.ptr();
  return std::make_shared<nn::IdentityImpl>();
}

void register_mnasnet_models() {
  const std::vector<std::pair<std::string, double>> variants{
    {"mnasnet0_5", 0.5}, {"mnasnet0_75", 0.75}, {"mnasnet1_0", 1.0}, {"mnasnet1_3", 1.3}};
  for (const auto& [name, alpha] : variants) {
    model_entry e;
    e.name = name;
    e.family = "mnasnet";
    e.heavy = name != "mnasnet0_5";
    e.make = [a = alpha](const model_options& o) -> std::shared_ptr<ZooModelImpl> {
      check_options(o, "mnasnet", {/*dropout=*/true, false, /*width_mult=*/true});
      MNASNetOptions m;
      m.alpha = a * o.width_mult; // width_mult scales the variant's depth multiplier
      m.num_classes = o.num_classes;
      m.in_channels = o.in_channels;
      if (o.dropout >= 0)
        m.dropout = o.dropout;
      return MNASNet(m).ptr();
    };
    register_model(std::move(e));
  }
}

} // namespace rookery::zoo

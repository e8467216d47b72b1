#include "models/zoo/squeezenet.hpp"

#include "models/zoo/classic_util.hpp"
#include "models/zoo/families.hpp"

namespace rookery::zoo {

namespace nn = torch::nn;
using namespace classic;

FireImpl::FireImpl(int64_t inplanes, int64_t sq, int64_t e1, int64_t e3) {
  squeeze = register_module("squeeze", conv2d(inplanes, sq, 1));
  expand1x1 = register_module("expand1x1", conv2d(sq, e1, 1));
  expand3x3 = register_module("expand3x3", conv2d(sq, e3, 3, 1, 1));
}

torch::Tensor FireImpl::forward(torch::Tensor x) {
  x = torch::relu(squeeze(x));
  return torch::cat({torch::relu(expand1x1(x)), torch::relu(expand3x3(x))}, 1);
}

SqueezeNetImpl::SqueezeNetImpl(const SqueezeNetOptions& o) {
  TORCH_CHECK(o.version == "1_0" || o.version == "1_1", "unsupported SqueezeNet version ", o.version,
              ": 1_0 or 1_1 expected");
  TORCH_CHECK(o.num_classes >= 0 && o.in_channels > 0, "bad SqueezeNet options");
  auto pool = [] { return nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(2).ceil_mode(true)); };
  if (o.version == "1_0") {
    features = nn::Sequential(conv2d(o.in_channels, 96, 7, 2), relu(), pool(), Fire(96, 16, 64, 64),
                              Fire(128, 16, 64, 64), Fire(128, 32, 128, 128), pool(),
                              Fire(256, 32, 128, 128), Fire(256, 48, 192, 192),
                              Fire(384, 48, 192, 192), Fire(384, 64, 256, 256), pool(),
                              Fire(512, 64, 256, 256));
    taps_ = {1, 5, 10, 12};
  } else {
    features = nn::Sequential(conv2d(o.in_channels, 64, 3, 2), relu(), pool(), Fire(64, 16, 64, 64),
                              Fire(128, 16, 64, 64), pool(), Fire(128, 32, 128, 128),
                              Fire(256, 32, 128, 128), pool(), Fire(256, 48, 192, 192),
                              Fire(384, 48, 192, 192), Fire(384, 64, 256, 256),
                              Fire(512, 64, 256, 256));
    taps_ = {1, 4, 7, 12};
  }
  register_module("features", features);
  classifier = register_module("classifier", nn::Sequential(dropout(o.dropout)));
  for (auto& m : modules(false))
    if (auto* c = m->as<nn::Conv2d>()) {
      nn::init::kaiming_uniform_(c->weight); // a = 0, fan_in, leaky_relu
      nn::init::zeros_(c->bias);
    }
  reset_classifier(o.num_classes);
}

void SqueezeNetImpl::reset_classifier(int64_t n) {
  TORCH_CHECK(n >= 0, "num_classes must be >= 0");
  if (final_conv)
    classifier->unregister_module("1");
  final_conv = nullptr;
  if (n > 0) {
    final_conv = conv2d(512, n, 1);
    nn::init::normal_(final_conv->weight, 0.0, 0.01);
    nn::init::zeros_(final_conv->bias);
    classifier->register_module("1", final_conv);
  }
}

torch::Tensor SqueezeNetImpl::forward_features(torch::Tensor x) {
  return torch::flatten(torch::adaptive_avg_pool2d(features->forward(x), {1, 1}), 1);
}

torch::Tensor SqueezeNetImpl::forward(torch::Tensor x) {
  x = features->forward(x);
  if (!final_conv)
    return torch::flatten(torch::adaptive_avg_pool2d(x, {1, 1}), 1);
  x = classifier->forward(x); // dropout
  x = torch::relu(final_conv(x));
  return torch::flatten(torch::adaptive_avg_pool2d(x, {1, 1}), 1);
}

std::vector<torch::Tensor> SqueezeNetImpl::forward_stages(torch::Tensor x) {
  std::vector<torch::Tensor> out;
  run_sequential(features, x, taps_, &out);
  return out;
}

std::vector<std::shared_ptr<nn::Module>> SqueezeNetImpl::backbone() {
  return {features.ptr()};
}

std::shared_ptr<nn::Module> SqueezeNetImpl::head() {
  if (final_conv)
    return final_conv.ptr();
  return std::make_shared<nn::IdentityImpl>();
}

void register_squeezenet_models() {
  for (std::string v : {"1_0", "1_1"}) {
    model_entry e;
    e.name = "squeezenet" + v;
    e.family = "squeezenet";
    e.heavy = v != "1_1";
    e.make = [v](const model_options& o) -> std::shared_ptr<ZooModelImpl> {
      check_options(o, "squeezenet", {/*dropout=*/true, false, false});
      SqueezeNetOptions s;
      s.version = v;
      s.num_classes = o.num_classes;
      s.in_channels = o.in_channels;
      if (o.dropout >= 0)
        s.dropout = o.dropout;
      return SqueezeNet(s).ptr();
    };
    register_model(std::move(e));
  }
}

} // namespace rookery::zoo

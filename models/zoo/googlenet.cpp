#include "models/zoo/googlenet.hpp"

#include "models/zoo/classic_util.hpp"
#include "models/zoo/families.hpp"

namespace rookery::zoo {

namespace nn = torch::nn;

namespace classic {

BasicConv2dImpl::BasicConv2dImpl(int64_t in, int64_t out, torch::ExpandingArray<2> k,
                                 torch::ExpandingArray<2> stride, torch::ExpandingArray<2> pad) {
  conv = register_module("conv", conv2d(in, out, k, stride, pad, 1, false));
  bn = register_module("bn", batch_norm(out, 0.001));
}

torch::Tensor BasicConv2dImpl::forward(torch::Tensor x) {
  return torch::relu(bn(conv(x)));
}

InceptionV1BlockImpl::InceptionV1BlockImpl(int64_t in, int64_t ch1x1, int64_t ch3x3red, int64_t ch3x3,
                                           int64_t ch5x5red, int64_t ch5x5, int64_t pool_proj) {
  branch1 = register_module("branch1", BasicConv2d(in, ch1x1, 1));
  branch2 = register_module("branch2", nn::Sequential(BasicConv2d(in, ch3x3red, 1),
                                                      BasicConv2d(ch3x3red, ch3x3, 3, 1, 1)));
  // kernel 3 instead of 5: torchvision's known deviation (pytorch/vision#906), kept for its weights.
  branch3 = register_module("branch3", nn::Sequential(BasicConv2d(in, ch5x5red, 1),
                                                      BasicConv2d(ch5x5red, ch5x5, 3, 1, 1)));
  branch4 = register_module(
    "branch4", nn::Sequential(nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(1).padding(1).ceil_mode(true)),
                              BasicConv2d(in, pool_proj, 1)));
}

torch::Tensor InceptionV1BlockImpl::forward(torch::Tensor x) {
  return torch::cat({branch1(x), branch2->forward(x), branch3->forward(x), branch4->forward(x)}, 1);
}

GoogLeNetAuxImpl::GoogLeNetAuxImpl(int64_t in, int64_t num_classes, double p) {
  conv = register_module("conv", BasicConv2d(in, 128, 1));
  fc1 = register_module("fc1", nn::Linear(2048, 1024));
  fc2 = register_module("fc2", nn::Linear(1024, num_classes));
  dropout = register_module("dropout", nn::Dropout(nn::DropoutOptions(p)));
}

torch::Tensor GoogLeNetAuxImpl::forward(torch::Tensor x) {
  x = conv(torch::adaptive_avg_pool2d(x, {4, 4}));
  x = torch::relu(fc1(torch::flatten(x, 1)));
  return fc2(dropout(x));
}

} // namespace classic

using namespace classic;

namespace {

// torchvision: trunc_normal_(std 0.01, [-2, 2]) for every conv and linear weight,
// BN 1 / 0; biases keep their default init.
void init_googlenet(nn::Module& root) {
  auto init = [](nn::Module& m) {
    if (auto* c = m.as<nn::Conv2d>())
      trunc_normal_(c->weight, 0.0, 0.01, -2, 2);
    else if (auto* l = m.as<nn::Linear>())
      trunc_normal_(l->weight, 0.0, 0.01, -2, 2);
    else if (auto* b = m.as<nn::BatchNorm2d>()) {
      nn::init::ones_(b->weight);
      nn::init::zeros_(b->bias);
    }
  };
  init(root); // (modules(include_self) needs a shared_ptr root: not so in a constructor)
  for (auto& m : root.modules(/*include_self=*/false))
    init(*m);
}

torch::Tensor maxpool_ceil(const torch::Tensor& x, int64_t k) {
  return torch::max_pool2d(x, {k, k}, {2, 2}, {0, 0}, {1, 1}, /*ceil_mode=*/true);
}

} // namespace

GoogLeNetImpl::GoogLeNetImpl(const GoogLeNetOptions& o) : options_(o) {
  TORCH_CHECK(o.num_classes >= 0 && o.in_channels > 0, "bad GoogLeNet options");
  TORCH_CHECK(!o.transform_input || o.in_channels == 3, "transform_input needs 3 input channels");
  conv1 = register_module("conv1", BasicConv2d(o.in_channels, 64, 7, 2, 3));
  conv2 = register_module("conv2", BasicConv2d(64, 64, 1));
  conv3 = register_module("conv3", BasicConv2d(64, 192, 3, 1, 1));
  inception3a = register_module("inception3a", InceptionV1Block(192, 64, 96, 128, 16, 32, 32));
  inception3b = register_module("inception3b", InceptionV1Block(256, 128, 128, 192, 32, 96, 64));
  inception4a = register_module("inception4a", InceptionV1Block(480, 192, 96, 208, 16, 48, 64));
  inception4b = register_module("inception4b", InceptionV1Block(512, 160, 112, 224, 24, 64, 64));
  inception4c = register_module("inception4c", InceptionV1Block(512, 128, 128, 256, 24, 64, 64));
  inception4d = register_module("inception4d", InceptionV1Block(512, 112, 144, 288, 32, 64, 64));
  inception4e = register_module("inception4e", InceptionV1Block(528, 256, 160, 320, 32, 128, 128));
  inception5a = register_module("inception5a", InceptionV1Block(832, 256, 160, 320, 32, 128, 128));
  inception5b = register_module("inception5b", InceptionV1Block(832, 384, 192, 384, 48, 128, 128));
  init_googlenet(*this);
  reset_classifier(o.num_classes);
}

void GoogLeNetImpl::reset_classifier(int64_t n) {
  TORCH_CHECK(n >= 0, "num_classes must be >= 0");
  for (const char* name : {"aux1", "aux2", "fc"})
    if (named_children().contains(name))
      unregister_module(name);
  aux1 = nullptr;
  aux2 = nullptr;
  fc = nullptr;
  if (n > 0) {
    if (options_.aux_logits) {
      aux1 = register_module("aux1", GoogLeNetAux(512, n, options_.dropout_aux));
      aux2 = register_module("aux2", GoogLeNetAux(528, n, options_.dropout_aux));
    }
    fc = register_module("fc", nn::Linear(1024, n));
  }
  options_.num_classes = n;
  for (auto& m : aux_heads())
    init_googlenet(*m);
  if (fc)
    init_googlenet(*fc);
}

torch::Tensor GoogLeNetImpl::body(torch::Tensor x, std::vector<torch::Tensor>* stages,
                                  std::vector<torch::Tensor>* aux) {
  if (options_.transform_input) {
    const double mean[3] = {0.485, 0.456, 0.406}, std[3] = {0.229, 0.224, 0.225};
    std::vector<torch::Tensor> ch;
    for (int c = 0; c < 3; ++c)
      ch.push_back(torch::unsqueeze(x.select(1, c), 1) * (std[c] / 0.5) + (mean[c] - 0.5) / 0.5);
    x = torch::cat(ch, 1);
  }
  auto tap = [stages](const torch::Tensor& t) {
    if (stages)
      stages->push_back(t);
  };
  x = conv1(x);
  tap(x);
  x = conv3(conv2(maxpool_ceil(x, 3)));
  tap(x);
  x = inception3b(inception3a(maxpool_ceil(x, 3)));
  tap(x);
  x = inception4a(maxpool_ceil(x, 3));
  torch::Tensor a1, a2;
  if (aux && aux1)
    a1 = aux1(x);
  x = inception4d(inception4c(inception4b(x)));
  if (aux && aux2)
    a2 = aux2(x);
  x = inception4e(x);
  tap(x);
  x = inception5b(inception5a(maxpool_ceil(x, 2)));
  tap(x);
  if (aux) {
    aux->push_back(a2);
    aux->push_back(a1);
  }
  return torch::flatten(torch::adaptive_avg_pool2d(x, {1, 1}), 1);
}

torch::Tensor GoogLeNetImpl::forward_features(torch::Tensor x) {
  return body(x, nullptr, nullptr);
}

torch::Tensor GoogLeNetImpl::forward(torch::Tensor x) {
  x = forward_features(x);
  if (!fc)
    return x;
  return fc(torch::dropout(x, options_.dropout, is_training()));
}

std::vector<torch::Tensor> GoogLeNetImpl::forward_with_aux(torch::Tensor x) {
  std::vector<torch::Tensor> aux;
  x = body(x, nullptr, &aux);
  if (fc)
    x = fc(torch::dropout(x, options_.dropout, is_training()));
  return {x, aux[0], aux[1]};
}

std::vector<torch::Tensor> GoogLeNetImpl::forward_stages(torch::Tensor x) {
  std::vector<torch::Tensor> out;
  body(x, &out, nullptr);
  return out;
}

std::vector<std::shared_ptr<nn::Module>> GoogLeNetImpl::backbone() {
  return {conv1.ptr(),       conv2.ptr(),       conv3.ptr(),       inception3a.ptr(),
          inception3b.ptr(), inception4a.ptr(), inception4b.ptr(), inception4c.ptr(),
          inception4d.ptr(), inception4e.ptr(), inception5a.ptr(), inception5b.ptr()};
}

std::shared_ptr<nn::Module> GoogLeNetImpl::head() {
  if (fc)
    return fc.ptr();
  return std::make_shared<nn::IdentityImpl>();
}

std::vector<std::shared_ptr<nn::Module>> GoogLeNetImpl::aux_heads() {
  std::vector<std::shared_ptr<nn::Module>> out;
  if (aux1)
    out.push_back(aux1.ptr());
  if (aux2)
    out.push_back(aux2.ptr());
  return out;
}

void register_googlenet_models() {
  model_entry e;
  e.name = "googlenet";
  e.family = "googlenet";
  e.make = [](const model_options& o) -> std::shared_ptr<ZooModelImpl> {
    check_options(o, "googlenet", {/*dropout=*/true, false, false, /*aux_logits=*/true});
    GoogLeNetOptions g;
    g.num_classes = o.num_classes;
    g.in_channels = o.in_channels;
    g.aux_logits = o.aux_logits;
    g.transform_input = o.transform_input;
    if (o.dropout >= 0)
      g.dropout = o.dropout;
    return GoogLeNet(g).ptr();
  };
  register_model(std::move(e));
}

} // namespace rookery::zoo

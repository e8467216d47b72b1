#include "models/resnet.hpp"

#include <cmath>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/init.h>

#include "models/zoo/classic_util.hpp"

namespace rookery {

namespace nn = torch::nn;

namespace {

nn::Conv2d conv3x3(int64_t in, int64_t out, int64_t stride = 1, int64_t groups = 1) {
  return nn::Conv2d(
    nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).groups(groups).bias(false));
}

nn::Conv2d conv1x1(int64_t in, int64_t out, int64_t stride = 1) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, 1).stride(stride).bias(false));
}

nn::BatchNorm2d batch_norm(int64_t n) {
  return nn::BatchNorm2d(nn::BatchNorm2dOptions(n).eps(1e-5).momentum(0.1));
}

nn::ReLU relu_inplace() {
  return nn::ReLU(nn::ReLUOptions().inplace(true));
}

} // namespace

const std::vector<std::string>& resnet_archs() {
  static const std::vector<std::string> names{
    "resnet18",        "resnet34",         "resnet50",         "resnet101",
    "resnet152",       "resnext50_32x4d",  "resnext101_32x8d", "resnext101_64x4d",
    "wide_resnet50_2", "wide_resnet101_2",
  };
  return names;
}

bool resnet_arch(const std::string& arch, resnet_arch_info& out) {
  const std::vector<int64_t> l18{2, 2, 2, 2}, l34{3, 4, 6, 3}, l101{3, 4, 23, 3},
    l152{3, 8, 36, 3};
  if (arch == "resnet18")
    out = {false, l18, 1, 64};
  else if (arch == "resnet34")
    out = {false, l34, 1, 64};
  else if (arch == "resnet50")
    out = {true, l34, 1, 64};
  else if (arch == "resnet101")
    out = {true, l101, 1, 64};
  else if (arch == "resnet152")
    out = {true, l152, 1, 64};
  else if (arch == "resnext50_32x4d")
    out = {true, l34, 32, 4};
  else if (arch == "resnext101_32x8d")
    out = {true, l101, 32, 8};
  else if (arch == "resnext101_64x4d")
    out = {true, l101, 64, 4};
  else if (arch == "wide_resnet50_2")
    out = {true, l34, 1, 128};
  else if (arch == "wide_resnet101_2")
    out = {true, l101, 1, 128};
  else
    return false;
  return true;
}

// --- BasicBlock --------------------------------------------------------------

BasicBlockImpl::BasicBlockImpl(int64_t inplanes, int64_t planes, int64_t stride,
                               nn::Sequential ds) {
  conv1 = register_module("conv1", conv3x3(inplanes, planes, stride));
  bn1 = register_module("bn1", batch_norm(planes));
  relu = register_module("relu", relu_inplace());
  conv2 = register_module("conv2", conv3x3(planes, planes));
  bn2 = register_module("bn2", batch_norm(planes));
  if (ds)
    downsample = register_module("downsample", ds);
}

torch::Tensor BasicBlockImpl::forward(torch::Tensor x) {
  auto out = relu(bn1(conv1(x)));
  out = bn2(conv2(out));
  out = zoo::classic::drop_path(out, drop_path, is_training());
  auto identity = downsample ? downsample->forward(x) : x;
  out += identity;
  return relu(out);
}

// --- Bottleneck --------------------------------------------------------------

BottleneckImpl::BottleneckImpl(int64_t inplanes, int64_t planes, int64_t stride,
                               nn::Sequential ds, int64_t groups, int64_t base_width) {
  // torchvision: width = int(planes * (base_width / 64.0)) * groups
  const auto width =
    static_cast<int64_t>(static_cast<double>(planes) * (static_cast<double>(base_width) / 64.0))
    * groups;
  conv1 = register_module("conv1", conv1x1(inplanes, width));
  bn1 = register_module("bn1", batch_norm(width));
  conv2 = register_module("conv2", conv3x3(width, width, stride, groups));
  bn2 = register_module("bn2", batch_norm(width));
  conv3 = register_module("conv3", conv1x1(width, planes * expansion));
  bn3 = register_module("bn3", batch_norm(planes * expansion));
  relu = register_module("relu", relu_inplace());
  if (ds)
    downsample = register_module("downsample", ds);
}

torch::Tensor BottleneckImpl::forward(torch::Tensor x) {
  auto out = relu(bn1(conv1(x)));
  out = relu(bn2(conv2(out)));
  out = bn3(conv3(out));
  out = zoo::classic::drop_path(out, drop_path, is_training());
  auto identity = downsample ? downsample->forward(x) : x;
  out += identity;
  return relu(out);
}

// --- ResNet ------------------------------------------------------------------

ResNetImpl::ResNetImpl(const ResNetOptions& o) : options_(o) {
  resnet_arch_info info;
  TORCH_CHECK(resnet_arch(o.arch, info), "unknown ResNet arch '", o.arch, "'");
  TORCH_CHECK(o.num_classes >= 0, "num_classes must be >= 0, got ", o.num_classes);
  TORCH_CHECK(o.dropout >= 0 && o.dropout < 1, "dropout must be in [0, 1), got ", o.dropout);
  TORCH_CHECK(o.drop_path >= 0 && o.drop_path < 1, "drop_path must be in [0, 1), got ", o.drop_path);
  TORCH_CHECK(o.in_channels > 0, "in_channels must be positive, got ", o.in_channels);
  groups_ = o.groups != 1 ? o.groups : info.groups;
  base_width_ = o.width_per_group != 64 ? o.width_per_group : info.width_per_group;
  TORCH_CHECK(groups_ > 0 && base_width_ > 0, "groups and width_per_group must be positive");
  if (!info.bottleneck)
    TORCH_CHECK(groups_ == 1 && base_width_ == 64,
                "BasicBlock only supports groups=1 and base_width=64 (", o.arch, ")");
  const bool bn = info.bottleneck;
  const int64_t expansion = bn ? BottleneckImpl::expansion : BasicBlockImpl::expansion;

  conv1 = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(o.in_channels, 64, 7)
                                                .stride(2)
                                                .padding(3)
                                                .bias(false)));
  bn1 = register_module("bn1", batch_norm(64));
  relu = register_module("relu", relu_inplace());
  maxpool = register_module("maxpool", nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(2).padding(1)));
  layer1 = register_module("layer1", make_layer(bn, 64, info.layers[0], 1));
  layer2 = register_module("layer2", make_layer(bn, 128, info.layers[1], 2));
  layer3 = register_module("layer3", make_layer(bn, 256, info.layers[2], 2));
  layer4 = register_module("layer4", make_layer(bn, 512, info.layers[3], 2));
  avgpool = register_module("avgpool", nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions({1, 1})));
  feature_dim_ = 512 * expansion;
  if (o.num_classes > 0)
    fc = register_module("fc", nn::Linear(feature_dim_, o.num_classes));

  // Stochastic depth, linearly increasing over all blocks (timm).
  if (o.drop_path > 0) {
    std::vector<double*> rates;
    for (auto& layer : {layer1, layer2, layer3, layer4})
      for (auto& m : layer->children()) {
        if (auto* b = m->as<BasicBlockImpl>())
          rates.push_back(&b->drop_path);
        else if (auto* b2 = m->as<BottleneckImpl>())
          rates.push_back(&b2->drop_path);
      }
    for (size_t i = 0; i < rates.size(); ++i)
      *rates[i] = rates.size() > 1 ? o.drop_path * static_cast<double>(i)
                                         / static_cast<double>(rates.size() - 1)
                                   : o.drop_path;
  }

  // torchvision init: kaiming normal (fan_out, relu) for convs, BN weight 1 bias 0;
  // Linear keeps its default init.
  for (auto& m : modules(/*include_self=*/false)) {
    if (auto* c = m->as<nn::Conv2d>()) {
      nn::init::kaiming_normal_(c->weight, 0.0, torch::kFanOut, torch::kReLU);
    } else if (auto* b = m->as<nn::BatchNorm2d>()) {
      nn::init::constant_(b->weight, 1.0);
      nn::init::constant_(b->bias, 0.0);
    }
  }
}

nn::Sequential ResNetImpl::make_layer(bool bottleneck, int64_t planes, int64_t blocks,
                                      int64_t stride) {
  const int64_t expansion = bottleneck ? BottleneckImpl::expansion : BasicBlockImpl::expansion;
  nn::Sequential ds{nullptr};
  if (stride != 1 || inplanes_ != planes * expansion)
    ds = nn::Sequential(conv1x1(inplanes_, planes * expansion, stride),
                        batch_norm(planes * expansion));
  nn::Sequential layer;
  for (int64_t i = 0; i < blocks; ++i) {
    auto s = i == 0 ? stride : 1;
    auto d = i == 0 ? ds : nn::Sequential{nullptr};
    if (bottleneck)
      layer->push_back(Bottleneck(inplanes_, planes, s, d, groups_, base_width_));
    else
      layer->push_back(BasicBlock(inplanes_, planes, s, d));
    inplanes_ = planes * expansion;
  }
  return layer;
}

torch::Tensor ResNetImpl::stem(torch::Tensor x) {
  return relu(bn1(conv1(x)));
}

torch::Tensor ResNetImpl::forward_features(torch::Tensor x) {
  x = maxpool(stem(x));
  x = layer1->forward(x);
  x = layer2->forward(x);
  x = layer3->forward(x);
  x = layer4->forward(x);
  return torch::flatten(avgpool(x), 1);
}

torch::Tensor ResNetImpl::forward(torch::Tensor x) {
  auto f = forward_features(std::move(x));
  if (!fc)
    return f;
  if (options_.dropout > 0)
    f = torch::dropout(f, options_.dropout, is_training());
  return fc(f);
}

std::vector<torch::Tensor> ResNetImpl::forward_stages(torch::Tensor x) {
  std::vector<torch::Tensor> out;
  x = stem(x);
  out.push_back(x);
  x = maxpool(x);
  for (auto* layer : {&layer1, &layer2, &layer3, &layer4}) {
    x = (*layer)->forward(x);
    out.push_back(x);
  }
  return out;
}

void ResNetImpl::reset_classifier(int64_t num_classes) {
  TORCH_CHECK(num_classes >= 0, "num_classes must be >= 0, got ", num_classes);
  if (fc)
    unregister_module("fc");
  fc = nullptr;
  if (num_classes > 0)
    fc = register_module("fc", nn::Linear(feature_dim_, num_classes));
  options_.num_classes = num_classes;
}

std::vector<std::shared_ptr<nn::Module>> ResNetImpl::backbone() {
  return {conv1.ptr(), bn1.ptr(),    relu.ptr(),   maxpool.ptr(), layer1.ptr(),
          layer2.ptr(), layer3.ptr(), layer4.ptr(), avgpool.ptr()};
}

std::shared_ptr<nn::Module> ResNetImpl::head() {
  if (fc)
    return fc.ptr();
  return std::make_shared<nn::IdentityImpl>();
}

void ResNetImpl::reset_parameters(uint64_t seed) {
  torch::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (auto& m : modules(/*include_self=*/false)) {
    if (auto* c = m->as<nn::Conv2d>()) {
      // kaiming_normal_(mode=fan_out, relu): std = sqrt(2 / fan_out), and
      // fan_out = out_channels * receptive field (groups do not enter).
      auto w = c->weight;
      const double fan_out = static_cast<double>(w.size(0) * w[0][0].numel());
      w.normal_(0.0, std::sqrt(2.0 / fan_out), gen);
      if (c->bias.defined())
        c->bias.zero_();
    } else if (auto* b = m->as<nn::BatchNorm2d>()) {
      b->weight.fill_(1.0);
      b->bias.zero_();
      b->running_mean.zero_();
      b->running_var.fill_(1.0);
      b->num_batches_tracked.zero_();
    } else if (auto* l = m->as<nn::Linear>()) {
      // torch default: kaiming_uniform(a=sqrt(5)) == U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
      const double bound = 1.0 / std::sqrt(static_cast<double>(l->weight.size(1)));
      l->weight.uniform_(-bound, bound, gen);
      if (l->bias.defined())
        l->bias.uniform_(-bound, bound, gen);
    }
  }
}

result<ResNet> make_resnet(const ResNetOptions& options) {
  resnet_arch_info info;
  if (!resnet_arch(options.arch, info)) {
    std::string names;
    for (auto& n : resnet_archs())
      names += (names.empty() ? "" : ", ") + n;
    return fail(errc::bad_request, "unknown ResNet arch '" + options.arch + "' (known: " + names + ")");
  }
  try {
    return ResNet(options);
  } catch (const c10::Error& e) {
    return fail(errc::bad_request, e.what_without_backtrace());
  } catch (const std::exception& e) {
    return fail(errc::internal, std::string("cannot build ") + options.arch + ": " + e.what());
  }
}

} // namespace rookery

#include "models/zoo/shufflenet.hpp"

#include "models/zoo/classic_util.hpp"
#include "models/zoo/families.hpp"

namespace rookery::zoo {

namespace nn = torch::nn;
using namespace classic;

namespace {

torch::Tensor shuffle_channels(const torch::Tensor& x, int64_t groups) {
  const auto b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  return x.view({b, groups, c / groups, h, w}).transpose(1, 2).contiguous().view({b, -1, h, w});
}

class ShuffleUnitImpl : public nn::Module {
public:
  ShuffleUnitImpl(int64_t inp, int64_t oup, int64_t stride) : stride_(stride) {
    TORCH_CHECK(stride >= 1 && stride <= 3, "illegal stride value");
    const int64_t bf = oup / 2;
    TORCH_CHECK(stride != 1 || inp == bf * 2, "invalid combination of stride ", stride, ", inp ", inp,
                " and oup ", oup);
    if (stride > 1)
      branch1 = register_module(
        "branch1", nn::Sequential(conv2d(inp, inp, 3, stride, 1, inp, false), batch_norm(inp),
                                  conv2d(inp, bf, 1, 1, 0, 1, false), batch_norm(bf), relu()));
    branch2 = register_module(
      "branch2", nn::Sequential(conv2d(stride > 1 ? inp : bf, bf, 1, 1, 0, 1, false), batch_norm(bf),
                                relu(), conv2d(bf, bf, 3, stride, 1, bf, false), batch_norm(bf),
                                conv2d(bf, bf, 1, 1, 0, 1, false), batch_norm(bf), relu()));
  }
  torch::Tensor forward(torch::Tensor x) {
    torch::Tensor out;
    if (stride_ == 1) {
      auto halves = x.chunk(2, 1);
      out = torch::cat({halves[0], branch2->forward(halves[1])}, 1);
    } else {
      out = torch::cat({branch1->forward(x), branch2->forward(x)}, 1);
    }
    return shuffle_channels(out, 2);
  }
  nn::Sequential branch1{nullptr}, branch2{nullptr};

private:
  int64_t stride_;
};
TORCH_MODULE(ShuffleUnit);

} // namespace

ShuffleNetV2Impl::ShuffleNetV2Impl(const ShuffleNetV2Options& o) : dropout_(o.dropout) {
  TORCH_CHECK(o.stages_repeats.size() == 3, "expected stages_repeats as list of 3 positive ints");
  TORCH_CHECK(o.stages_out_channels.size() == 5, "expected stages_out_channels as list of 5 positive ints");
  TORCH_CHECK(o.num_classes >= 0 && o.in_channels > 0, "bad ShuffleNetV2 options");
  int64_t in = o.stages_out_channels[0];
  conv1 = register_module("conv1", nn::Sequential(conv2d(o.in_channels, in, 3, 2, 1, 1, false),
                                                  batch_norm(in), relu()));
  maxpool = register_module("maxpool", nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(2).padding(1)));
  nn::Sequential* stages[3] = {&stage2, &stage3, &stage4};
  for (int s = 0; s < 3; ++s) {
    const int64_t out = o.stages_out_channels[static_cast<size_t>(s) + 1];
    nn::Sequential seq(ShuffleUnit(in, out, 2));
    for (int64_t i = 1; i < o.stages_repeats[static_cast<size_t>(s)]; ++i)
      seq->push_back(ShuffleUnit(out, out, 1));
    *stages[s] = register_module("stage" + std::to_string(s + 2), seq);
    in = out;
  }
  num_features_ = o.stages_out_channels.back();
  conv5 = register_module("conv5", nn::Sequential(conv2d(in, num_features_, 1, 1, 0, 1, false),
                                                  batch_norm(num_features_), relu()));
  // torchvision keeps PyTorch's default init for ShuffleNetV2.
  reset_classifier(o.num_classes);
}

void ShuffleNetV2Impl::reset_classifier(int64_t n) {
  TORCH_CHECK(n >= 0, "num_classes must be >= 0");
  if (fc)
    unregister_module("fc");
  fc = nullptr;
  if (n > 0)
    fc = register_module("fc", nn::Linear(num_features_, n));
}

torch::Tensor ShuffleNetV2Impl::forward_features(torch::Tensor x) {
  x = maxpool(conv1->forward(x));
  x = stage4->forward(stage3->forward(stage2->forward(x)));
  return conv5->forward(x).mean({2, 3});
}

torch::Tensor ShuffleNetV2Impl::forward(torch::Tensor x) {
  x = forward_features(x);
  if (!fc)
    return x;
  if (dropout_ > 0)
    x = torch::dropout(x, dropout_, is_training());
  return fc(x);
}

std::vector<torch::Tensor> ShuffleNetV2Impl::forward_stages(torch::Tensor x) {
  std::vector<torch::Tensor> out;
  x = conv1->forward(x);
  out.push_back(x);
  x = stage2->forward(maxpool(x));
  out.push_back(x);
  x = stage3->forward(x);
  out.push_back(x);
  out.push_back(conv5->forward(stage4->forward(x)));
  return out;
}

std::vector<std::shared_ptr<nn::Module>> ShuffleNetV2Impl::backbone() {
  return {conv1.ptr(), maxpool.ptr(), stage2.ptr(), stage3.ptr(), stage4.ptr(), conv5.ptr()};
}

std::shared_ptr<nn::Module> ShuffleNetV2Impl::head() {
  if (fc)
    return fc.ptr();
  return std::make_shared<nn::IdentityImpl>();
}

void register_shufflenet_models() {
  const std::vector<std::pair<std::string, std::vector<int64_t>>> variants{
    {"shufflenet_v2_x0_5", {24, 48, 96, 192, 1024}},
    {"shufflenet_v2_x1_0", {24, 116, 232, 464, 1024}},
    {"shufflenet_v2_x1_5", {24, 176, 352, 704, 1024}},
    {"shufflenet_v2_x2_0", {24, 244, 488, 976, 2048}},
  };
  for (const auto& [name, channels] : variants) {
    model_entry e;
    e.name = name;
    e.family = "shufflenet_v2";
    e.heavy = name != "shufflenet_v2_x0_5";
    e.make = [ch = channels](const model_options& o) -> std::shared_ptr<ZooModelImpl> {
      check_options(o, "shufflenet_v2", {/*dropout=*/true, false, false});
      ShuffleNetV2Options s;
      s.stages_out_channels = ch;
      s.num_classes = o.num_classes;
      s.in_channels = o.in_channels;
      if (o.dropout >= 0)
        s.dropout = o.dropout;
      return ShuffleNetV2(s).ptr();
    };
    register_model(std::move(e));
  }
}

} // namespace rookery::zoo

// Rookery's own small architectures (zoo entries marked `custom`: no
// torchvision twin, so they stay out of list_models() and its parity suite).
//
// small_cnn: the small image classifier the classifier trainer uses by default,
// sized for 28x28 to 64x64 inputs (Fashion-MNIST, CIFAR-like uploads):
//   features: three conv blocks  [conv3x3 -> BN -> ReLU] x2 -> maxpool,
//             widths 32, 64, 128 (times width_mult)
//   pool:     global average pool
//   pre_logits: Linear(128w -> 256) -> ReLU   (forward_features: the embedding)
//   fc:       Dropout -> Linear(256 -> num_classes)
#include <torch/torch.h>

#include "models/zoo/families.hpp"
#include "models/zoo/zoo.hpp"

namespace rookery::zoo {

namespace {

namespace nn = torch::nn;

nn::Sequential conv_block(int64_t in, int64_t out) {
  return nn::Sequential(
    nn::Conv2d(nn::Conv2dOptions(in, out, 3).padding(1).bias(false)), nn::BatchNorm2d(out),
    nn::ReLU(nn::ReLUOptions(true)),
    nn::Conv2d(nn::Conv2dOptions(out, out, 3).padding(1).bias(false)), nn::BatchNorm2d(out),
    nn::ReLU(nn::ReLUOptions(true)), nn::MaxPool2d(nn::MaxPool2dOptions(2)));
}

class SmallCnnImpl : public ZooModelImpl {
public:
  explicit SmallCnnImpl(const model_options& o) {
    auto w = [&](int64_t c) { return std::max<int64_t>(8, static_cast<int64_t>(c * o.width_mult)); };
    widths_ = {w(32), w(64), w(128)};
    block1 = register_module("block1", conv_block(o.in_channels, widths_[0]));
    block2 = register_module("block2", conv_block(widths_[0], widths_[1]));
    block3 = register_module("block3", conv_block(widths_[1], widths_[2]));
    pre_logits = register_module("pre_logits", nn::Linear(widths_[2], kFeatures));
    dropout_ = o.dropout < 0 ? 0.3 : o.dropout;
    drop = register_module("drop", nn::Dropout(nn::DropoutOptions(dropout_)));
    reset_classifier(o.num_classes);
  }

  torch::Tensor forward(torch::Tensor x) override {
    auto f = forward_features(x);
    return fc.is_empty() ? f : fc->forward(drop->forward(f));
  }

  torch::Tensor forward_features(torch::Tensor x) override {
    x = forward_stages(x).back();
    x = x.mean({2, 3});
    return torch::relu(pre_logits->forward(x));
  }

  std::vector<torch::Tensor> forward_stages(torch::Tensor x) override {
    std::vector<torch::Tensor> out;
    x = block1->forward(x);
    out.push_back(x);
    x = block2->forward(x);
    out.push_back(x);
    x = block3->forward(x);
    out.push_back(x);
    return out;
  }

  int64_t num_features() const override { return kFeatures; }

  void reset_classifier(int64_t num_classes) override {
    if (!fc.is_empty())
      unregister_module("fc");
    fc = nn::Linear{nullptr};
    if (num_classes > 0)
      fc = register_module("fc", nn::Linear(kFeatures, num_classes));
  }

  std::vector<std::shared_ptr<nn::Module>> backbone() override {
    return {block1.ptr(), block2.ptr(), block3.ptr(), pre_logits.ptr()};
  }
  std::shared_ptr<nn::Module> head() override {
    if (fc.is_empty())
      return std::make_shared<nn::IdentityImpl>();
    return fc.ptr();
  }

  static constexpr int64_t kFeatures = 256;
  nn::Sequential block1{nullptr}, block2{nullptr}, block3{nullptr};
  nn::Linear pre_logits{nullptr}, fc{nullptr};
  nn::Dropout drop{nullptr};

private:
  std::vector<int64_t> widths_;
  double dropout_ = 0.3;
};

} // namespace

void register_small_models() {
  model_entry e;
  e.name = "small_cnn";
  e.family = "small_cnn";
  e.default_size = 28;
  e.custom = true;
  e.make = [](const model_options& o) -> std::shared_ptr<ZooModelImpl> {
    if (o.in_channels < 1 || o.num_classes < 0 || !(o.width_mult > 0))
      throw std::invalid_argument("small_cnn needs in_channels >= 1, num_classes >= 0, width_mult > 0");
    return std::make_shared<SmallCnnImpl>(o);
  };
  register_model(std::move(e));
}

} // namespace rookery::zoo

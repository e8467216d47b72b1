// keras_inception_v3: Keras's InceptionV3 (keras.applications, as in nsfwjs's
// InceptionV3 model) with nsfwjs's dense head. A `custom` zoo entry: it has no
// torchvision twin, so it stays out of list_models() and its parity suite; its
// parity is with nsfwjs itself (tests/unit/nsfwjs_parity_test.cpp).
//
// Same graph as torchvision's inception_v3 and the same module names
// (Conv2d_1a_3x3.conv, Mixed_5b.branch1x1.bn, ...; no AuxLogits), but what
// Keras computes:
//   - BatchNormalization(scale=False, epsilon=1e-3): bn.weight is fixed at 1;
//   - the 3x3 average pools of the branch_pool branches are Keras 'same' pools:
//     the padding is not counted (count_include_pad = false);
//   - 'same' convolutions are stride 1 with odd kernels (symmetric); every
//     stride-2 layer is 'valid', as in Keras;
//   - forward_features(): the global average of Mixed_7c (2048-d; nsfwjs's
//     AveragePooling2D(8) + Flatten at 299 x 299, any size here);
//   - forward(): classifier = Dense(256, relu) -> Dropout(0.5) -> Dense(128, relu)
//     -> Dropout(0.25) -> Dense(num_classes) logits (nsfwjs applies softmax).
// Options: num_classes (0: no head), in_channels, dropout (both head dropouts).
#include <torch/torch.h>

#include "models/zoo/classic_util.hpp"
#include "models/zoo/families.hpp"
#include "models/zoo/keras_layers.hpp"
#include "models/zoo/zoo.hpp"

namespace rookery::zoo {

namespace {

namespace nn = torch::nn;
using keras::ConvBn;
using keras::ConvBnOptions;
using keras::padding;

ConvBn unit(int64_t in, int64_t out, int64_t kh, int64_t kw, int64_t stride = 1,
            padding pad = padding::same) {
  ConvBnOptions o;
  o.in = in;
  o.out = out;
  o.kh = kh;
  o.kw = kw;
  o.stride = stride;
  o.pad = pad;
  o.bn_scale = false;
  o.bn_momentum = 0.99;
  o.activation = act::relu;
  return ConvBn(o);
}

// Keras AveragePooling2D((3, 3), strides=(1, 1), padding='same').
torch::Tensor avg3_same(const torch::Tensor& x) {
  return torch::avg_pool2d(x, {3, 3}, {1, 1}, {1, 1}, /*ceil_mode=*/false,
                           /*count_include_pad=*/false);
}

// Keras MaxPooling2D((3, 3), strides=(2, 2)) ('valid').
torch::Tensor max3s2(const torch::Tensor& x) {
  return torch::max_pool2d(x, {3, 3}, {2, 2});
}

// Keras's mixed0..2 (torchvision's InceptionA).
class KerasInceptionAImpl : public nn::Module {
public:
  KerasInceptionAImpl(int64_t in, int64_t pool_features) {
    b1 = register_module("branch1x1", unit(in, 64, 1, 1));
    b5_1 = register_module("branch5x5_1", unit(in, 48, 1, 1));
    b5_2 = register_module("branch5x5_2", unit(48, 64, 5, 5));
    bd_1 = register_module("branch3x3dbl_1", unit(in, 64, 1, 1));
    bd_2 = register_module("branch3x3dbl_2", unit(64, 96, 3, 3));
    bd_3 = register_module("branch3x3dbl_3", unit(96, 96, 3, 3));
    bp = register_module("branch_pool", unit(in, pool_features, 1, 1));
  }
  torch::Tensor forward(torch::Tensor x) {
    return torch::cat({b1(x), b5_2(b5_1(x)), bd_3(bd_2(bd_1(x))), bp(avg3_same(x))}, 1);
  }
  ConvBn b1{nullptr}, b5_1{nullptr}, b5_2{nullptr}, bd_1{nullptr}, bd_2{nullptr}, bd_3{nullptr},
    bp{nullptr};
};
TORCH_MODULE(KerasInceptionA);

// mixed3 (InceptionB).
class KerasInceptionBImpl : public nn::Module {
public:
  explicit KerasInceptionBImpl(int64_t in) {
    b3 = register_module("branch3x3", unit(in, 384, 3, 3, 2, padding::valid));
    bd_1 = register_module("branch3x3dbl_1", unit(in, 64, 1, 1));
    bd_2 = register_module("branch3x3dbl_2", unit(64, 96, 3, 3));
    bd_3 = register_module("branch3x3dbl_3", unit(96, 96, 3, 3, 2, padding::valid));
  }
  torch::Tensor forward(torch::Tensor x) {
    return torch::cat({b3(x), bd_3(bd_2(bd_1(x))), max3s2(x)}, 1);
  }
  ConvBn b3{nullptr}, bd_1{nullptr}, bd_2{nullptr}, bd_3{nullptr};
};
TORCH_MODULE(KerasInceptionB);

// mixed4..7 (InceptionC).
class KerasInceptionCImpl : public nn::Module {
public:
  KerasInceptionCImpl(int64_t in, int64_t c7) {
    b1 = register_module("branch1x1", unit(in, 192, 1, 1));
    b7_1 = register_module("branch7x7_1", unit(in, c7, 1, 1));
    b7_2 = register_module("branch7x7_2", unit(c7, c7, 1, 7));
    b7_3 = register_module("branch7x7_3", unit(c7, 192, 7, 1));
    bd_1 = register_module("branch7x7dbl_1", unit(in, c7, 1, 1));
    bd_2 = register_module("branch7x7dbl_2", unit(c7, c7, 7, 1));
    bd_3 = register_module("branch7x7dbl_3", unit(c7, c7, 1, 7));
    bd_4 = register_module("branch7x7dbl_4", unit(c7, c7, 7, 1));
    bd_5 = register_module("branch7x7dbl_5", unit(c7, 192, 1, 7));
    bp = register_module("branch_pool", unit(in, 192, 1, 1));
  }
  torch::Tensor forward(torch::Tensor x) {
    auto a = b7_3(b7_2(b7_1(x)));
    auto b = bd_5(bd_4(bd_3(bd_2(bd_1(x)))));
    return torch::cat({b1(x), a, b, bp(avg3_same(x))}, 1);
  }
  ConvBn b1{nullptr}, b7_1{nullptr}, b7_2{nullptr}, b7_3{nullptr}, bd_1{nullptr}, bd_2{nullptr},
    bd_3{nullptr}, bd_4{nullptr}, bd_5{nullptr}, bp{nullptr};
};
TORCH_MODULE(KerasInceptionC);

// mixed8 (InceptionD).
class KerasInceptionDImpl : public nn::Module {
public:
  explicit KerasInceptionDImpl(int64_t in) {
    b3_1 = register_module("branch3x3_1", unit(in, 192, 1, 1));
    b3_2 = register_module("branch3x3_2", unit(192, 320, 3, 3, 2, padding::valid));
    b7_1 = register_module("branch7x7x3_1", unit(in, 192, 1, 1));
    b7_2 = register_module("branch7x7x3_2", unit(192, 192, 1, 7));
    b7_3 = register_module("branch7x7x3_3", unit(192, 192, 7, 1));
    b7_4 = register_module("branch7x7x3_4", unit(192, 192, 3, 3, 2, padding::valid));
  }
  torch::Tensor forward(torch::Tensor x) {
    return torch::cat({b3_2(b3_1(x)), b7_4(b7_3(b7_2(b7_1(x)))), max3s2(x)}, 1);
  }
  ConvBn b3_1{nullptr}, b3_2{nullptr}, b7_1{nullptr}, b7_2{nullptr}, b7_3{nullptr}, b7_4{nullptr};
};
TORCH_MODULE(KerasInceptionD);

// mixed9, mixed10 (InceptionE).
class KerasInceptionEImpl : public nn::Module {
public:
  explicit KerasInceptionEImpl(int64_t in) {
    b1 = register_module("branch1x1", unit(in, 320, 1, 1));
    b3_1 = register_module("branch3x3_1", unit(in, 384, 1, 1));
    b3_2a = register_module("branch3x3_2a", unit(384, 384, 1, 3));
    b3_2b = register_module("branch3x3_2b", unit(384, 384, 3, 1));
    bd_1 = register_module("branch3x3dbl_1", unit(in, 448, 1, 1));
    bd_2 = register_module("branch3x3dbl_2", unit(448, 384, 3, 3));
    bd_3a = register_module("branch3x3dbl_3a", unit(384, 384, 1, 3));
    bd_3b = register_module("branch3x3dbl_3b", unit(384, 384, 3, 1));
    bp = register_module("branch_pool", unit(in, 192, 1, 1));
  }
  torch::Tensor forward(torch::Tensor x) {
    auto a = b3_1(x);
    a = torch::cat({b3_2a(a), b3_2b(a)}, 1);
    auto b = bd_2(bd_1(x));
    b = torch::cat({bd_3a(b), bd_3b(b)}, 1);
    return torch::cat({b1(x), a, b, bp(avg3_same(x))}, 1);
  }
  ConvBn b1{nullptr}, b3_1{nullptr}, b3_2a{nullptr}, b3_2b{nullptr}, bd_1{nullptr}, bd_2{nullptr},
    bd_3a{nullptr}, bd_3b{nullptr}, bp{nullptr};
};
TORCH_MODULE(KerasInceptionE);

class KerasInceptionV3Impl : public ZooModelImpl {
public:
  explicit KerasInceptionV3Impl(const model_options& o)
      : dropout1_(o.dropout < 0 ? 0.5 : o.dropout), dropout2_(o.dropout < 0 ? 0.25 : o.dropout) {
    auto add = [this](const std::string& name, auto holder) {
      blocks.push_back(register_module(name, holder));
      names_.push_back(name);
      run_.push_back([holder](torch::Tensor x) mutable { return holder->forward(x); });
    };
    auto pool = [this](const std::string& name) {
      names_.push_back(name);
      run_.push_back([](torch::Tensor x) { return max3s2(x); });
    };
    add("Conv2d_1a_3x3", unit(o.in_channels, 32, 3, 3, 2, padding::valid));
    add("Conv2d_2a_3x3", unit(32, 32, 3, 3, 1, padding::valid));
    add("Conv2d_2b_3x3", unit(32, 64, 3, 3));
    pool("maxpool1");
    add("Conv2d_3b_1x1", unit(64, 80, 1, 1, 1, padding::valid));
    add("Conv2d_4a_3x3", unit(80, 192, 3, 3, 1, padding::valid));
    pool("maxpool2");
    add("Mixed_5b", KerasInceptionA(192, 32));
    add("Mixed_5c", KerasInceptionA(256, 64));
    add("Mixed_5d", KerasInceptionA(288, 64));
    add("Mixed_6a", KerasInceptionB(288));
    add("Mixed_6b", KerasInceptionC(768, 128));
    add("Mixed_6c", KerasInceptionC(768, 160));
    add("Mixed_6d", KerasInceptionC(768, 160));
    add("Mixed_6e", KerasInceptionC(768, 192));
    add("Mixed_7a", KerasInceptionD(768));
    add("Mixed_7b", KerasInceptionE(1280));
    add("Mixed_7c", KerasInceptionE(2048));
    keras::init_keras(*this);
    reset_classifier(o.num_classes);
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = forward_features(x);
    return classifier.is_empty() ? x : classifier->forward(x);
  }

  torch::Tensor forward_features(torch::Tensor x) override {
    return torch::flatten(torch::adaptive_avg_pool2d(body(x, nullptr), {1, 1}), 1);
  }

  /// Conv2d_2b_3x3 (stride 2), Conv2d_4a_3x3 (4), Mixed_5d (8), Mixed_6e (16), Mixed_7c (32).
  std::vector<torch::Tensor> forward_stages(torch::Tensor x) override {
    std::vector<torch::Tensor> out;
    body(x, &out);
    return out;
  }

  int64_t num_features() const override { return 2048; }

  void reset_classifier(int64_t n) override {
    TORCH_CHECK(n >= 0, "num_classes must be >= 0");
    if (!classifier.is_empty())
      unregister_module("classifier");
    classifier = nn::Sequential{nullptr};
    if (n > 0)
      classifier = register_module("classifier", keras::keras_head(2048, n, dropout1_, dropout2_));
  }

  std::vector<std::shared_ptr<nn::Module>> backbone() override { return blocks; }

  std::shared_ptr<nn::Module> head() override {
    if (classifier.is_empty())
      return std::make_shared<nn::IdentityImpl>();
    return classifier.ptr();
  }

  std::vector<std::shared_ptr<nn::Module>> blocks;
  nn::Sequential classifier{nullptr};

private:
  torch::Tensor body(torch::Tensor x, std::vector<torch::Tensor>* stages) {
    for (size_t i = 0; i < run_.size(); ++i) {
      x = run_[i](x);
      const auto& name = names_[i];
      if (stages && (name == "Conv2d_2b_3x3" || name == "Conv2d_4a_3x3" || name == "Mixed_5d"
                     || name == "Mixed_6e" || name == "Mixed_7c"))
        stages->push_back(x);
    }
    return x;
  }

  double dropout1_, dropout2_;
  std::vector<std::function<torch::Tensor(torch::Tensor)>> run_;
  std::vector<std::string> names_;
};

} // namespace

void register_keras_inception_models() {
  model_entry e;
  e.name = "keras_inception_v3";
  e.family = "keras_inception";
  e.default_size = 299;
  e.custom = true;
  e.make = [](const model_options& o) -> std::shared_ptr<ZooModelImpl> {
    classic::check_options(o, "keras_inception_v3", {/*dropout=*/true});
    return std::make_shared<KerasInceptionV3Impl>(o);
  };
  register_model(std::move(e));
}

} // namespace rookery::zoo

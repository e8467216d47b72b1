#include "models/zoo/inception.hpp"

#include "models/zoo/classic_util.hpp"
#include "models/zoo/families.hpp"

namespace rookery::zoo {

namespace nn = torch::nn;
using namespace classic;

namespace {

using BC = BasicConv2d;

BC bc(int64_t in, int64_t out, torch::ExpandingArray<2> k, torch::ExpandingArray<2> s = 1,
      torch::ExpandingArray<2> p = 0) {
  return BC(std::make_shared<BasicConv2dImpl>(in, out, k, s, p));
}

torch::Tensor avg3(const torch::Tensor& x) {
  return torch::avg_pool2d(x, {3, 3}, {1, 1}, {1, 1});
}

torch::Tensor max3s2(const torch::Tensor& x) {
  return torch::max_pool2d(x, {3, 3}, {2, 2});
}

class InceptionAImpl : public nn::Module {
public:
  InceptionAImpl(int64_t in, int64_t pool_features) {
    b1x1 = register_module("branch1x1", bc(in, 64, 1));
    b5x5_1 = register_module("branch5x5_1", bc(in, 48, 1));
    b5x5_2 = register_module("branch5x5_2", bc(48, 64, 5, 1, 2));
    b3dbl_1 = register_module("branch3x3dbl_1", bc(in, 64, 1));
    b3dbl_2 = register_module("branch3x3dbl_2", bc(64, 96, 3, 1, 1));
    b3dbl_3 = register_module("branch3x3dbl_3", bc(96, 96, 3, 1, 1));
    bpool = register_module("branch_pool", bc(in, pool_features, 1));
  }
  torch::Tensor forward(torch::Tensor x) {
    return torch::cat({b1x1(x), b5x5_2(b5x5_1(x)), b3dbl_3(b3dbl_2(b3dbl_1(x))), bpool(avg3(x))}, 1);
  }
  BC b1x1{nullptr}, b5x5_1{nullptr}, b5x5_2{nullptr}, b3dbl_1{nullptr}, b3dbl_2{nullptr},
    b3dbl_3{nullptr}, bpool{nullptr};
};
TORCH_MODULE(InceptionA);

class InceptionBImpl : public nn::Module {
public:
  explicit InceptionBImpl(int64_t in) {
    b3x3 = register_module("branch3x3", bc(in, 384, 3, 2));
    b3dbl_1 = register_module("branch3x3dbl_1", bc(in, 64, 1));
    b3dbl_2 = register_module("branch3x3dbl_2", bc(64, 96, 3, 1, 1));
    b3dbl_3 = register_module("branch3x3dbl_3", bc(96, 96, 3, 2));
  }
  torch::Tensor forward(torch::Tensor x) {
    return torch::cat({b3x3(x), b3dbl_3(b3dbl_2(b3dbl_1(x))), max3s2(x)}, 1);
  }
  BC b3x3{nullptr}, b3dbl_1{nullptr}, b3dbl_2{nullptr}, b3dbl_3{nullptr};
};
TORCH_MODULE(InceptionB);

class InceptionCImpl : public nn::Module {
public:
  InceptionCImpl(int64_t in, int64_t c7) {
    b1x1 = register_module("branch1x1", bc(in, 192, 1));
    b7_1 = register_module("branch7x7_1", bc(in, c7, 1));
    b7_2 = register_module("branch7x7_2", bc(c7, c7, {1, 7}, 1, {0, 3}));
    b7_3 = register_module("branch7x7_3", bc(c7, 192, {7, 1}, 1, {3, 0}));
    b7d_1 = register_module("branch7x7dbl_1", bc(in, c7, 1));
    b7d_2 = register_module("branch7x7dbl_2", bc(c7, c7, {7, 1}, 1, {3, 0}));
    b7d_3 = register_module("branch7x7dbl_3", bc(c7, c7, {1, 7}, 1, {0, 3}));
    b7d_4 = register_module("branch7x7dbl_4", bc(c7, c7, {7, 1}, 1, {3, 0}));
    b7d_5 = register_module("branch7x7dbl_5", bc(c7, 192, {1, 7}, 1, {0, 3}));
    bpool = register_module("branch_pool", bc(in, 192, 1));
  }
  torch::Tensor forward(torch::Tensor x) {
    auto a = b7_3(b7_2(b7_1(x)));
    auto b = b7d_5(b7d_4(b7d_3(b7d_2(b7d_1(x)))));
    return torch::cat({b1x1(x), a, b, bpool(avg3(x))}, 1);
  }
  BC b1x1{nullptr}, b7_1{nullptr}, b7_2{nullptr}, b7_3{nullptr}, b7d_1{nullptr}, b7d_2{nullptr},
    b7d_3{nullptr}, b7d_4{nullptr}, b7d_5{nullptr}, bpool{nullptr};
};
TORCH_MODULE(InceptionC);

class InceptionDImpl : public nn::Module {
public:
  explicit InceptionDImpl(int64_t in) {
    b3_1 = register_module("branch3x3_1", bc(in, 192, 1));
    b3_2 = register_module("branch3x3_2", bc(192, 320, 3, 2));
    b7_1 = register_module("branch7x7x3_1", bc(in, 192, 1));
    b7_2 = register_module("branch7x7x3_2", bc(192, 192, {1, 7}, 1, {0, 3}));
    b7_3 = register_module("branch7x7x3_3", bc(192, 192, {7, 1}, 1, {3, 0}));
    b7_4 = register_module("branch7x7x3_4", bc(192, 192, 3, 2));
  }
  torch::Tensor forward(torch::Tensor x) {
    return torch::cat({b3_2(b3_1(x)), b7_4(b7_3(b7_2(b7_1(x)))), max3s2(x)}, 1);
  }
  BC b3_1{nullptr}, b3_2{nullptr}, b7_1{nullptr}, b7_2{nullptr}, b7_3{nullptr}, b7_4{nullptr};
};
TORCH_MODULE(InceptionD);

class InceptionEImpl : public nn::Module {
public:
  explicit InceptionEImpl(int64_t in) {
    b1x1 = register_module("branch1x1", bc(in, 320, 1));
    b3_1 = register_module("branch3x3_1", bc(in, 384, 1));
    b3_2a = register_module("branch3x3_2a", bc(384, 384, {1, 3}, 1, {0, 1}));
    b3_2b = register_module("branch3x3_2b", bc(384, 384, {3, 1}, 1, {1, 0}));
    b3d_1 = register_module("branch3x3dbl_1", bc(in, 448, 1));
    b3d_2 = register_module("branch3x3dbl_2", bc(448, 384, 3, 1, 1));
    b3d_3a = register_module("branch3x3dbl_3a", bc(384, 384, {1, 3}, 1, {0, 1}));
    b3d_3b = register_module("branch3x3dbl_3b", bc(384, 384, {3, 1}, 1, {1, 0}));
    bpool = register_module("branch_pool", bc(in, 192, 1));
  }
  torch::Tensor forward(torch::Tensor x) {
    auto a = b3_1(x);
    a = torch::cat({b3_2a(a), b3_2b(a)}, 1);
    auto b = b3d_2(b3d_1(x));
    b = torch::cat({b3d_3a(b), b3d_3b(b)}, 1);
    return torch::cat({b1x1(x), a, b, bpool(avg3(x))}, 1);
  }
  BC b1x1{nullptr}, b3_1{nullptr}, b3_2a{nullptr}, b3_2b{nullptr}, b3d_1{nullptr}, b3d_2{nullptr},
    b3d_3a{nullptr}, b3d_3b{nullptr}, bpool{nullptr};
};
TORCH_MODULE(InceptionE);

class InceptionAuxImpl : public nn::Module {
public:
  InceptionAuxImpl(int64_t in, int64_t num_classes) {
    conv0 = register_module("conv0", bc(in, 128, 1));
    conv1 = register_module("conv1", bc(128, 768, 5));
    fc = register_module("fc", nn::Linear(768, num_classes));
  }
  torch::Tensor forward(torch::Tensor x) {
    x = torch::avg_pool2d(x, {5, 5}, {3, 3});
    x = conv1(conv0(x));
    return fc(torch::flatten(torch::adaptive_avg_pool2d(x, {1, 1}), 1));
  }
  BC conv0{nullptr}, conv1{nullptr};
  nn::Linear fc{nullptr};
};
TORCH_MODULE(InceptionAux);

// torchvision: trunc_normal_(std = module.stddev if set else 0.1, [-2, 2]) for
// conv and linear weights, BN 1 / 0; biases keep their default init.
void init_inception(nn::Module& root, double std) {
  auto init = [std](nn::Module& m) {
    if (auto* c = m.as<nn::Conv2d>())
      trunc_normal_(c->weight, 0.0, std, -2, 2);
    else if (auto* l = m.as<nn::Linear>())
      trunc_normal_(l->weight, 0.0, std, -2, 2);
    else if (auto* b = m.as<nn::BatchNorm2d>()) {
      nn::init::ones_(b->weight);
      nn::init::zeros_(b->bias);
    }
  };
  init(root); // (modules(include_self) needs a shared_ptr root: not so in a constructor)
  for (auto& m : root.modules(/*include_self=*/false))
    init(*m);
}

} // namespace

InceptionV3Impl::InceptionV3Impl(const InceptionV3Options& o) : options_(o) {
  TORCH_CHECK(o.num_classes >= 0 && o.in_channels > 0, "bad InceptionV3 options");
  TORCH_CHECK(!o.transform_input || o.in_channels == 3, "transform_input needs 3 input channels");
  auto add = [this](const std::string& name, auto holder) {
    blocks.push_back(register_module(name, holder));
    names_.push_back(name);
    run_.push_back([holder](torch::Tensor x) mutable { return holder->forward(x); });
  };
  auto pool = [this](const std::string& name) {
    names_.push_back(name);
    run_.push_back([](torch::Tensor x) { return max3s2(x); });
  };
  add("Conv2d_1a_3x3", bc(o.in_channels, 32, 3, 2));
  add("Conv2d_2a_3x3", bc(32, 32, 3));
  add("Conv2d_2b_3x3", bc(32, 64, 3, 1, 1));
  pool("maxpool1");
  add("Conv2d_3b_1x1", bc(64, 80, 1));
  add("Conv2d_4a_3x3", bc(80, 192, 3));
  pool("maxpool2");
  add("Mixed_5b", InceptionA(192, 32));
  add("Mixed_5c", InceptionA(256, 64));
  add("Mixed_5d", InceptionA(288, 64));
  add("Mixed_6a", InceptionB(288));
  add("Mixed_6b", InceptionC(768, 128));
  add("Mixed_6c", InceptionC(768, 160));
  add("Mixed_6d", InceptionC(768, 160));
  add("Mixed_6e", InceptionC(768, 192));
  add("Mixed_7a", InceptionD(768));
  add("Mixed_7b", InceptionE(1280));
  add("Mixed_7c", InceptionE(2048));
  init_inception(*this, 0.1);
  reset_classifier(o.num_classes);
}

void InceptionV3Impl::reset_classifier(int64_t n) {
  TORCH_CHECK(n >= 0, "num_classes must be >= 0");
  for (const char* name : {"AuxLogits", "fc"})
    if (named_children().contains(name))
      unregister_module(name);
  aux = nullptr;
  fc = nullptr;
  if (n > 0) {
    if (options_.aux_logits) {
      InceptionAux a(768, n);
      init_inception(*a, 0.1);
      trunc_normal_(a->conv1->conv->weight, 0.0, 0.01, -2, 2);
      trunc_normal_(a->fc->weight, 0.0, 0.001, -2, 2);
      aux = register_module("AuxLogits", a);
    }
    fc = register_module("fc", nn::Linear(2048, n));
    trunc_normal_(fc->weight, 0.0, 0.1, -2, 2);
  }
  options_.num_classes = n;
}

torch::Tensor InceptionV3Impl::body(torch::Tensor x, std::vector<torch::Tensor>* stages,
                                    torch::Tensor* aux_out) {
  if (options_.transform_input) {
    const double mean[3] = {0.485, 0.456, 0.406}, std[3] = {0.229, 0.224, 0.225};
    std::vector<torch::Tensor> ch;
    for (int c = 0; c < 3; ++c)
      ch.push_back(torch::unsqueeze(x.select(1, c), 1) * (std[c] / 0.5) + (mean[c] - 0.5) / 0.5);
    x = torch::cat(ch, 1);
  }
  for (size_t i = 0; i < run_.size(); ++i) {
    x = run_[i](x);
    const auto& name = names_[i];
    if (stages && (name == "Conv2d_2b_3x3" || name == "Conv2d_4a_3x3" || name == "Mixed_5d"
                   || name == "Mixed_6e" || name == "Mixed_7c"))
      stages->push_back(x);
    if (aux_out && aux && name == "Mixed_6e")
      *aux_out = std::static_pointer_cast<InceptionAuxImpl>(aux)->forward(x);
  }
  return torch::flatten(torch::adaptive_avg_pool2d(x, {1, 1}), 1);
}

torch::Tensor InceptionV3Impl::forward_features(torch::Tensor x) {
  return body(x, nullptr, nullptr);
}

torch::Tensor InceptionV3Impl::forward(torch::Tensor x) {
  x = forward_features(x);
  if (!fc)
    return x;
  return fc(torch::dropout(x, options_.dropout, is_training()));
}

std::vector<torch::Tensor> InceptionV3Impl::forward_with_aux(torch::Tensor x) {
  torch::Tensor a;
  x = body(x, nullptr, &a);
  if (fc)
    x = fc(torch::dropout(x, options_.dropout, is_training()));
  return {x, a};
}

std::vector<torch::Tensor> InceptionV3Impl::forward_stages(torch::Tensor x) {
  std::vector<torch::Tensor> out;
  body(x, &out, nullptr);
  return out;
}

std::vector<std::shared_ptr<nn::Module>> InceptionV3Impl::backbone() {
  return blocks;
}

std::shared_ptr<nn::Module> InceptionV3Impl::head() {
  if (fc)
    return fc.ptr();
  return std::make_shared<nn::IdentityImpl>();
}

std::vector<std::shared_ptr<nn::Module>> InceptionV3Impl::aux_heads() {
  if (aux)
    return {aux};
  return {};
}

void register_inception_models() {
  model_entry e;
  e.name = "inception_v3";
  e.family = "inception";
  e.default_size = 299;
  e.make = [](const model_options& o) -> std::shared_ptr<ZooModelImpl> {
    check_options(o, "inception", {/*dropout=*/true, false, false, /*aux_logits=*/true});
    InceptionV3Options v;
    v.num_classes = o.num_classes;
    v.in_channels = o.in_channels;
    v.aux_logits = o.aux_logits;
    v.transform_input = o.transform_input;
    if (o.dropout >= 0)
      v.dropout = o.dropout;
    return InceptionV3(v).ptr();
  };
  register_model(std::move(e));
}

} // namespace rookery::zoo

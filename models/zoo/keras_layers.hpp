// Building blocks of the Keras-flavoured zoo models (keras_inception_v3,
// keras_mobilenet_v2): layers that compute what Keras computes, not what
// torchvision does.
//
//   KerasConvBn  Conv2D / DepthwiseConv2D (no bias) -> BatchNormalization -> activation,
//                as "conv" and "bn" (no parameters for the activation). TF padding:
//                'same' pads total = max((ceil(in / s) - 1) * s + k - in, 0), the smaller
//                half first (asymmetric at stride 2, unlike PyTorch's symmetric padding);
//                'valid' pads nothing; zero_pad is an explicit ZeroPadding2D before the
//                conv. BN epsilon 1e-3 (Keras's default; PyTorch's is 1e-5) and, for
//                scale=False (Keras InceptionV3), a weight fixed at 1 that is not trained.
//   keras_head() nsfwjs's classifier head: Dense(256, relu) -> Dropout -> Dense(128, relu)
//                -> Dropout -> Dense(num_classes) as a Sequential "0" ... "6"
//                (the final softmax is not part of forward(): the zoo returns logits).
//   init_keras() Keras's default initialisers: glorot_uniform kernels, zero biases.
//
// Included only by models/zoo sources (it pulls in LibTorch's nn headers).
#pragma once
#include <cstdint>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

#include "models/zoo/layers.hpp"

namespace rookery::zoo::keras {

enum class padding { valid, same };

struct ConvBnOptions {
  int64_t in = 0, out = 0;
  int64_t kh = 1, kw = 1;
  int64_t stride = 1;
  bool depthwise = false;          // DepthwiseConv2D (depth_multiplier 1): out == in
  padding pad = padding::same;
  std::vector<int64_t> zero_pad;   // ZeroPadding2D first: {left, right, top, bottom}
  bool bn_scale = true;            // false: BatchNormalization(scale=False)
  double bn_momentum = 0.99;       // Keras's momentum (PyTorch's is 1 - it)
  act activation = act::relu;
};

class ConvBnImpl : public torch::nn::Module {
public:
  explicit ConvBnImpl(const ConvBnOptions& o);
  torch::Tensor forward(torch::Tensor x);

  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
  ConvBnOptions options;

private:
  bool symmetric_ = true; // 'same' padding that the conv itself can apply
};
TORCH_MODULE(ConvBn);

/// TF's 'same' padding of one dimension: {before, after}.
std::pair<int64_t, int64_t> same_padding(int64_t in, int64_t kernel, int64_t stride);

/// nsfwjs's dense head on `features` inputs (num_classes > 0).
torch::nn::Sequential keras_head(int64_t features, int64_t num_classes, double dropout1,
                                 double dropout2);

/// glorot_uniform for every Conv2d / Linear weight below `m`, zero biases,
/// BatchNorm weight 1 / bias 0 (submodules only, as init_cnn()).
void init_keras(torch::nn::Module& m);

} // namespace rookery::zoo::keras

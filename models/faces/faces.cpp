// face-api's three networks in LibTorch, and the geometry between them,
// written from face-api 1.7.15's source (src/ssdMobilenetv1, faceLandmarkNet,
// faceFeatureExtractor, faceRecognitionNet, dom/NetInput.ts, classes/).
// Tensors are NCHW here; TF.js computes NHWC, so weights are transposed at
// load time and TF's "same" padding (more at the bottom/right when odd) is
// reproduced explicitly.
#include "models/faces/faces.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <numeric>

#include <unistd.h>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

namespace rookery::faces {

namespace {

using torch::Tensor;
namespace F = torch::nn::functional;

bool file_exists(const std::string& p) {
  std::ifstream f(p);
  return f.good();
}

// -- .rktw files (scripts/faces/convert.js) -----------------------------------

using weight_map = std::map<std::string, Tensor>;

result<weight_map> read_rktw(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return fail(errc::not_found, "no weights file " + path + " (run scripts/setup.sh)");
  auto bad = [&](const std::string& why) { return fail(errc::unprocessable, path + ": " + why); };
  char magic[8];
  uint32_t count = 0;
  if (!in.read(magic, 8) || std::memcmp(magic, "RKTW0001", 8) != 0)
    return bad("not an .rktw file");
  if (!in.read(reinterpret_cast<char*>(&count), 4) || count > 100000)
    return bad("bad header");
  weight_map out;
  for (uint32_t i = 0; i < count; ++i) {
    uint32_t len = 0, ndim = 0;
    if (!in.read(reinterpret_cast<char*>(&len), 4) || len == 0 || len > 4096)
      return bad("bad tensor name");
    std::string name(len, '\0');
    if (!in.read(name.data(), len) || !in.read(reinterpret_cast<char*>(&ndim), 4) || ndim > 8)
      return bad("bad tensor header");
    std::vector<int64_t> dims(ndim);
    int64_t numel = 1;
    for (auto& d : dims) {
      uint32_t v = 0;
      if (!in.read(reinterpret_cast<char*>(&v), 4) || v > (1u << 28))
        return bad("bad shape of " + name);
      d = v;
      numel *= d;
      if (numel > (int64_t{1} << 30))
        return bad("tensor " + name + " is too large");
    }
    auto t = torch::empty(dims, torch::kFloat32);
    if (!in.read(reinterpret_cast<char*>(t.data_ptr<float>()), numel * 4))
      return bad("truncated data of " + name);
    out.emplace(std::move(name), std::move(t));
  }
  return out;
}

/// Looks tensors up by TF.js name and checks their shapes.
struct weights {
  weight_map map;
  std::string file;
  std::vector<std::string> errors;

  Tensor get(const std::string& name, std::vector<int64_t> shape = {}) {
    auto i = map.find(name);
    if (i == map.end()) {
      errors.push_back("missing " + name);
      return torch::zeros({1});
    }
    if (!shape.empty() && i->second.sizes() != c10::IntArrayRef(shape)) {
      errors.push_back(name + " has shape " + c10::str(i->second.sizes()));
      return torch::zeros({1});
    }
    return i->second;
  }
  int64_t rank(const std::string& name) {
    auto i = map.find(name);
    return i == map.end() ? -1 : i->second.dim();
  }
};

// -- layers ------------------------------------------------------------------

/// A TF conv: filters HWIO (or depthwise HWC1) turned into torch's layout.
struct conv {
  Tensor w;        // OIHW, or (C, 1, kh, kw) for depthwise
  Tensor b;        // (O) or undefined
  int64_t stride = 1;
  bool same = true;
  int64_t groups = 1;
  int64_t kh = 1, kw = 1;

  Tensor operator()(const Tensor& x) const {
    Tensor in = x;
    int64_t ph0 = 0, ph1 = 0, pw0 = 0, pw1 = 0;
    if (same) { // TF: out = ceil(in / s); pad total, the odd one at the end
      auto pad = [&](int64_t n, int64_t k, int64_t& a, int64_t& e) {
        const int64_t out = (n + stride - 1) / stride;
        const int64_t total = std::max<int64_t>((out - 1) * stride + k - n, 0);
        a = total / 2;
        e = total - a;
      };
      pad(x.size(2), kh, ph0, ph1);
      pad(x.size(3), kw, pw0, pw1);
    }
    std::vector<int64_t> padding = {0, 0};
    if (ph0 == ph1 && pw0 == pw1) {
      padding = {ph0, pw0};
    } else {
      in = F::pad(x, F::PadFuncOptions({pw0, pw1, ph0, ph1}));
    }
    return at::conv2d(in, w, b, {stride, stride}, padding, {1, 1}, groups);
  }
};

conv load_conv(weights& wm, const std::string& filters, const std::string& bias, int64_t stride,
               bool same = true) {
  conv c;
  auto f = wm.get(filters);
  if (f.dim() != 4) {
    wm.errors.push_back(filters + " is not a 4-d filter");
    return c;
  }
  c.kh = f.size(0);
  c.kw = f.size(1);
  c.w = f.permute({3, 2, 0, 1}).contiguous(); // HWIO -> OIHW
  if (!bias.empty())
    c.b = wm.get(bias, {f.size(3)});
  c.stride = stride;
  c.same = same;
  return c;
}

conv load_depthwise(weights& wm, const std::string& filters, int64_t stride) {
  conv c;
  auto f = wm.get(filters);
  if (f.dim() != 4) {
    wm.errors.push_back(filters + " is not a 4-d filter");
    return c;
  }
  c.kh = f.size(0);
  c.kw = f.size(1);
  const int64_t in = f.size(2), mult = f.size(3);
  c.w = f.permute({2, 3, 0, 1}).reshape({in * mult, 1, c.kh, c.kw}).contiguous();
  c.groups = in;
  c.stride = stride;
  return c;
}

Tensor clip6(const Tensor& x) { return x.clamp(0, 6); }

/// Channel vector (C) broadcast over NCHW.
Tensor chan(const Tensor& v) { return v.reshape({1, -1, 1, 1}); }

// -- SSD MobileNetV1 (src/ssdMobilenetv1) --------------------------------------

struct ssd_net {
  struct pair {
    conv dw;
    Tensor bn_a, bn_b; // batch norm folded: x * a + b
    conv pw;
  };
  conv conv0;
  std::vector<pair> layers; // conv_1 .. conv_13
  std::vector<conv> pred;   // prediction_layer conv_0 .. conv_7
  std::vector<conv> box_enc, cls;
  Tensor anchors; // (N, 4)

  void load(weights& wm) {
    auto pointwise = [&](const std::string& prefix, int idx, int64_t stride) {
      // "pointwise" layers: conv (bias = the folded batch norm offset), relu6
      return load_conv(wm, prefix + "/Conv2d_" + std::to_string(idx) + "_pointwise/weights",
                       prefix + "/Conv2d_" + std::to_string(idx) + "_pointwise/convolution_bn_offset",
                       stride);
    };
    conv0 = pointwise("MobilenetV1", 0, 2);
    const double eps = 0.0010000000474974513;
    for (int i = 1; i <= 13; ++i) {
      const bool down = i == 2 || i == 4 || i == 6 || i == 12;
      const std::string p = "MobilenetV1/Conv2d_" + std::to_string(i) + "_depthwise";
      pair l;
      l.dw = load_depthwise(wm, p + "/depthwise_weights", down ? 2 : 1);
      auto gamma = wm.get(p + "/BatchNorm/gamma").to(torch::kFloat64);
      auto beta = wm.get(p + "/BatchNorm/beta").to(torch::kFloat64);
      auto mean = wm.get(p + "/BatchNorm/moving_mean").to(torch::kFloat64);
      auto var = wm.get(p + "/BatchNorm/moving_variance").to(torch::kFloat64);
      auto a = gamma / torch::sqrt(var + eps);
      l.bn_a = chan(a.to(torch::kFloat32));
      l.bn_b = chan((beta - mean * a).to(torch::kFloat32));
      l.pw = pointwise("MobilenetV1", i, 1);
      layers.push_back(std::move(l));
    }
    for (int i = 0; i < 8; ++i)
      pred.push_back(pointwise("Prediction", i, i % 2 == 1 ? 2 : 1));
    for (int i = 0; i < 6; ++i) {
      const std::string p = "Prediction/BoxPredictor_" + std::to_string(i);
      box_enc.push_back(load_conv(wm, p + "/BoxEncodingPredictor/weights",
                                  p + "/BoxEncodingPredictor/biases", 1));
      cls.push_back(load_conv(wm, p + "/ClassPredictor/weights", p + "/ClassPredictor/biases", 1));
    }
    auto extra = wm.get("Output/extra_dim");
    if (extra.dim() != 3 || extra.size(2) != 4)
      wm.errors.push_back("Output/extra_dim is not (1, N, 4)");
    else
      anchors = extra.reshape({-1, 4});
  }

  /// x: (1, 3, 512, 512) in [-1, 1] -> boxes (N, 4) [ymin, xmin, ymax, xmax]
  /// relative to the padded square, scores (N).
  std::pair<Tensor, Tensor> forward(const Tensor& x) const {
    Tensor out = clip6(conv0(x));
    Tensor conv11;
    for (size_t i = 0; i < layers.size(); ++i) {
      auto& l = layers[i];
      out = clip6(l.dw(out) * l.bn_a + l.bn_b);
      out = clip6(l.pw(out));
      if (i + 1 == 11)
        conv11 = out;
    }
    std::vector<Tensor> p(8);
    p[0] = clip6(pred[0](out));
    for (int i = 1; i < 8; ++i)
      p[i] = clip6(pred[i](p[i - 1]));
    const Tensor feats[6] = {conv11, out, p[1], p[3], p[5], p[7]};
    std::vector<Tensor> enc, cl;
    for (int i = 0; i < 6; ++i) { // NHWC order of anchors: (y, x, anchor)
      const int64_t n = feats[i].size(0);
      enc.push_back(box_enc[i](feats[i]).permute({0, 2, 3, 1}).reshape({n, -1, 4}));
      cl.push_back(cls[i](feats[i]).permute({0, 2, 3, 1}).reshape({n, -1, 3}));
    }
    auto box = torch::cat(enc, 1).reshape({-1, 4});
    auto logits = torch::cat(cl, 1).reshape({-1, 3});
    // outputLayer.ts: decode against the anchors.
    auto a = anchors;
    auto size0 = a.select(1, 2) - a.select(1, 0);
    auto size1 = a.select(1, 3) - a.select(1, 1);
    auto c0 = a.select(1, 0) + size0 / 2;
    auto c1 = a.select(1, 1) + size1 / 2;
    auto half0 = torch::exp(box.select(1, 2) / 5) * size0 / 2;
    auto mid0 = box.select(1, 0) / 10 * size0 + c0;
    auto half1 = torch::exp(box.select(1, 3) / 5) * size1 / 2;
    auto mid1 = box.select(1, 1) / 10 * size1 + c1;
    auto boxes = torch::stack({mid0 - half0, mid1 - half1, mid0 + half0, mid1 + half1}, 1);
    auto scores = torch::sigmoid(logits.select(1, 1));
    return {boxes.contiguous(), scores.contiguous()};
  }
};

// -- landmark net (src/faceFeatureExtractor, faceLandmarkNet) -------------------

struct sep_conv { // tf.separableConv2d + bias
  conv dw, pw;
  Tensor operator()(const Tensor& x) const { return pw(dw(x)); }
};

sep_conv load_sep(weights& wm, const std::string& p, int64_t stride) {
  sep_conv s;
  s.dw = load_depthwise(wm, p + "/depthwise_filter", stride);
  s.pw = load_conv(wm, p + "/pointwise_filter", p + "/bias", 1);
  return s;
}

struct landmark_net {
  struct block {
    conv first;   // dense0 only: a plain conv
    sep_conv c0;  // the others
    sep_conv c1, c2, c3;
    bool is_first = false;
  };
  std::vector<block> blocks;
  Tensor fc_w, fc_b; // (256, 136), (136)

  void load(weights& wm) {
    for (int i = 0; i < 4; ++i) {
      const std::string p = "dense" + std::to_string(i);
      block b;
      b.is_first = i == 0;
      if (b.is_first)
        b.first = load_conv(wm, p + "/conv0/filters", p + "/conv0/bias", 2);
      else
        b.c0 = load_sep(wm, p + "/conv0", 2);
      b.c1 = load_sep(wm, p + "/conv1", 1);
      b.c2 = load_sep(wm, p + "/conv2", 1);
      b.c3 = load_sep(wm, p + "/conv3", 1);
      blocks.push_back(std::move(b));
    }
    fc_w = wm.get("fc/weights", {256, 136});
    fc_b = wm.get("fc/bias", {136});
  }

  /// x: (N, 3, 112, 112), mean-subtracted / 255 -> (N, 136), relative x, y pairs.
  Tensor forward(const Tensor& x) const {
    Tensor out = x;
    for (auto& b : blocks) {
      auto o1 = torch::relu(b.is_first ? b.first(out) : b.c0(out));
      auto o2 = b.c1(o1);
      auto o3 = b.c2(torch::relu(o1 + o2));
      auto o4 = b.c3(torch::relu(o1 + (o2 + o3)));
      out = torch::relu(o1 + (o2 + (o3 + o4)));
    }
    out = at::avg_pool2d(out, {7, 7}, {2, 2});
    // NHWC flatten (1x1 spatially here) then the fully connected layer.
    out = out.permute({0, 2, 3, 1}).reshape({out.size(0), -1});
    return at::matmul(out, fc_w) + fc_b;
  }
};

// -- face recognition ResNet (src/faceRecognitionNet) -------------------------

struct scaled_conv { // conv + bias, then x * weights + biases
  conv c;
  Tensor s_w, s_b;
  Tensor operator()(const Tensor& x, bool relu) const {
    auto out = c(x) * s_w + s_b;
    return relu ? torch::relu(out) : out;
  }
};

scaled_conv load_scaled(weights& wm, const std::string& p, int64_t stride, bool same) {
  scaled_conv s;
  s.c = load_conv(wm, p + "/conv/filters", p + "/conv/bias", stride, same);
  s.s_w = chan(wm.get(p + "/scale/weights"));
  s.s_b = chan(wm.get(p + "/scale/biases"));
  return s;
}

struct recognition_net {
  struct residual {
    scaled_conv c1, c2;
    bool down = false;
  };
  scaled_conv stem;
  std::vector<residual> layers;
  Tensor fc; // (256, 128)

  void load(weights& wm) {
    stem = load_scaled(wm, "conv32_down", 2, false);
    const char* names[] = {"conv32_1",     "conv32_2",  "conv32_3",  "conv64_down",
                           "conv64_1",     "conv64_2",  "conv64_3",  "conv128_down",
                           "conv128_1",    "conv128_2", "conv256_down", "conv256_1",
                           "conv256_2",    "conv256_down_out"};
    for (const char* n : names) {
      residual r;
      r.down = std::strstr(n, "down") != nullptr;
      r.c1 = load_scaled(wm, std::string(n) + "/conv1", r.down ? 2 : 1, !r.down);
      r.c2 = load_scaled(wm, std::string(n) + "/conv2", 1, true);
      layers.push_back(std::move(r));
    }
    fc = wm.get("fc", {256, 128});
  }

  /// x: (N, 3, 150, 150), mean-subtracted / 255 -> (N, 128).
  Tensor forward(const Tensor& x) const {
    auto out = stem(x, true);
    out = at::max_pool2d(out, {3, 3}, {2, 2});
    for (auto& r : layers) {
      if (!r.down) {
        auto o = r.c2(r.c1(out, true), false);
        out = torch::relu(o + out);
        continue;
      }
      auto o = r.c2(r.c1(out, true), false);
      auto pooled = at::avg_pool2d(out, {2, 2}, {2, 2});
      if (pooled.size(2) != o.size(2) || pooled.size(3) != o.size(3))
        o = F::pad(o, F::PadFuncOptions({0, 1, 0, 1})); // one zero row and column at the end
      if (pooled.size(1) != o.size(1))
        pooled = torch::cat({pooled, torch::zeros_like(pooled)}, 1);
      out = torch::relu(pooled + o);
    }
    auto avg = out.mean({2, 3});
    return at::matmul(avg, fc);
  }
};

// -- image geometry (dom/NetInput.ts, ops/padToSquare.ts, TF's resizeBilinear) --

/// The crop (x0, y0, w, h) of `img` padded with zeros to a square (image at
/// the top-left, or centred as padToSquare(isCenterImage) does), resized to
/// size x size with TF's bilinear resize (alignCorners = false,
/// halfPixelCenters = false, arithmetic in doubles as tfjs' cpu kernel), as
/// float pixel values, HWC.
std::vector<float> square_resize(const rgb_image& img, int64_t x0, int64_t y0, int64_t w,
                                 int64_t h, int64_t size, bool centre) {
  const int64_t side = std::max(w, h);
  const int64_t diff = std::abs(w - h);
  int64_t offx = 0, offy = 0; // where the crop starts inside the square
  if (centre && diff > 0) {
    const int64_t append = static_cast<int64_t>(std::floor(diff * 0.5 + 0.5)); // Math.round
    const int64_t before = diff - append;
    (w < h ? offx : offy) = before;
  }
  auto at = [&](int64_t r, int64_t c, int ch) -> double {
    const int64_t yy = r - offy, xx = c - offx;
    if (yy < 0 || xx < 0 || yy >= h || xx >= w)
      return 0.0;
    return img.pixels[static_cast<size_t>(((y0 + yy) * img.width + (x0 + xx)) * 3 + ch)];
  };
  std::vector<float> out(static_cast<size_t>(size * size * 3));
  if (side == size) {
    for (int64_t r = 0; r < size; ++r)
      for (int64_t c = 0; c < size; ++c)
        for (int ch = 0; ch < 3; ++ch)
          out[static_cast<size_t>((r * size + c) * 3 + ch)] = static_cast<float>(at(r, c, ch));
    return out;
  }
  const double ratio = static_cast<double>(side) / static_cast<double>(size);
  std::vector<int64_t> lo(static_cast<size_t>(size)), hi(static_cast<size_t>(size));
  std::vector<double> frac(static_cast<size_t>(size));
  for (int64_t i = 0; i < size; ++i) {
    const double src = ratio * static_cast<double>(i);
    lo[static_cast<size_t>(i)] = std::max<int64_t>(0, static_cast<int64_t>(std::floor(src)));
    frac[static_cast<size_t>(i)] = src - static_cast<double>(lo[static_cast<size_t>(i)]);
    hi[static_cast<size_t>(i)] = std::min<int64_t>(side - 1, static_cast<int64_t>(std::ceil(src)));
  }
  for (int64_t r = 0; r < size; ++r) {
    const auto rt = lo[static_cast<size_t>(r)], rb = hi[static_cast<size_t>(r)];
    const double rf = frac[static_cast<size_t>(r)];
    for (int64_t c = 0; c < size; ++c) {
      const auto cl = lo[static_cast<size_t>(c)], cr = hi[static_cast<size_t>(c)];
      const double cf = frac[static_cast<size_t>(c)];
      for (int ch = 0; ch < 3; ++ch) {
        const double tl = at(rt, cl, ch), tr = at(rt, cr, ch);
        const double bl = at(rb, cl, ch), br = at(rb, cr, ch);
        const double top = tl + (tr - tl) * cf;
        const double bottom = bl + (br - bl) * cf;
        out[static_cast<size_t>((r * size + c) * 3 + ch)] = static_cast<float>(top + (bottom - top) * rf);
      }
    }
  }
  return out;
}

/// HWC floats -> (1, 3, S, S) with FaceFeatureExtractor/FaceRecognitionNet's
/// normalisation: (v - mean_rgb) / 255 in float32.
Tensor mean_normalised(const std::vector<float>& hwc, int64_t size) {
  const float mean[3] = {122.782f, 117.001f, 104.298f};
  auto t = torch::empty({1, 3, size, size}, torch::kFloat32);
  float* d = t.data_ptr<float>();
  const int64_t plane = size * size;
  for (int64_t i = 0; i < plane; ++i)
    for (int c = 0; c < 3; ++c)
      d[c * plane + i] = (hwc[static_cast<size_t>(i * 3 + c)] - mean[c]) / 255.0f;
  return t;
}

/// face-api's NMS (ssdMobilenetv1/nonMaxSuppression.ts): candidates above
/// the threshold, best first (stable), kept unless a kept box overlaps with
/// IoU > iou_threshold; IoU on the raw (unclipped) corner boxes.
std::vector<int64_t> nms(const float* boxes, const std::vector<double>& scores, int64_t max_out,
                         double iou_threshold, double score_threshold) {
  auto iou_at = [&](int64_t i, int64_t j) {
    const float* a = boxes + i * 4;
    const float* b = boxes + j * 4;
    const double ymin_i = std::min(a[0], a[2]), xmin_i = std::min(a[1], a[3]);
    const double ymax_i = std::max(a[0], a[2]), xmax_i = std::max(a[1], a[3]);
    const double ymin_j = std::min(b[0], b[2]), xmin_j = std::min(b[1], b[3]);
    const double ymax_j = std::max(b[0], b[2]), xmax_j = std::max(b[1], b[3]);
    const double area_i = (ymax_i - ymin_i) * (xmax_i - xmin_i);
    const double area_j = (ymax_j - ymin_j) * (xmax_j - xmin_j);
    if (area_i <= 0 || area_j <= 0)
      return 0.0;
    const double iy0 = std::max(ymin_i, ymin_j), ix0 = std::max(xmin_i, xmin_j);
    const double iy1 = std::min(ymax_i, ymax_j), ix1 = std::min(xmax_i, xmax_j);
    const double inter = std::max(iy1 - iy0, 0.0) * std::max(ix1 - ix0, 0.0);
    return inter / (area_i + area_j - inter);
  };
  const int64_t n = static_cast<int64_t>(scores.size());
  const int64_t out_size = std::min(max_out, n);
  std::vector<int64_t> cand;
  for (int64_t i = 0; i < n; ++i)
    if (scores[static_cast<size_t>(i)] > score_threshold)
      cand.push_back(i);
  std::stable_sort(cand.begin(), cand.end(), [&](int64_t a, int64_t b) {
    return scores[static_cast<size_t>(a)] > scores[static_cast<size_t>(b)];
  });
  std::vector<int64_t> selected;
  for (auto c : cand) {
    if (static_cast<int64_t>(selected.size()) >= out_size)
      break;
    bool keep = true;
    for (auto j = selected.rbegin(); j != selected.rend(); ++j)
      if (iou_at(c, *j) > iou_threshold) {
        keep = false;
        break;
      }
    if (keep)
      selected.push_back(c);
  }
  return selected;
}

/// face-api's Box#rescale round trip in FaceDetection#forSize(w, h): the box
/// made relative (times 1/w, 1/h) and back.
rect for_size(const rect& b, double w, double h) {
  const double rw = 1.0 / w, rh = 1.0 / h;
  return rect{b.x * rw * w, b.y * rh * h, b.width * rw * w, b.height * rh * h};
}

std::string exe_dir() {
  char buf[4096];
  const auto n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0)
    return {};
  std::string p(buf, static_cast<size_t>(n));
  auto slash = p.rfind('/');
  return slash == std::string::npos ? std::string{} : p.substr(0, slash);
}

} // namespace

// -- public geometry -------------------------------------------------------------

rect clip_at_image_borders(const rect& r, int64_t width, int64_t height) {
  const double cx = std::max(r.x, 0.0), cy = std::max(r.y, 0.0);
  const double nw = (r.x + r.width) - cx, nh = (r.y + r.height) - cy;
  const double cw = std::min(nw, static_cast<double>(width) - cx);
  const double ch = std::min(nh, static_cast<double>(height) - cy);
  return rect{std::floor(cx), std::floor(cy), std::floor(cw), std::floor(ch)};
}

rect descriptor_rect(const std::vector<point>& lm, double crop_w, double crop_h) {
  auto centre = [&](size_t from, size_t to) {
    double x = 0, y = 0;
    for (size_t i = from; i < to && i < lm.size(); ++i) {
      x += lm[i][0];
      y += lm[i][1];
    }
    const double n = static_cast<double>(to - from);
    return point{x / n, y / n};
  };
  const point le = centre(36, 42), re = centre(42, 48), mouth = centre(48, 68);
  auto dist = [&](const point& p) { return std::hypot(mouth[0] - p[0], mouth[1] - p[1]); };
  const double eye_to_mouth = (dist(le) + dist(re)) / 2;
  const double size = std::floor(eye_to_mouth / 0.45);
  const double rx = (le[0] + re[0] + mouth[0]) / 3, ry = (le[1] + re[1] + mouth[1]) / 3;
  const double x = std::floor(std::max(0.0, rx - 0.5 * size));
  const double y = std::floor(std::max(0.0, ry - 0.43 * size));
  return rect{x, y, std::min(size, crop_w + x), std::min(size, crop_h + y)};
}

double iou(const rect& a, const rect& b) {
  const double x0 = std::max(a.x, b.x), y0 = std::max(a.y, b.y);
  const double x1 = std::min(a.x + a.width, b.x + b.width), y1 = std::min(a.y + a.height, b.y + b.height);
  const double inter = std::max(0.0, x1 - x0) * std::max(0.0, y1 - y0);
  const double uni = a.width * a.height + b.width * b.height - inter;
  return uni > 0 ? inter / uni : 0.0;
}

std::string builtin_models_dir() {
  if (const char* env = std::getenv("ROOKERY_FACES_MODELS"); env && *env)
    return env;
  const auto exe = exe_dir();
  // A binary built elsewhere than build/ (build-debug/, ...) finds setup's copy next door.
  const std::string sibling = exe + "/../build/builtin-models/faces";
  if (!file_exists(exe + "/builtin-models/faces/meta.json") && file_exists(sibling + "/meta.json"))
    return sibling;
  return exe + "/builtin-models/faces";
}

// -- the models ------------------------------------------------------------------

struct face_models::impl {
  weights_info info;
  int threads = 0;
  ssd_net ssd;
  landmark_net lm;
  recognition_net rec;

  void apply_threads() const {
    if (threads > 0 && at::get_num_threads() != threads)
      at::set_num_threads(threads);
  }
};

face_models::face_models(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
face_models::~face_models() = default;
const weights_info& face_models::info() const { return impl_->info; }

result<std::unique_ptr<face_models>> face_models::load(const std::string& dir, int threads) {
  auto p = std::make_unique<impl>();
  p->threads = threads;
  p->info.dir = dir;
  {
    std::ifstream in(dir + "/meta.json");
    if (!in)
      return fail(errc::not_found, "no converted face-api weights in " + dir
                                     + " (scripts/setup.sh installs and converts them)");
    auto j = nlohmann::json::parse(in, nullptr, false);
    if (!j.is_object())
      return fail(errc::unprocessable, dir + "/meta.json is not a JSON object");
    p->info.package = j.value("package", std::string{});
    p->info.version = j.value("version", std::string{});
    p->info.license = j.value("license", std::string{});
  }
  try {
    torch::NoGradGuard no_grad;
    auto load_net = [&](const std::string& file, auto& net) -> status {
      auto m = read_rktw(dir + "/" + file);
      if (!m)
        return m.error();
      weights w{std::move(*m), file, {}};
      net.load(w);
      if (!w.errors.empty()) {
        std::string msg = file + ": ";
        for (size_t i = 0; i < w.errors.size() && i < 5; ++i)
          msg += (i ? "; " : "") + w.errors[i];
        return fail(errc::unprocessable, msg);
      }
      return {};
    };
    if (auto s = load_net("ssd_mobilenetv1_model.rktw", p->ssd); !s)
      return s.error();
    if (auto s = load_net("face_landmark_68_model.rktw", p->lm); !s)
      return s.error();
    if (auto s = load_net("face_recognition_model.rktw", p->rec); !s)
      return s.error();
  } catch (const std::exception& e) {
    return fail(errc::unprocessable, std::string("cannot build the face networks: ") + e.what());
  }
  if (threads > 0)
    at::set_num_threads(threads);
  return std::unique_ptr<face_models>(new face_models(std::move(p)));
}

result<std::vector<detection>> face_models::detect(const rgb_image& img, const detector_options& opt) {
  if (img.width <= 0 || img.height <= 0
      || img.pixels.size() != static_cast<size_t>(img.width * img.height * 3))
    return fail(errc::bad_request, "faces: empty image or wrong pixel count");
  try {
    impl_->apply_threads();
    c10::InferenceMode guard;
    constexpr int64_t size = 512;
    const auto hwc = square_resize(img, 0, 0, img.width, img.height, size, false);
    auto x = torch::empty({1, 3, size, size}, torch::kFloat32);
    float* d = x.data_ptr<float>();
    const int64_t plane = size * size;
    for (int64_t i = 0; i < plane; ++i)
      for (int c = 0; c < 3; ++c)
        d[c * plane + i] = hwc[static_cast<size_t>(i * 3 + c)] / 127.5f - 1.0f;
    auto [boxes, scores_t] = impl_->ssd.forward(x);
    std::vector<double> scores(static_cast<size_t>(scores_t.numel()));
    const float* sp = scores_t.data_ptr<float>();
    for (size_t i = 0; i < scores.size(); ++i)
      scores[i] = sp[i];
    const float* bp = boxes.data_ptr<float>();
    const auto keep = nms(bp, scores, std::max(opt.max_results, 1), 0.5, opt.min_confidence);
    // Boxes relative to the padded square -> relative to the image -> pixels.
    const double W = static_cast<double>(img.width), H = static_cast<double>(img.height);
    const double scale = static_cast<double>(size) / std::max(W, H);
    const double rw = std::round(W * scale), rh = std::round(H * scale); // computeReshapedDimensions
    const double pad_x = static_cast<double>(size) / rw, pad_y = static_cast<double>(size) / rh;
    std::vector<detection> out;
    for (auto idx : keep) {
      const float* b = bp + idx * 4;
      const double top = std::max(0.0, static_cast<double>(b[0])) * pad_y;
      const double bottom = std::min(1.0, static_cast<double>(b[2])) * pad_y;
      const double left = std::max(0.0, static_cast<double>(b[1])) * pad_x;
      const double right = std::min(1.0, static_cast<double>(b[3])) * pad_x;
      detection det;
      det.score = scores[static_cast<size_t>(idx)];
      det.box = rect{left * W, top * H, (right - left) * W, (bottom - top) * H};
      out.push_back(det);
    }
    return out;
  } catch (const std::exception& e) {
    return fail(errc::internal, std::string("face detector failed: ") + e.what());
  }
}

result<std::vector<std::vector<point>>> face_models::landmarks(const rgb_image& img,
                                                               const std::vector<detection>& dets) {
  std::vector<std::vector<point>> out(dets.size());
  if (dets.empty())
    return out;
  try {
    impl_->apply_threads();
    c10::InferenceMode guard;
    constexpr int64_t size = 112;
    std::vector<Tensor> batch;
    std::vector<rect> crops;
    std::vector<size_t> which;
    for (size_t i = 0; i < dets.size(); ++i) {
      const auto b = clip_at_image_borders(for_size(dets[i].box, static_cast<double>(img.width),
                                                    static_cast<double>(img.height)),
                                           img.width, img.height);
      if (b.width <= 0 || b.height <= 0)
        continue;
      crops.push_back(b);
      which.push_back(i);
      batch.push_back(mean_normalised(
        square_resize(img, static_cast<int64_t>(b.x), static_cast<int64_t>(b.y),
                      static_cast<int64_t>(b.width), static_cast<int64_t>(b.height), size, true),
        size));
    }
    if (batch.empty())
      return out;
    auto rel = impl_->lm.forward(torch::cat(batch, 0)).contiguous();
    const float* r = rel.data_ptr<float>();
    for (size_t k = 0; k < which.size(); ++k) {
      const double cw = crops[k].width, ch = crops[k].height;
      // FaceLandmark68NetBase.postProcess, in float32 like the tensors there.
      const double s = static_cast<double>(size) / std::max(ch, cw);
      const double iw = cw * s, ih = ch * s;
      const float pad_x = static_cast<float>(iw < ih ? std::abs(iw - ih) / 2 : 0.0);
      const float pad_y = static_cast<float>(ih < iw ? std::abs(iw - ih) / 2 : 0.0);
      const rect& box = dets[which[k]].box;
      auto& pts = out[which[k]];
      pts.resize(68);
      for (int j = 0; j < 68; ++j) {
        const float fx = (r[k * 136 + 2 * j] * static_cast<float>(size) - pad_x) / static_cast<float>(iw);
        const float fy = (r[k * 136 + 2 * j + 1] * static_cast<float>(size) - pad_y) / static_cast<float>(ih);
        // FaceLandmarks68 over the crop, then shiftBy(box.x, box.y).
        const double px = static_cast<double>(fx) * cw, py = static_cast<double>(fy) * ch;
        pts[static_cast<size_t>(j)] = {px / cw * cw + box.x, py / ch * ch + box.y};
      }
    }
    return out;
  } catch (const std::exception& e) {
    return fail(errc::internal, std::string("face landmark net failed: ") + e.what());
  }
}

result<std::vector<std::vector<float>>> face_models::descriptors(const rgb_image& img,
                                                                 const std::vector<rect>& rects) {
  std::vector<std::vector<float>> out(rects.size(), std::vector<float>(128, 0.0f));
  if (rects.empty())
    return out;
  try {
    impl_->apply_threads();
    c10::InferenceMode guard;
    constexpr int64_t size = 150;
    std::vector<Tensor> batch;
    std::vector<size_t> which;
    for (size_t i = 0; i < rects.size(); ++i) {
      const auto b = clip_at_image_borders(rects[i], img.width, img.height);
      if (b.width <= 0 || b.height <= 0)
        continue;
      which.push_back(i);
      batch.push_back(mean_normalised(
        square_resize(img, static_cast<int64_t>(b.x), static_cast<int64_t>(b.y),
                      static_cast<int64_t>(b.width), static_cast<int64_t>(b.height), size, true),
        size));
    }
    if (batch.empty())
      return out;
    auto d = impl_->rec.forward(torch::cat(batch, 0)).contiguous();
    const float* p = d.data_ptr<float>();
    for (size_t k = 0; k < which.size(); ++k)
      std::copy(p + k * 128, p + (k + 1) * 128, out[which[k]].begin());
    return out;
  } catch (const std::exception& e) {
    return fail(errc::internal, std::string("face recognition net failed: ") + e.what());
  }
}

result<std::vector<face>> face_models::analyse(const rgb_image& img, const detector_options& opt) {
  auto dets = detect(img, opt);
  if (!dets)
    return dets.error();
  auto lms = landmarks(img, *dets);
  if (!lms)
    return lms.error();
  std::vector<face> faces;
  std::vector<rect> rects;
  for (size_t i = 0; i < dets->size(); ++i) {
    if ((*lms)[i].empty()) // box outside the image: face-api drops it too
      continue;
    const auto crop = clip_at_image_borders(
      for_size((*dets)[i].box, static_cast<double>(img.width), static_cast<double>(img.height)),
      img.width, img.height);
    face f;
    f.box = (*dets)[i].box;
    f.score = (*dets)[i].score;
    f.landmarks = std::move((*lms)[i]);
    rects.push_back(descriptor_rect(f.landmarks, crop.width, crop.height));
    faces.push_back(std::move(f));
  }
  auto descs = descriptors(img, rects);
  if (!descs)
    return descs.error();
  for (size_t i = 0; i < faces.size(); ++i)
    faces[i].descriptor = std::move((*descs)[i]);
  return faces;
}

} // namespace rookery::faces

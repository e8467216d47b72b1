#include "pipelines/image.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <mutex>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "common/json_limits.hpp"
#include "pipelines/codec.hpp"
#include "pipelines/ops.hpp"

namespace rookery {

namespace {

// --- byte helpers ----------------------------------------------------------------

using u8 = unsigned char;

inline uint32_t be16(const u8* p) { return (uint32_t{p[0]} << 8) | p[1]; }
inline uint32_t be32(const u8* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
inline uint32_t le16(const u8* p) { return uint32_t{p[0]} | (uint32_t{p[1]} << 8); }
inline uint32_t le24(const u8* p) { return le16(p) | (uint32_t{p[2]} << 16); }
inline uint32_t le32(const u8* p) { return le24(p) | (uint32_t{p[3]} << 24); }

enum class format { unknown, png, jpeg, gif, bmp, webp, tiff };

const char* format_name(format f) {
  switch (f) {
    case format::png: return "PNG";
    case format::jpeg: return "JPEG";
    case format::gif: return "GIF";
    case format::bmp: return "BMP";
    case format::webp: return "WebP";
    case format::tiff: return "TIFF";
    default: return "unknown";
  }
}

format sniff(const u8* d, size_t n) {
  if (n >= 8 && std::memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0)
    return format::png;
  if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF)
    return format::jpeg;
  if (n >= 6 && (std::memcmp(d, "GIF87a", 6) == 0 || std::memcmp(d, "GIF89a", 6) == 0))
    return format::gif;
  if (n >= 2 && d[0] == 'B' && d[1] == 'M')
    return format::bmp;
  if (n >= 12 && std::memcmp(d, "RIFF", 4) == 0 && std::memcmp(d + 8, "WEBP", 4) == 0)
    return format::webp;
  if (n >= 4 && (std::memcmp(d, "II*\0", 4) == 0 || std::memcmp(d, "MM\0*", 4) == 0))
    return format::tiff;
  return format::unknown;
}

// --- header parsing (no decoding) ---------------------------------------------------

std::optional<image_size> make_size(int64_t w, int64_t h) {
  if (w <= 0 || h <= 0)
    return std::nullopt;
  return image_size{w, h};
}

std::optional<image_size> peek_png(const u8* d, size_t n) {
  if (n < 24 || std::memcmp(d + 12, "IHDR", 4) != 0)
    return std::nullopt;
  return make_size(be32(d + 16), be32(d + 20));
}

std::optional<image_size> peek_gif(const u8* d, size_t n) {
  if (n < 10)
    return std::nullopt;
  return make_size(le16(d + 6), le16(d + 8));
}

std::optional<image_size> peek_bmp(const u8* d, size_t n) {
  if (n < 26)
    return std::nullopt;
  const auto dib = le32(d + 14);
  if (dib == 12) // BITMAPCOREHEADER: 16-bit unsigned sizes
    return make_size(le16(d + 18), le16(d + 20));
  if (dib < 16)
    return std::nullopt;
  const auto w = static_cast<int32_t>(le32(d + 18));
  const auto h = static_cast<int32_t>(le32(d + 22)); // negative: top-down
  return make_size(w, std::llabs(static_cast<long long>(h)));
}

std::optional<image_size> peek_webp(const u8* d, size_t n) {
  if (n < 21)
    return std::nullopt;
  if (std::memcmp(d + 12, "VP8 ", 4) == 0) { // lossy
    if (n < 30 || d[23] != 0x9D || d[24] != 0x01 || d[25] != 0x2A)
      return std::nullopt;
    return make_size(le16(d + 26) & 0x3FFF, le16(d + 28) & 0x3FFF);
  }
  if (std::memcmp(d + 12, "VP8L", 4) == 0) { // lossless
    if (n < 25 || d[20] != 0x2F)
      return std::nullopt;
    const auto bits = le32(d + 21);
    return make_size((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1);
  }
  if (std::memcmp(d + 12, "VP8X", 4) == 0) { // extended: canvas size
    if (n < 30)
      return std::nullopt;
    return make_size(int64_t{le24(d + 24)} + 1, int64_t{le24(d + 27)} + 1);
  }
  return std::nullopt;
}

std::optional<image_size> peek_jpeg(const u8* d, size_t n) {
  size_t i = 2;
  while (i < n) {
    if (d[i] != 0xFF) {
      ++i; // stray byte between segments (libjpeg skips these too)
      continue;
    }
    while (i < n && d[i] == 0xFF)
      ++i;
    if (i >= n)
      return std::nullopt;
    const u8 m = d[i++];
    if (m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7))
      continue; // standalone markers
    if (m == 0xD9 || m == 0xDA)
      return std::nullopt; // EOI / SOS before any frame header
    if (i + 2 > n)
      return std::nullopt;
    const size_t len = be16(d + i);
    if (len < 2)
      return std::nullopt;
    const bool sof = m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
    if (sof) {
      if (i + 7 > n)
        return std::nullopt;
      return make_size(be16(d + i + 5), be16(d + i + 3)); // P, Y (height), X (width)
    }
    i += len;
  }
  return std::nullopt;
}

std::optional<image_size> peek_tiff(const u8* d, size_t n) {
  if (n < 8)
    return std::nullopt;
  const bool le = d[0] == 'I';
  auto r16 = [&](size_t o) { return le ? le16(d + o) : be16(d + o); };
  auto r32 = [&](size_t o) { return le ? le32(d + o) : be32(d + o); };
  const size_t ifd = r32(4);
  if (ifd < 8 || ifd + 2 > n)
    return std::nullopt;
  const size_t count = r16(ifd);
  int64_t w = 0, h = 0;
  for (size_t k = 0; k < count; ++k) {
    const size_t e = ifd + 2 + 12 * k;
    if (e + 12 > n)
      return std::nullopt;
    const auto tag = r16(e), type = r16(e + 2);
    int64_t v = 0;
    if (type == 3)
      v = r16(e + 8);
    else if (type == 4)
      v = r32(e + 8);
    else
      continue;
    if (tag == 256)
      w = v;
    else if (tag == 257)
      h = v;
  }
  return make_size(w, h);
}

std::optional<image_size> peek(format f, const u8* d, size_t n) {
  switch (f) {
    case format::png: return peek_png(d, n);
    case format::jpeg: return peek_jpeg(d, n);
    case format::gif: return peek_gif(d, n);
    case format::bmp: return peek_bmp(d, n);
    case format::webp: return peek_webp(d, n);
    case format::tiff: return peek_tiff(d, n);
    default: return std::nullopt;
  }
}

// --- completeness checks (truncated files decode "successfully" otherwise) ----------

// Walks the JPEG segment structure, including entropy-coded data, to the EOI
// marker. An EOI inside an APPn segment (e.g. the EXIF thumbnail) is skipped
// with its segment, so a file truncated after its thumbnail is still caught.
bool jpeg_complete(const u8* d, size_t n) {
  size_t i = 2;
  while (i < n) {
    if (d[i] != 0xFF) {
      ++i;
      continue;
    }
    while (i < n && d[i] == 0xFF)
      ++i;
    if (i >= n)
      return false;
    const u8 m = d[i++];
    if (m == 0xD9)
      return true;
    if (m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7))
      continue;
    if (i + 2 > n)
      return false;
    const size_t len = be16(d + i);
    if (len < 2)
      return false;
    i += len;
    if (m != 0xDA)
      continue;
    // Entropy-coded data: 0xFF is stuffed as FF 00; RSTn markers continue it.
    for (;;) {
      if (i >= n)
        return false;
      const void* ff = std::memchr(d + i, 0xFF, n - i);
      if (!ff)
        return false;
      i = static_cast<size_t>(static_cast<const u8*>(ff) - d);
      if (i + 1 >= n)
        return false;
      const u8 b = d[i + 1];
      if (b == 0x00 || (b >= 0xD0 && b <= 0xD7))
        i += 2;
      else if (b == 0xFF)
        i += 1;
      else
        break; // a real marker: back to the segment walk
    }
  }
  return false;
}

bool png_complete(const u8* d, size_t n) {
  uint64_t i = 8;
  while (i + 12 <= n) {
    const uint64_t len = be32(d + i);
    const bool iend = std::memcmp(d + i + 4, "IEND", 4) == 0;
    i += 12 + len;
    if (iend)
      return i <= n;
  }
  return false;
}

bool bmp_complete(const u8* d, size_t n) {
  if (n < 30)
    return false;
  const uint64_t off = le32(d + 10);
  const auto dib = le32(d + 14);
  int64_t w, h, bpp;
  uint32_t compression = 0;
  if (dib == 12) {
    w = le16(d + 18);
    h = le16(d + 20);
    bpp = le16(d + 24);
  } else {
    if (n < 34)
      return false;
    w = static_cast<int32_t>(le32(d + 18));
    h = std::llabs(static_cast<long long>(static_cast<int32_t>(le32(d + 22))));
    bpp = le16(d + 28);
    compression = le32(d + 30);
  }
  if (compression != 0 && compression != 3)
    return true; // RLE / embedded JPEG-PNG: leave to the decoder
  const uint64_t stride = ((static_cast<uint64_t>(w) * static_cast<uint64_t>(bpp) + 31) / 32) * 4;
  return off + stride * static_cast<uint64_t>(h) <= n;
}

bool webp_complete(const u8* d, size_t n) {
  return n >= 8 && uint64_t{le32(d + 4)} + 8 <= n;
}

// --- PIL-exact antialiased bilinear resampling ----------------------------------------
// Port of Pillow's src/libImaging/Resample.c (precompute_coeffs, 8-bpc passes)
// restricted to a window of output positions: every output pixel depends only
// on its own coefficients, so resampling just the centre-crop window gives
// exactly the pixels PIL would produce for the full resize.

constexpr int precision_bits = 32 - 8 - 2;

struct coeffs {
  int ksize = 0;
  std::vector<int> bounds; // (min, count) per output position
  std::vector<int32_t> k;  // ksize per output position
};

coeffs precompute(int64_t in_size, int64_t out_size, int64_t first, int64_t count) {
  coeffs c;
  double scale = static_cast<double>(static_cast<float>(in_size) - 0.0f) / static_cast<double>(out_size);
  double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = 1.0 * filterscale; // bilinear support 1.0
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.bounds.resize(static_cast<size_t>(count) * 2);
  c.k.assign(static_cast<size_t>(count) * static_cast<size_t>(c.ksize), 0);
  std::vector<double> w(static_cast<size_t>(c.ksize));
  const double ss = 1.0 / filterscale;
  for (int64_t j = 0; j < count; ++j) {
    const int64_t xx = first + j;
    const double center = 0.0 + (static_cast<double>(xx) + 0.5) * scale;
    int64_t xmin = static_cast<int64_t>(center - support + 0.5);
    if (xmin < 0)
      xmin = 0;
    int64_t xmax = static_cast<int64_t>(center + support + 0.5);
    if (xmax > in_size)
      xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int64_t x = 0; x < xmax; ++x) {
      double t = (static_cast<double>(x + xmin) - center + 0.5) * ss;
      if (t < 0.0)
        t = -t;
      const double f = t < 1.0 ? 1.0 - t : 0.0;
      w[static_cast<size_t>(x)] = f;
      ww += f;
    }
    int32_t* k = &c.k[static_cast<size_t>(j) * static_cast<size_t>(c.ksize)];
    for (int64_t x = 0; x < xmax; ++x) {
      double v = w[static_cast<size_t>(x)];
      if (ww != 0.0)
        v /= ww;
      k[x] = v < 0 ? static_cast<int32_t>(-0.5 + v * (1 << precision_bits))
                   : static_cast<int32_t>(0.5 + v * (1 << precision_bits));
    }
    c.bounds[static_cast<size_t>(j) * 2] = static_cast<int>(xmin);
    c.bounds[static_cast<size_t>(j) * 2 + 1] = static_cast<int>(xmax);
  }
  return c;
}

inline u8 clip8(int32_t v) {
  if (v < 0)
    return 0;
  v >>= precision_bits;
  return v > 255 ? 255 : static_cast<u8>(v);
}

// Resamples `img` (8UC3) to rw x rh and returns the window [x0, x0+cw) x
// [y0, y0+ch) of the result (inside [0,rw) x [0,rh)), packed, 3 bytes/pixel.
std::vector<u8> resize_window(const cv::Mat& img, int64_t rw, int64_t rh, int64_t x0, int64_t cw,
                              int64_t y0, int64_t ch) {
  const int64_t iw = img.cols, ih = img.rows;
  const bool need_h = rw != iw;
  const bool need_v = rh != ih;
  const int32_t half = 1 << (precision_bits - 1);

  // Source rows the vertical pass reads.
  coeffs vc;
  int64_t ybeg = y0, yend = y0 + ch;
  if (need_v) {
    vc = precompute(ih, rh, y0, ch);
    ybeg = vc.bounds[0];
    yend = vc.bounds[static_cast<size_t>(ch - 1) * 2] + vc.bounds[static_cast<size_t>(ch - 1) * 2 + 1];
  }
  const int64_t rows = yend - ybeg;

  // Horizontal pass (or plain copy of the window columns) over those rows.
  std::vector<u8> tmp(static_cast<size_t>(rows * cw * 3));
  if (need_h) {
    auto hc = precompute(iw, rw, x0, cw);
    for (int64_t y = 0; y < rows; ++y) {
      const u8* src = img.ptr<u8>(static_cast<int>(ybeg + y));
      u8* dst = &tmp[static_cast<size_t>(y * cw * 3)];
      for (int64_t j = 0; j < cw; ++j) {
        const int xmin = hc.bounds[static_cast<size_t>(j) * 2];
        const int xcnt = hc.bounds[static_cast<size_t>(j) * 2 + 1];
        const int32_t* k = &hc.k[static_cast<size_t>(j) * static_cast<size_t>(hc.ksize)];
        int32_t s0 = half, s1 = half, s2 = half;
        const u8* p = src + xmin * 3;
        for (int x = 0; x < xcnt; ++x, p += 3) {
          s0 += p[0] * k[x];
          s1 += p[1] * k[x];
          s2 += p[2] * k[x];
        }
        dst[j * 3] = clip8(s0);
        dst[j * 3 + 1] = clip8(s1);
        dst[j * 3 + 2] = clip8(s2);
      }
    }
  } else {
    for (int64_t y = 0; y < rows; ++y)
      std::memcpy(&tmp[static_cast<size_t>(y * cw * 3)], img.ptr<u8>(static_cast<int>(ybeg + y)) + x0 * 3,
                  static_cast<size_t>(cw * 3));
  }
  if (!need_v)
    return tmp;

  std::vector<u8> out(static_cast<size_t>(ch * cw * 3));
  const int64_t stride = cw * 3;
  std::vector<int32_t> acc(static_cast<size_t>(stride));
  for (int64_t j = 0; j < ch; ++j) {
    const int64_t ymin = vc.bounds[static_cast<size_t>(j) * 2] - ybeg;
    const int ycnt = vc.bounds[static_cast<size_t>(j) * 2 + 1];
    const int32_t* k = &vc.k[static_cast<size_t>(j) * static_cast<size_t>(vc.ksize)];
    // Row-wise accumulation: the same integer sums as Pillow's loop order.
    std::fill(acc.begin(), acc.end(), half);
    for (int y = 0; y < ycnt; ++y) {
      const int32_t kv = k[y];
      const u8* row = &tmp[static_cast<size_t>((ymin + y) * stride)];
      for (int64_t x = 0; x < stride; ++x)
        acc[static_cast<size_t>(x)] += row[x] * kv;
    }
    u8* dst = &out[static_cast<size_t>(j * stride)];
    for (int64_t x = 0; x < stride; ++x)
      dst[x] = clip8(acc[static_cast<size_t>(x)]);
  }
  return out;
}

// Python's round() on (size - crop) / 2 for a non-negative integer difference:
// round half to even.
int64_t half_round_even(int64_t diff) {
  int64_t q = diff / 2;
  if (diff % 2 != 0 && q % 2 != 0)
    ++q;
  return q;
}

// Offset of the crop in the resized image (negative: zero padding first).
int64_t crop_offset(int64_t size, int64_t crop) {
  return size >= crop ? half_round_even(size - crop) : -((crop - size) / 2);
}

// --- TF.js's tf.image.resizeBilinear (the tfjs-backend-cpu kernel) --------------------
// nsfwjs's preprocessing: img / 255 (float32), then resizeBilinear of the whole
// image to size x size, no crop. The kernel reads float32 values, interpolates
// in double (JavaScript numbers) and stores float32; so does this.

struct tf_taps {
  std::vector<int64_t> lo, hi; // source indices
  std::vector<double> frac;    // weight of hi
};

tf_taps tf_bilinear_taps(int64_t in, int64_t out, bool align_corners) {
  const bool align = align_corners && out > 1;
  const double ratio = static_cast<double>(align ? in - 1 : in) / static_cast<double>(align ? out - 1 : out);
  tf_taps t;
  for (int64_t i = 0; i < out; ++i) {
    const double src = ratio * static_cast<double>(i); // half_pixel_centers = false
    const auto lo = std::max<int64_t>(0, static_cast<int64_t>(std::floor(src)));
    t.lo.push_back(lo);
    t.hi.push_back(std::min<int64_t>(in - 1, static_cast<int64_t>(std::ceil(src))));
    t.frac.push_back(src - static_cast<double>(lo));
  }
  return t;
}

} // namespace

namespace pipe {

std::vector<float> tf_bilinear_tensor(const cv::Mat& img, int64_t out_w, int64_t out_h, bool align_corners) {
  const auto rows = tf_bilinear_taps(img.rows, out_h, align_corners);
  const auto cols = tf_bilinear_taps(img.cols, out_w, align_corners);
  float scaled[256];
  for (int v = 0; v < 256; ++v)
    scaled[v] = static_cast<float>(v) / 255.0f;
  const int64_t plane = out_w * out_h;
  std::vector<float> out(static_cast<size_t>(3 * plane));
  for (int64_t y = 0; y < out_h; ++y) {
    const u8* top = img.ptr<u8>(static_cast<int>(rows.lo[static_cast<size_t>(y)]));
    const u8* bottom = img.ptr<u8>(static_cast<int>(rows.hi[static_cast<size_t>(y)]));
    const double fy = rows.frac[static_cast<size_t>(y)];
    for (int64_t x = 0; x < out_w; ++x) {
      const int64_t l = cols.lo[static_cast<size_t>(x)] * 3, r = cols.hi[static_cast<size_t>(x)] * 3;
      const double fx = cols.frac[static_cast<size_t>(x)];
      for (int c = 0; c < 3; ++c) {
        const int b = 2 - c; // BGR -> RGB
        const double tl = scaled[top[l + b]], tr = scaled[top[r + b]];
        const double bl = scaled[bottom[l + b]], br = scaled[bottom[r + b]];
        const double t = tl + (tr - tl) * fx;
        const double bo = bl + (br - bl) * fx;
        out[static_cast<size_t>(c * plane + y * out_w + x)] = static_cast<float>(t + (bo - t) * fy);
      }
    }
  }
  return out;
}

} // namespace pipe

namespace {

failure decode_error(const std::string& why) {
  return fail(errc::bad_request, "could not decode image: " + why);
}

} // namespace

std::optional<image_size> peek_image_size(const std::string& bytes) {
  const auto* d = reinterpret_cast<const u8*>(bytes.data());
  return peek(sniff(d, bytes.size()), d, bytes.size());
}

void init_image_pipeline() {
  static std::once_flag once;
  std::call_once(once, [] {
    try {
      cv::setNumThreads(1);
    } catch (...) {
    }
  });
}

namespace pipe {

result<cv::Mat> decode_still(const std::string& bytes, int64_t limit) {
  if (bytes.empty())
    return fail(errc::bad_request, "empty body");
  if (bytes.size() > static_cast<size_t>(INT_MAX))
    return fail(errc::payload_too_large, "image of " + std::to_string(bytes.size()) + " bytes is too large");
  const auto* d = reinterpret_cast<const u8*>(bytes.data());
  const size_t n = bytes.size();
  const auto fmt = sniff(d, n);
  if (fmt == format::unknown)
    return decode_error("unrecognised image format (supported: JPEG, PNG, BMP, WebP, TIFF)");
  if (fmt == format::gif)
    return fail(errc::unsupported_media,
                "could not decode image: GIF is not supported as a still image (supported: JPEG, "
                "PNG, BMP, WebP, TIFF; animated GIFs go to the video pipeline)");
  const auto size = peek(fmt, d, n);
  if (!size)
    return decode_error(std::string("truncated or invalid ") + format_name(fmt) + " header");
  if (too_many_pixels(size->width, size->height, limit))
    return fail(errc::payload_too_large,
                "image is " + std::to_string(size->width) + "x" + std::to_string(size->height)
                  + " pixels, over the limit of " + std::to_string(limit) + " pixels");
  if (fmt == format::jpeg && !jpeg_complete(d, n))
    return decode_error("truncated JPEG (no end-of-image marker)");
  if (fmt == format::png && !png_complete(d, n))
    return decode_error("truncated PNG (no IEND chunk)");
  if (fmt == format::bmp && !bmp_complete(d, n))
    return decode_error("truncated BMP");
  if (fmt == format::webp && !webp_complete(d, n))
    return decode_error("truncated WebP");

  init_image_pipeline();
  cv::Mat img;
  try {
    cv::Mat buf(1, static_cast<int>(n), CV_8UC1, const_cast<char*>(bytes.data()));
    img = cv::imdecode(buf, cv::IMREAD_COLOR);
  } catch (const cv::Exception& e) {
    return decode_error(std::string(format_name(fmt)) + ": " + e.err);
  } catch (const std::bad_alloc&) {
    return fail(errc::payload_too_large, "out of memory while decoding the image");
  } catch (const std::exception& e) {
    return decode_error(std::string(format_name(fmt)) + ": " + e.what());
  }
  if (img.empty())
    return decode_error(std::string("corrupt or unsupported ") + format_name(fmt) + " data");
  if (too_many_pixels(img.cols, img.rows, limit))
    return fail(errc::payload_too_large,
                "image is " + std::to_string(img.cols) + "x" + std::to_string(img.rows)
                  + " pixels, over the limit of " + std::to_string(limit) + " pixels");
  if (img.type() != CV_8UC3 || !img.isContinuous())
    return fail(errc::internal, "decoder returned an unexpected pixel layout");
  return img;
}

bool too_many_pixels(int64_t w, int64_t h, int64_t limit) {
  return limit > 0 && (w > limit || h > limit || w > limit / std::max<int64_t>(h, 1));
}

std::vector<uint8_t> pil_resize_window(const cv::Mat& img, int64_t rw, int64_t rh, int64_t x0,
                                       int64_t cw, int64_t y0, int64_t ch) {
  return resize_window(img, rw, rh, x0, cw, y0, ch);
}

int64_t center_offset(int64_t size, int64_t crop) {
  return crop_offset(size, crop);
}

} // namespace pipe

result<rgb8_image> decode_rgb(const std::string& bytes, int64_t max_pixels) {
  auto m = pipe::decode_still(bytes, max_pixels);
  if (!m)
    return m.error();
  try {
    rgb8_image out;
    out.width = m->cols;
    out.height = m->rows;
    out.pixels.resize(static_cast<size_t>(m->cols) * static_cast<size_t>(m->rows) * 3);
    cv::Mat rgb(m->rows, m->cols, CV_8UC3, out.pixels.data());
    cv::cvtColor(*m, rgb, cv::COLOR_BGR2RGB);
    return out;
  } catch (const std::bad_alloc&) {
    return fail(errc::payload_too_large, "out of memory while decoding the image");
  }
}

result<image_tensor> preprocess_image(const std::string& bytes, const image_options& opt) {
  // The same operators a pipeline spec names, in the same order: this is
  // the image half of the default pipeline (pipelines/builtin/*.json).
  auto chain = pipe::compile_ops(pipe::image_chain(opt), pipe::limits{opt.max_pixels});
  if (!chain)
    return chain.error();
  auto out = pipe::run_ops(*chain, bytes, "");
  if (!out)
    return out.error();
  image_tensor t;
  t.c = out->c;
  t.h = out->h;
  t.w = out->w;
  t.data = std::move(out->tensors.at(0));
  return t;
}

} // namespace rookery

namespace rookery {

int64_t image_options::input_side() const {
  if (mode == resize_mode::tf_bilinear)
    return resize;
  return crop > 0 ? crop : 224;
}

result<image_options> parse_image_options(const std::string& json_text) {
  image_options o;
  if (json_text.empty())
    return o;
  auto parsed = jsonx::parse_bounded(json_text);
  if (!parsed)
    return fail(errc::bad_request, "preprocess is not valid JSON");
  const auto& j = *parsed;
  if (j.is_null())
    return o;
  if (!j.is_object())
    return fail(errc::bad_request, "preprocess must be a JSON object");
  auto int_key = [&](const char* k, int& out, int lo, int hi) -> bool {
    auto i = j.find(k);
    if (i == j.end() || i->is_null())
      return true;
    if (!i->is_number_integer() || i->get<int64_t>() < lo || i->get<int64_t>() > hi)
      return false;
    out = i->get<int>();
    return true;
  };
  if (!int_key("resize", o.resize, 0, 8192) || !int_key("crop", o.crop, 0, 8192))
    return fail(errc::bad_request, "preprocess.resize and preprocess.crop must be integers 0..8192");
  if (!int_key("channels", o.channels, 1, 3) || o.channels == 2)
    return fail(errc::bad_request, "preprocess.channels must be 1 or 3");
  for (const char* k : {"mean", "std"}) {
    auto i = j.find(k);
    if (i == j.end() || i->is_null())
      continue;
    auto& dst = std::string(k) == "mean" ? o.mean : o.std;
    if (!i->is_array() || i->empty() || i->size() > 3)
      return fail(errc::bad_request, std::string("preprocess.") + k + " must be 1 to 3 numbers");
    for (size_t c = 0; c < 3; ++c) {
      const auto& v = (*i)[std::min(c, i->size() - 1)];
      if (!v.is_number())
        return fail(errc::bad_request, std::string("preprocess.") + k + " must hold numbers");
      dst[c] = v.get<float>();
    }
  }
  for (float s : o.std)
    if (!(s > 0))
      return fail(errc::bad_request, "preprocess.std must be positive");
  if (auto i = j.find("resize_mode"); i != j.end() && !i->is_null()) {
    if (*i == "tf_bilinear")
      o.mode = resize_mode::tf_bilinear;
    else if (*i != "shorter_side")
      return fail(errc::bad_request, "preprocess.resize_mode must be \"shorter_side\" or \"tf_bilinear\"");
  }
  if (auto i = j.find("align_corners"); i != j.end() && !i->is_null()) {
    if (!i->is_boolean())
      return fail(errc::bad_request, "preprocess.align_corners must be a boolean");
    o.align_corners = i->get<bool>();
  }
  if (o.mode == resize_mode::tf_bilinear) {
    if (!j.contains("crop") || j["crop"].is_null())
      o.crop = 0; // the default centre crop belongs to shorter_side
    if (o.resize <= 0 || o.crop > 0 || o.channels != 3)
      return fail(errc::bad_request, "preprocess.resize_mode tf_bilinear stretches the image to "
                                     "resize x resize: it needs resize > 0, no crop (0) and 3 channels");
  } else if (o.align_corners) {
    return fail(errc::bad_request, "preprocess.align_corners applies to resize_mode tf_bilinear only");
  }
  return o;
}

} // namespace rookery

// pipelines/image: header peeking, decoding, error mapping and the output
// tensor. Parity with torchvision on real photos is in resnet_parity_test.cpp.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "pipelines/image.hpp"

// Debian's LibTorch pulls in glog, whose CHECK(cond) would replace Catch's
// CHECK (a failing check would abort the binary, passing ones go uncounted).
// tests/pch_tests.hpp orders the includes to avoid it; this keeps the file
// correct even if compiled without that PCH.
#undef CHECK
#define CHECK(...) INTERNAL_CATCH_TEST("CHECK", Catch::ResultDisposition::ContinueOnFailure, __VA_ARGS__)

using namespace rookery;

namespace {

// A non-square test picture with some structure (w x h, BGR).
cv::Mat picture(int w, int h) {
  cv::Mat img(h, w, CV_8UC3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      img.at<cv::Vec3b>(y, x) = cv::Vec3b(static_cast<uchar>((x * 255) / w), static_cast<uchar>((y * 255) / h),
                                          static_cast<uchar>(((x / 8 + y / 8) % 2) * 200));
  return img;
}

std::string encode(const cv::Mat& img, const std::string& ext, const std::vector<int>& params = {}) {
  std::vector<uchar> buf;
  REQUIRE(cv::imencode(ext, img, buf, params));
  return std::string(buf.begin(), buf.end());
}

void put_be32(std::string& s, size_t at, uint32_t v) {
  s[at] = static_cast<char>(v >> 24);
  s[at + 1] = static_cast<char>(v >> 16);
  s[at + 2] = static_cast<char>(v >> 8);
  s[at + 3] = static_cast<char>(v);
}

std::string png_chunk(const std::string& type, const std::string& data) {
  std::string c(4, '\0');
  put_be32(c, 0, static_cast<uint32_t>(data.size()));
  c += type + data + std::string(4, '\0'); // CRC not checked before decoding
  return c;
}

// A PNG whose IHDR claims w x h; the "image data" is a few junk bytes.
std::string fake_png(uint32_t w, uint32_t h) {
  std::string ihdr(13, '\0');
  put_be32(ihdr, 0, w);
  put_be32(ihdr, 4, h);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  return std::string("\x89PNG\r\n\x1a\n", 8) + png_chunk("IHDR", ihdr) + png_chunk("IDAT", "xxxx")
         + png_chunk("IEND", "");
}

std::string gif_header(uint16_t w, uint16_t h) {
  // GIF89a, logical screen w x h, global colour table of 2, one 1x1 image.
  std::string g = "GIF89a";
  g += static_cast<char>(w & 0xFF);
  g += static_cast<char>(w >> 8);
  g += static_cast<char>(h & 0xFF);
  g += static_cast<char>(h >> 8);
  g += std::string("\x80\x00\x00\xff\xff\xff\x00\x00\x00", 9);
  g += std::string(",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00;", 16);
  return g;
}

float norm_value(int v, int c) {
  const image_options o;
  return (static_cast<float>(v) / 255.0f - o.mean[static_cast<size_t>(c)]) / o.std[static_cast<size_t>(c)];
}

} // namespace

TEST_CASE("peek_image_size reads headers without decoding", "[image]") {
  const auto img = picture(300, 200);
  SECTION("formats made by OpenCV") {
    struct fmt {
      const char* ext;
      std::vector<int> params;
    };
    for (const auto& f : {fmt{".png", {}}, fmt{".jpg", {cv::IMWRITE_JPEG_QUALITY, 90}},
                          fmt{".jpg", {cv::IMWRITE_JPEG_PROGRESSIVE, 1}}, fmt{".bmp", {}},
                          fmt{".webp", {cv::IMWRITE_WEBP_QUALITY, 80}},
                          fmt{".webp", {cv::IMWRITE_WEBP_QUALITY, 101}}, // lossless: VP8L
                          fmt{".tiff", {}}}) {
      INFO(f.ext);
      auto bytes = encode(img, f.ext, f.params);
      auto s = peek_image_size(bytes);
      REQUIRE(s.has_value());
      CHECK(s->width == 300);
      CHECK(s->height == 200);
    }
    // WebP with alpha, lossy: extended format (VP8X).
    cv::Mat bgra;
    cv::Mat channels[] = {img, cv::Mat(200, 300, CV_8UC1, cv::Scalar(128))};
    cv::merge(channels, 2, bgra);
    auto w = encode(bgra, ".webp", {cv::IMWRITE_WEBP_QUALITY, 80});
    auto s = peek_image_size(w);
    REQUIRE(s.has_value());
    CHECK(s->width == 300);
    CHECK(s->height == 200);
  }
  SECTION("crafted headers") {
    auto s = peek_image_size(gif_header(640, 480));
    REQUIRE(s.has_value());
    CHECK(s->width == 640);
    CHECK(s->height == 480);

    std::string vp8x = "RIFF....WEBPVP8X";
    vp8x += std::string("\x0a\x00\x00\x00", 4) + std::string(4, '\0');
    vp8x += std::string("\x1f\x4e\x00", 3); // width-1 = 19999
    vp8x += std::string("\x0f\x27\x00", 3); // height-1 = 9999
    s = peek_image_size(vp8x);
    REQUIRE(s.has_value());
    CHECK(s->width == 20000);
    CHECK(s->height == 10000);

    s = peek_image_size(fake_png(100000, 100000));
    REQUIRE(s.has_value());
    CHECK(s->width == 100000);
    CHECK(s->height == 100000);
  }
  SECTION("JPEG with an APP1 segment before the frame header") {
    auto jpg = encode(img, ".jpg");
    std::string app1 = std::string("\xff\xe1\x00\x10" "Exif\0\0", 10) + std::string("\xff\xd8\xff\xd9\x00\x00", 6);
    auto with_app1 = jpg.substr(0, 2) + app1 + jpg.substr(2);
    auto s = peek_image_size(with_app1);
    REQUIRE(s.has_value());
    CHECK(s->width == 300);
    CHECK(s->height == 200);
    // Still decodes; and truncated after the embedded EOI it is still rejected.
    CHECK(preprocess_image(with_app1, {}).ok());
    auto cut = preprocess_image(with_app1.substr(0, with_app1.size() / 2), {});
    REQUIRE_FALSE(cut.ok());
    CHECK(cut.error().code == errc::bad_request);
  }
  SECTION("unknown or truncated headers") {
    CHECK_FALSE(peek_image_size("").has_value());
    CHECK_FALSE(peek_image_size("hello world, not an image").has_value());
    CHECK_FALSE(peek_image_size(std::string("\x89PNG\r\n\x1a\n", 8)).has_value());
    CHECK_FALSE(peek_image_size(std::string("\xff\xd8\xff\xe0\x00", 5)).has_value());
    CHECK_FALSE(peek_image_size("GIF89a").has_value());
    CHECK_FALSE(peek_image_size("BM").has_value());
    CHECK_FALSE(peek_image_size("RIFF....WEBPVP8 ").has_value());
  }
}

TEST_CASE("preprocess_image decodes every supported format to 3x224x224", "[image]") {
  const auto img = picture(300, 200);
  struct fmt {
    const char* ext;
    std::vector<int> params;
  };
  for (const auto& f : {fmt{".png", {}}, fmt{".jpg", {cv::IMWRITE_JPEG_QUALITY, 90}}, fmt{".bmp", {}},
                        fmt{".webp", {cv::IMWRITE_WEBP_QUALITY, 90}}, fmt{".webp", {cv::IMWRITE_WEBP_QUALITY, 101}},
                        fmt{".tiff", {}}}) {
    INFO(f.ext);
    auto t = preprocess_image(encode(img, f.ext, f.params), {});
    INFO((t ? std::string("ok") : t.error().message));
    REQUIRE(t.ok());
    CHECK(t->c == 3);
    CHECK(t->h == 224);
    CHECK(t->w == 224);
    CHECK(t->data.size() == 3u * 224 * 224);
    for (float v : t->data)
      REQUIRE(std::isfinite(v));
  }
  SECTION("lossless formats agree exactly") {
    auto a = preprocess_image(encode(img, ".png"), {});
    auto b = preprocess_image(encode(img, ".bmp"), {});
    auto c = preprocess_image(encode(img, ".webp", {cv::IMWRITE_WEBP_QUALITY, 101}), {});
    REQUIRE(a.ok());
    REQUIRE(b.ok());
    REQUIRE(c.ok());
    CHECK(a->data == b->data);
    CHECK(a->data == c->data);
  }
}

TEST_CASE("preprocess_image output values and crop and padding", "[image]") {
  SECTION("uniform colour maps to (v/255 - mean)/std in RGB order") {
    cv::Mat img(180, 320, CV_8UC3, cv::Scalar(10, 100, 250)); // B, G, R
    auto t = preprocess_image(encode(img, ".png"), {});
    REQUIRE(t.ok());
    const size_t plane = 224 * 224;
    for (size_t i = 0; i < plane; i += 997) {
      CHECK(t->data[i] == norm_value(250, 0));
      CHECK(t->data[plane + i] == norm_value(100, 1));
      CHECK(t->data[2 * plane + i] == norm_value(10, 2));
    }
  }
  SECTION("small images are upscaled and tall or wide ones centre-cropped") {
    for (auto [w, h] : {std::pair{10, 7}, std::pair{7, 10}, std::pair{1000, 120}, std::pair{60, 900}}) {
      auto t = preprocess_image(encode(picture(w, h), ".png"), {});
      INFO(w << "x" << h);
      REQUIRE(t.ok());
      CHECK(t->h == 224);
      CHECK(t->w == 224);
    }
  }
  SECTION("crop larger than the resized image pads with zero pixels") {
    cv::Mat img(100, 100, CV_8UC3, cv::Scalar(255, 255, 255));
    image_options o;
    o.resize = 100;
    o.crop = 120;
    auto t = preprocess_image(encode(img, ".png"), o);
    REQUIRE(t.ok());
    REQUIRE(t->h == 120);
    REQUIRE(t->w == 120);
    CHECK(t->data[0] == norm_value(0, 0));                // corner: padding
    CHECK(t->data[9 * 120 + 9] == norm_value(0, 0));      // last padded pixel
    CHECK(t->data[10 * 120 + 10] == norm_value(255, 0));  // first image pixel
    CHECK(t->data[60 * 120 + 60] == norm_value(255, 0));
    CHECK(t->data[110 * 120 + 110] == norm_value(0, 0));
  }
  SECTION("resize <= 0 and crop <= 0 keep the decoded size") {
    image_options o;
    o.resize = 0;
    o.crop = 0;
    auto t = preprocess_image(encode(picture(123, 45), ".png"), o);
    REQUIRE(t.ok());
    CHECK(t->w == 123);
    CHECK(t->h == 45);
  }
}

TEST_CASE("preprocess_image rejects bad input with the right error", "[image]") {
  const auto img = picture(300, 200);
  SECTION("empty body") {
    auto r = preprocess_image("", {});
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == errc::bad_request);
    CHECK(r.error().message == "empty body");
  }
  SECTION("truncated JPEG") {
    auto jpg = encode(img, ".jpg");
    for (size_t len : {jpg.size() * 6 / 10, jpg.size() - 2, size_t{200}, size_t{3}}) {
      auto r = preprocess_image(jpg.substr(0, len), {});
      INFO(len);
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().code == errc::bad_request);
      CHECK(r.error().message.rfind("could not decode image", 0) == 0);
    }
  }
  SECTION("truncated PNG") {
    auto png = encode(img, ".png");
    for (size_t len : {png.size() * 6 / 10, png.size() - 12, size_t{30}, size_t{8}}) {
      auto r = preprocess_image(png.substr(0, len), {});
      INFO(len);
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().code == errc::bad_request);
      CHECK(r.error().message.rfind("could not decode image", 0) == 0);
    }
  }
  SECTION("truncated WebP and BMP") {
    auto webp = encode(img, ".webp");
    auto bmp = encode(img, ".bmp");
    for (auto& b : {webp.substr(0, webp.size() / 2), bmp.substr(0, bmp.size() / 2)}) {
      auto r = preprocess_image(b, {});
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().code == errc::bad_request);
    }
  }
  SECTION("garbage") {
    std::mt19937 rng(42);
    std::string junk(5000, '\0');
    for (auto& ch : junk)
      ch = static_cast<char>(rng());
    auto r = preprocess_image(junk, {});
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == errc::bad_request);
    // Valid signatures followed by garbage.
    for (std::string magic : {std::string("\x89PNG\r\n\x1a\n", 8), std::string("\xff\xd8\xff\xe0", 4),
                              std::string("BM"), std::string("II*\0", 4)}) {
      auto r2 = preprocess_image(magic + junk, {});
      REQUIRE_FALSE(r2.ok());
      // Random "header" fields may also claim a huge size: refused either way.
      CHECK((r2.error().code == errc::bad_request || r2.error().code == errc::payload_too_large));
    }
    // A well-formed PNG container whose pixel data is junk.
    auto r3 = preprocess_image(fake_png(64, 64), {});
    REQUIRE_FALSE(r3.ok());
    CHECK(r3.error().code == errc::bad_request);
  }
  SECTION("oversized images are refused before decoding") {
    auto r = preprocess_image(fake_png(100000, 100000), {});
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == errc::payload_too_large);
    // Real image over a small limit.
    image_options o;
    o.max_pixels = 300 * 200 - 1;
    auto r2 = preprocess_image(encode(img, ".jpg"), o);
    REQUIRE_FALSE(r2.ok());
    CHECK(r2.error().code == errc::payload_too_large);
    o.max_pixels = 300 * 200;
    CHECK(preprocess_image(encode(img, ".jpg"), o).ok());
    // Extreme aspect ratio within the pixel limit still works (only the crop is resampled).
    auto t = preprocess_image(encode(picture(20000, 2), ".png"), {});
    REQUIRE(t.ok());
    CHECK(t->w == 224);
  }
  SECTION("GIF is recognised but not decodable") {
    auto r = preprocess_image(gif_header(16, 16), {});
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == errc::unsupported_media);
  }
}

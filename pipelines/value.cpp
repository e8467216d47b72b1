#include "pipelines/value.hpp"

#include <cstring>

#include <opencv2/imgproc.hpp>

#include "pipelines/codec.hpp"

namespace rookery::pipe {

const char* to_string(kind k) {
  switch (k) {
    case kind::bytes: return "bytes";
    case kind::image: return "image";
    case kind::tensor: return "tensor";
    case kind::embedding: return "embedding";
    case kind::faces: return "faces";
    case kind::series: return "series";
    case kind::text: return "text";
  }
  return "?";
}

image image::of(cv::Mat m) {
  image i;
  i.rw = m.cols;
  i.rh = m.rows;
  i.cw = m.cols;
  i.ch = m.rows;
  i.src = std::move(m);
  return i;
}

bool image::pending() const {
  return !filter.empty() || left != 0 || top != 0 || cw != src.cols || ch != src.rows;
}

result<cv::Mat> image::materialise() const {
  if (!pending())
    return src;
  auto over = [&](int64_t w, int64_t h) {
    return fail(errc::payload_too_large, "preprocessing would make " + std::to_string(w) + "x"
                                           + std::to_string(h) + " pixels, over the limit of "
                                           + std::to_string(max_pixels));
  };
  if (too_many_pixels(cw, ch, max_pixels))
    return over(cw, ch);
  if (filter == "tf_bilinear") // float output: to_tensor computes it (tf_bilinear_tensor)
    return fail(errc::bad_request, "a tf_bilinear resize must be followed by to_tensor");
  // Pillow's filter is computed inside the window only; OpenCV's resize the
  // whole picture first.
  if (filter != "pil_bilinear" && !filter.empty() && too_many_pixels(rw, rh, max_pixels))
    return over(rw, rh);
  try {
    // The part of the window inside the resized picture.
    const int64_t x0 = std::max<int64_t>(0, left), x1 = std::min(rw, left + cw);
    const int64_t y0 = std::max<int64_t>(0, top), y1 = std::min(rh, top + ch);
    cv::Mat out = cv::Mat::zeros(static_cast<int>(ch), static_cast<int>(cw), CV_8UC3);
    if (x1 <= x0 || y1 <= y0)
      return out;
    cv::Mat inside;
    if (filter == "pil_bilinear") {
      auto win = pil_resize_window(src, rw, rh, x0, x1 - x0, y0, y1 - y0);
      inside = cv::Mat(static_cast<int>(y1 - y0), static_cast<int>(x1 - x0), CV_8UC3, win.data()).clone();
    } else {
      cv::Mat resized = src;
      if (!filter.empty() && (rw != src.cols || rh != src.rows)) {
        int flag = filter == "area" ? cv::INTER_AREA : filter == "nearest" ? cv::INTER_NEAREST
                                                                           : cv::INTER_LINEAR;
        cv::resize(src, resized, cv::Size(static_cast<int>(rw), static_cast<int>(rh)), 0, 0, flag);
      }
      inside = resized(cv::Rect(static_cast<int>(x0), static_cast<int>(y0), static_cast<int>(x1 - x0),
                                static_cast<int>(y1 - y0)));
    }
    inside.copyTo(out(cv::Rect(static_cast<int>(x0 - left), static_cast<int>(y0 - top),
                               static_cast<int>(x1 - x0), static_cast<int>(y1 - y0))));
    return out;
  } catch (const std::bad_alloc&) {
    return fail(errc::payload_too_large, "out of memory while resampling the image");
  } catch (const cv::Exception& e) {
    return fail(errc::internal, std::string("image resampling failed: ") + e.err);
  }
}

failure params::bad(const std::string& what) const {
  return fail(errc::bad_request, "op '" + op + "': " + what);
}

status params::only(std::initializer_list<const char*> known) const {
  for (auto& [k, v] : j.items()) {
    if (k == "op")
      continue;
    bool ok = false;
    for (auto* n : known)
      ok = ok || k == n;
    if (!ok) {
      std::string list;
      for (auto* n : known)
        list += (list.empty() ? "" : ", ") + std::string(n);
      return bad("unknown field '" + k + "'" + (list.empty() ? " (it takes none)" : " (it takes " + list + ")"));
    }
  }
  return {};
}

status params::integer(const char* key, int64_t& out, int64_t lo, int64_t hi) const {
  auto i = j.find(key);
  if (i == j.end() || i->is_null())
    return {};
  if (!i->is_number_integer() || (i->is_number_unsigned() && i->get<uint64_t>() > uint64_t(hi))
      || i->get<int64_t>() < lo || i->get<int64_t>() > hi)
    return bad(std::string("'") + key + "' must be an integer from " + std::to_string(lo) + " to "
               + std::to_string(hi));
  out = i->get<int64_t>();
  return {};
}

status params::number(const char* key, double& out, double lo, double hi) const {
  auto i = j.find(key);
  if (i == j.end() || i->is_null())
    return {};
  if (!i->is_number() || !(i->get<double>() >= lo) || !(i->get<double>() <= hi))
    return bad(std::string("'") + key + "' must be a number from " + std::to_string(lo) + " to "
               + std::to_string(hi));
  out = i->get<double>();
  return {};
}

status params::text(const char* key, std::string& out, std::initializer_list<const char*> allowed) const {
  auto i = j.find(key);
  if (i == j.end() || i->is_null())
    return {};
  std::string list;
  for (auto* a : allowed)
    list += (list.empty() ? "" : ", ") + std::string(a);
  if (!i->is_string())
    return bad(std::string("'") + key + "' must be one of " + list);
  auto v = i->get<std::string>();
  for (auto* a : allowed)
    if (v == a) {
      out = v;
      return {};
    }
  return bad(std::string("'") + key + "' must be one of " + list + ", not '" + v + "'");
}

status params::floats(const char* key, std::vector<float>& out, size_t min_n, size_t max_n) const {
  auto i = j.find(key);
  if (i == j.end() || i->is_null())
    return {};
  if (!i->is_array() || i->size() < min_n || i->size() > max_n)
    return bad(std::string("'") + key + "' must be " + std::to_string(min_n) + " to "
               + std::to_string(max_n) + " numbers");
  std::vector<float> v;
  for (auto& x : *i) {
    if (!x.is_number())
      return bad(std::string("'") + key + "' must hold numbers");
    v.push_back(x.get<float>());
  }
  out = std::move(v);
  return {};
}

} // namespace rookery::pipe

// decode_video: the upload's bytes (MP4, WebM, AVI, MKV, animated GIF: what
// OpenCV's FFmpeg backend demuxes) -> frames sampled every 1/fps seconds,
// at most max_frames of them, from a clip of at most max_duration_s seconds.
// The bytes are spooled to a private temporary file, which FFmpeg reads.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include <opencv2/videoio.hpp>

#include "pipelines/codec.hpp"
#include "pipelines/value.hpp"

namespace rookery::pipe {

namespace {

struct spool {
  std::string path;
  ~spool() {
    if (!path.empty())
      ::unlink(path.c_str());
  }
};

class decode_video_op : public op {
public:
  decode_video_op(double fps, int64_t max_frames, double max_s, limits lim)
    : fps_(fps), max_frames_(max_frames), max_s_(max_s), lim_(std::move(lim)) {}
  kind input() const override { return kind::bytes; }
  kind output() const override { return kind::image; }

  status run(item& x) const override {
    if (x.bytes.empty())
      return fail(errc::bad_request, "empty body: send the video to embed");
    spool file;
    std::string tmpl = lim_.temp_dir + "/rookery-video-XXXXXX";
    std::vector<char> name(tmpl.begin(), tmpl.end());
    name.push_back('\0');
    int fd = ::mkstemp(name.data());
    if (fd < 0)
      return fail(errc::internal, "cannot spool the video");
    file.path = name.data();
    const char* p = x.bytes.data();
    size_t left = x.bytes.size();
    while (left > 0) {
      auto n = ::write(fd, p, left);
      if (n <= 0) {
        ::close(fd);
        return fail(errc::internal, "cannot spool the video");
      }
      p += n;
      left -= static_cast<size_t>(n);
    }
    ::close(fd);

    cv::VideoCapture cap;
    try {
      cap.open(file.path, cv::CAP_FFMPEG);
    } catch (const cv::Exception&) {
    }
    if (!cap.isOpened())
      return fail(errc::bad_request, "could not decode video: not a container FFmpeg can read, or corrupt");
    double fps = cap.get(cv::CAP_PROP_FPS);
    double count = cap.get(cv::CAP_PROP_FRAME_COUNT);
    if (!(fps > 0) || fps > 1000)
      fps = 25; // containers without a rate (some GIFs): FFmpeg's default
    const double duration = count > 0 ? count / fps : 0;
    if (duration > max_s_)
      return fail(errc::payload_too_large, "the video lasts " + std::to_string(duration)
                                             + " s; the limit is " + std::to_string(max_s_) + " s");
    const int64_t w = static_cast<int64_t>(cap.get(cv::CAP_PROP_FRAME_WIDTH));
    const int64_t h = static_cast<int64_t>(cap.get(cv::CAP_PROP_FRAME_HEIGHT));
    if (too_many_pixels(w, h, lim_.max_pixels))
      return fail(errc::payload_too_large, "frames of " + std::to_string(w) + "x" + std::to_string(h)
                                             + " pixels are over the limit");
    // Read every frame in order (seeking is unreliable across containers) and
    // keep the first frame at or after each sampling time.
    const double step = 1.0 / fps_;
    double next = 0;
    int64_t index = 0;
    x.images.clear();
    x.times_s.clear();
    cv::Mat frame;
    while (true) {
      bool ok = false;
      try {
        ok = cap.read(frame);
      } catch (const cv::Exception&) {
        ok = false;
      }
      if (!ok || frame.empty())
        break;
      const double t = static_cast<double>(index) / fps;
      ++index;
      if (t > max_s_)
        return fail(errc::payload_too_large, "the video lasts over " + std::to_string(max_s_) + " s");
      if (t + 1e-9 < next)
        continue;
      if (static_cast<int64_t>(x.images.size()) >= max_frames_) {
        continue; // keep reading to learn the duration; take no more frames
      }
      if (frame.type() != CV_8UC3)
        return fail(errc::bad_request, "could not decode video: unexpected pixel layout");
      x.images.push_back(image::of(frame.clone()));
      x.images.back().max_pixels = lim_.max_pixels;
      x.times_s.push_back(t);
      next = t + step;
    }
    if (x.images.empty())
      return fail(errc::bad_request, "could not decode video: no frame could be read (truncated or corrupt)");
    x.duration_s = static_cast<double>(index) / fps;
    x.extra["frames"] = x.images.size();
    x.extra["duration_s"] = x.duration_s;
    x.bytes.clear();
    x.bytes.shrink_to_fit();
    x.k = kind::image;
    return {};
  }

  nlohmann::json describe() const override {
    return {{"op", "decode_video"}, {"fps", fps_}, {"max_frames", max_frames_}, {"max_duration_s", max_s_}};
  }

private:
  double fps_;
  int64_t max_frames_;
  double max_s_;
  limits lim_;
};

} // namespace

result<std::unique_ptr<op>> make_decode_video(const nlohmann::json& j, const limits& lim) {
  params p{j, "decode_video"};
  if (auto s = p.only({"fps", "max_frames", "max_duration_s"}); !s)
    return s.error();
  double fps = 1, max_s = std::min(600.0, lim.max_video_s);
  int64_t max_frames = std::min<int64_t>(64, lim.max_frames);
  if (auto s = p.number("fps", fps, 0.01, 60); !s)
    return s.error();
  if (auto s = p.integer("max_frames", max_frames, 1, lim.max_frames); !s)
    return s.error();
  if (auto s = p.number("max_duration_s", max_s, 0.1, lim.max_video_s); !s)
    return s.error();
  return std::unique_ptr<op>(new decode_video_op(fps, max_frames, max_s, lim));
}

} // namespace rookery::pipe

// faces: a picture -> every face in it, with its box, score, 68 landmarks and
// 128-d descriptor: face-api's SSD MobileNetV1 detector -> landmark net ->
// aligned crop -> recognition ResNet (models/faces/), on the weights of
// @vladmandic/face-api that scripts/setup.sh converts. The answer's "faces"
// are in pixels of the decoded upload, whatever resize or crop came before.
//
// The operator runs its networks itself, so a chain with it needs no model
// op and runs whole in the pipeline's stage actors. face_models is not
// thread-safe, so the operator keeps a free list of loaded instances: a stage
// takes one for a request (loading one on first use) and gives it back; no
// more are ever loaded than stages run at once.
#include <algorithm>
#include <fstream>
#include <mutex>

#include <opencv2/imgproc.hpp>

#include "models/faces/faces.hpp"
#include "pipelines/value.hpp"

namespace rookery::pipe {

namespace {

class faces_op : public op {
public:
  faces_op(std::string dir, faces::detector_options opt, int threads)
      : dir_(std::move(dir)), opt_(opt), threads_(threads) {
    std::ifstream meta_file(dir_ + "/meta.json");
    auto meta = meta_file ? nlohmann::json::parse(meta_file, nullptr, false) : nlohmann::json();
    info_.name = "face-api";
    info_.dim = 128;
    if (!meta.is_object()) {
      info_.status = "no converted face-api weights in " + dir_ + " (scripts/setup.sh installs them)";
      return;
    }
    const auto label = meta.value("package", std::string{"?"}) + "@" + meta.value("version", std::string{"?"});
    info_.ready = true;
    info_.weights = label;
    info_.status = "serving " + label + " (" + meta.value("license", std::string{"?"})
                   + "): ssd_mobilenetv1, face_landmark_68, face_recognition (loaded on first use)";
  }

  kind input() const override { return kind::image; }
  kind output() const override { return kind::faces; }
  const own_model_info* runs_own_model() const override { return &info_; }

  nlohmann::json describe() const override {
    return {{"op", "faces"},
            {"detector", "ssd_mobilenetv1"},
            {"min_score", opt_.min_confidence},
            {"max_faces", opt_.max_results}};
  }

  status run(item& x) const override {
    if (x.images.size() != 1)
      return fail(errc::bad_request, "op 'faces' takes one picture (a photo, not a video's frames)");
    const auto& im = x.images.front();
    auto px = im.materialise();
    if (!px)
      return px.error();
    const cv::Mat& bgr = *px;
    faces::rgb_image rgb;
    rgb.width = bgr.cols;
    rgb.height = bgr.rows;
    rgb.pixels.resize(static_cast<size_t>(bgr.cols) * static_cast<size_t>(bgr.rows) * 3);
    cv::Mat out(bgr.rows, bgr.cols, CV_8UC3, rgb.pixels.data());
    cv::cvtColor(bgr, out, cv::COLOR_BGR2RGB);

    auto models = take();
    if (!models)
      return models.error();
    auto found = (*models)->analyse(rgb, opt_);
    give_back(std::move(*models));
    if (!found)
      return found.error();

    // Back to pixels of the decoded upload: undo the pending crop window
    // and resize (identity when the picture went in as decoded).
    const double sx = im.pending() ? static_cast<double>(im.src.cols) / std::max<int64_t>(1, im.rw) : 1;
    const double sy = im.pending() ? static_cast<double>(im.src.rows) / std::max<int64_t>(1, im.rh) : 1;
    const double ox = im.pending() ? static_cast<double>(im.left) : 0;
    const double oy = im.pending() ? static_cast<double>(im.top) : 0;
    auto arr = nlohmann::json::array();
    for (auto& f : *found) {
      auto pts = nlohmann::json::array();
      for (auto& p : f.landmarks)
        pts.push_back({(p[0] + ox) * sx, (p[1] + oy) * sy});
      arr.push_back({{"box", {(f.box.x + ox) * sx, (f.box.y + oy) * sy, f.box.width * sx, f.box.height * sy}},
                     {"score", f.score},
                     {"landmarks", std::move(pts)},
                     {"embedding", f.descriptor}});
    }
    x.extra["faces"] = std::move(arr);
    x.images.clear();
    x.embeddings.clear();
    x.k = kind::faces;
    return {};
  }

private:
  result<std::unique_ptr<faces::face_models>> take() const {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!free_.empty()) {
        auto m = std::move(free_.back());
        free_.pop_back();
        return m;
      }
    }
    auto m = faces::face_models::load(dir_, threads_);
    if (!m)
      return fail(errc::unavailable, "the faces pipeline cannot load its weights: " + m.error().message);
    return std::move(*m);
  }
  void give_back(std::unique_ptr<faces::face_models> m) const {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(std::move(m));
  }

  std::string dir_;
  faces::detector_options opt_;
  int threads_;
  own_model_info info_;
  mutable std::mutex mu_;
  mutable std::vector<std::unique_ptr<faces::face_models>> free_;
};

} // namespace

result<std::unique_ptr<op>> make_faces(const nlohmann::json& j, const limits& lim) {
  params p{j, "faces"};
  if (auto s = p.only({"detector", "min_score", "max_faces"}); !s)
    return s.error();
  std::string detector = "ssd_mobilenetv1";
  if (auto s = p.text("detector", detector, {"ssd_mobilenetv1"}); !s)
    return s.error();
  faces::detector_options opt;
  if (auto s = p.number("min_score", opt.min_confidence, 0.0, 1.0); !s)
    return s.error();
  int64_t max_faces = opt.max_results;
  if (auto s = p.integer("max_faces", max_faces, 1, 1000); !s)
    return s.error();
  opt.max_results = static_cast<int>(max_faces);
  return std::unique_ptr<op>(new faces_op(faces::builtin_models_dir(), opt, lim.torch_threads));
}

} // namespace rookery::pipe

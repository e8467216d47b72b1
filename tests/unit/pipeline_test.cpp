// Pipelines as configuration: operator chains checked once into typed
// operators, the built-in JSON files, video decoding and temporal pooling.
#include <cmath>
#include <cstdio>
#include <unistd.h>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "pipelines/image.hpp"
#include "pipelines/ops.hpp"
#include "pipelines/pipeline.hpp"

using namespace rookery;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

pipeline_def def_of(const json& ops, const std::string& name = "t") {
  pipeline_def d;
  d.name = name;
  d.ops_json = ops.dump();
  return d;
}

std::string compile_error(const json& ops) {
  auto c = compiled_pipeline::compile(def_of(ops), pipeline_limits{});
  return c ? std::string{} : c.error().message;
}

const json kImageOps = json::parse(R"([
  {"op": "decode_image"}, {"op": "resize", "size": 256}, {"op": "center_crop", "size": 224},
  {"op": "to_tensor"}, {"op": "normalize"}, {"op": "model", "name": "resnet18"}, {"op": "l2_normalize"}])");

std::string photo(const char* name = "chelsea.png") {
  return std::string("/usr/lib/python3/dist-packages/skimage/data/") + name;
}

// A video made with Debian's ffmpeg from two real photos: `secs` seconds of
// each, one after the other.
std::string make_video(const std::string& dir, const std::string& ext, int secs = 2) {
  auto out = dir + "/clip." + ext;
  auto cmd = "ffmpeg -loglevel error -y -loop 1 -t " + std::to_string(secs) + " -i " + photo("chelsea.png")
             + " -loop 1 -t " + std::to_string(secs) + " -i " + photo("coffee.png")
             + " -filter_complex '[0:v]scale=320:240,setsar=1[a];[1:v]scale=320:240,setsar=1[b];"
               "[a][b]concat=n=2:v=1:a=0,format=yuv420p[v]' -map '[v]' -r 5 "
             + (ext == "webm" ? "-c:v libvpx -b:v 400k " : ext == "gif" ? "" : "-c:v mpeg4 -q:v 4 ") + out
             + " 2>/dev/null";
  return std::system(cmd.c_str()) == 0 ? out : "";
}

} // namespace

TEST_CASE("pipeline specs are checked once, with errors naming the op and field", "[pipeline]") {
  CHECK(compile_error(kImageOps).empty());
  CHECK(compile_error(json::array()).find("non-empty") != std::string::npos);
  CHECK(compile_error(json::parse(R"([{"op": "sharpen"}])")).find("unknown op 'sharpen'") != std::string::npos);
  CHECK(compile_error(json::parse(R"([{"nope": 1}])")).find("ops[0]") != std::string::npos);
  auto e = compile_error(json::parse(R"([{"op": "decode_image"}, {"op": "resize", "size": -3}])"));
  CHECK(e.find("ops[1]") != std::string::npos);
  CHECK(e.find("'size'") != std::string::npos);
  e = compile_error(json::parse(R"([{"op": "decode_image"}, {"op": "resize", "size": 9, "colour": 1}])"));
  CHECK(e.find("unknown field 'colour'") != std::string::npos);
  // Kinds must line up: normalize needs a tensor, not an image.
  e = compile_error(json::parse(R"([{"op": "decode_image"}, {"op": "normalize"}])"));
  CHECK(e.find("takes tensor") != std::string::npos);
  CHECK(e.find("gives image") != std::string::npos);
  // A pipeline starts from bytes, names one model, ends with an embedding.
  CHECK(compile_error(json::parse(R"([{"op": "to_tensor"}])")).find("starts from bytes") != std::string::npos);
  CHECK(compile_error(json::parse(R"([{"op": "decode_image"}, {"op": "to_tensor"}])")).find("'model'") != std::string::npos);
  auto two = kImageOps;
  two.insert(two.end() - 1, json{{"op", "model"}, {"name", "x"}});
  CHECK(compile_error(two).find("takes tensor, but the op before gives embedding") != std::string::npos);
  CHECK(compile_error(json::parse(R"([{"op": "decode_image"}, {"op": "to_tensor"}, {"op": "model", "name": "../x"}])"))
          .find("'name'") != std::string::npos);
  // Frames must be pooled.
  auto video = json::parse(R"([{"op": "decode_video"}, {"op": "resize", "size": 64}, {"op": "to_tensor"},
                               {"op": "model", "name": "m"}, {"op": "l2_normalize"}])");
  CHECK(compile_error(video).find("temporal_pool") != std::string::npos);
  video.push_back({{"op", "temporal_pool"}});
  CHECK(compile_error(video).empty());
  // center: a shipped reference vector by name, or inline numbers.
  auto centred = kImageOps;
  centred.insert(centred.end() - 1, json{{"op", "center"}, {"mean", "no_such_vector"}});
  CHECK(compile_error(centred).find("no shipped vector 'no_such_vector'") != std::string::npos);
  centred[centred.size() - 2] = json{{"op", "center"}, {"mean", "nsfwjs_inception_v3_mean"}};
  CHECK(compile_error(centred).empty());
  // faces: its own networks embed; no model op, ends with faces.
  CHECK(compile_error(json::parse(R"([{"op": "decode_image"}, {"op": "faces"}])")).empty());
  CHECK(compile_error(json::parse(R"([{"op": "decode_image"}, {"op": "faces", "detector": "yolo"}])"))
          .find("'detector'") != std::string::npos);
  CHECK(compile_error(json::parse(R"([{"op": "decode_image"}, {"op": "faces", "min_score": 2}])"))
          .find("'min_score'") != std::string::npos);
  CHECK(compile_error(json::parse(R"([{"op": "decode_image"}, {"op": "faces"}, {"op": "l2_normalize"}])"))
          .find("takes embedding, but the op before gives faces") != std::string::npos);
  // Definitions: shape only.
  CHECK_FALSE(parse_pipeline_def(R"({"ops": []})"));
  CHECK_FALSE(parse_pipeline_def(R"({"name": "../up", "ops": []})"));
  CHECK_FALSE(parse_pipeline_def(R"({"name": "x", "ops": [], "mime_types": ["png"]})"));
  CHECK_FALSE(parse_pipeline_def(R"({"name": "x", "ops": [], "extra": 1})"));
  CHECK(parse_pipeline_def(R"({"name": "x", "ops": [], "mime_types": ["image/png"]})"));
}

TEST_CASE("built-in pipelines ship as JSON, compile, and describe their operators", "[pipeline]") {
  auto builtins = builtin_pipelines();
  REQUIRE(builtins.size() >= 2);
  bool image = false, video = false, faces = false;
  for (auto& d : builtins) {
    auto c = compiled_pipeline::compile(d, pipeline_limits{});
    INFO(d.name << ": " << (c ? "" : c.error().message));
    REQUIRE(c);
    CHECK(d.builtin);
    // A repository model embeds, or an operator's own networks (faces).
    CHECK((*c)->model().empty() == ((*c)->own_model() != nullptr));
    faces = faces || (d.name == "faces" && (*c)->own_model());
    auto described = json::parse((*c)->describe_json());
    REQUIRE(described.is_array());
    for (auto& o : described)
      CHECK(o.contains("op"));
    image = image || d.name == "image";
    video = video || d.name == "video";
  }
  CHECK(image);
  CHECK(video);
  CHECK(faces);
  // Every parameter with its value, defaults filled in.
  auto c = compiled_pipeline::compile(def_of(kImageOps), pipeline_limits{});
  auto d = json::parse((*c)->describe_json());
  CHECK(d[1] == json{{"op", "resize"}, {"mode", "shorter"}, {"filter", "pil_bilinear"}, {"size", 256}});
  CHECK(d[4]["mean"].size() == 3);
}

TEST_CASE("the operator chain equals the fused image path it replaced", "[pipeline]") {
  auto bytes = read_all(photo());
  REQUIRE(!bytes.empty());
  // preprocess_image runs image_chain(); a hand-written chain of the same
  // operators gives the same floats, bit for bit.
  image_options opt;
  auto fused = preprocess_image(bytes, opt);
  REQUIRE(fused);
  auto chain = pipe::compile_ops(json::parse(R"([{"op": "decode_image"}, {"op": "resize", "size": 256},
      {"op": "center_crop", "size": 224}, {"op": "to_tensor"},
      {"op": "normalize", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}])"), pipe::limits{});
  REQUIRE(chain);
  auto x = pipe::run_ops(*chain, bytes, "image/png");
  REQUIRE(x);
  REQUIRE(x->tensors.size() == 1);
  CHECK(x->tensors[0] == fused->data);
  // Resize after a crop materialises the crop first; exact mode stretches.
  auto odd = pipe::compile_ops(json::parse(R"([{"op": "decode_image"}, {"op": "center_crop", "size": 100},
      {"op": "resize", "width": 50, "height": 20, "filter": "area"}, {"op": "to_tensor", "channels": 1}])"),
                               pipe::limits{});
  REQUIRE(odd);
  auto y = pipe::run_ops(*odd, bytes, "");
  REQUIRE(y);
  CHECK(y->c == 1);
  CHECK(y->h == 20);
  CHECK(y->w == 50);
  // Bad input still gets the client's error.
  auto bad = pipe::run_ops(*chain, "not an image", "");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == errc::bad_request);
}

TEST_CASE("video: frames sampled, embedded per frame, pooled into segments", "[pipeline][video]") {
  auto dir = fs::temp_directory_path() / ("rookery-video-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto ops = json::parse(R"([{"op": "decode_video", "fps": 2, "max_frames": 32}, {"op": "resize", "size": 32},
      {"op": "center_crop", "size": 32}, {"op": "to_tensor"}, {"op": "model", "name": "m"},
      {"op": "l2_normalize"}, {"op": "temporal_pool", "threshold": 0.9}])");
  pipeline_limits lim;
  lim.temp_dir = dir.string();
  auto c = compiled_pipeline::compile(def_of(ops), lim);
  REQUIRE(c);
  for (std::string ext : {"mp4", "webm", "avi", "mkv", "gif"}) {
    auto path = make_video(dir.string(), ext);
    INFO(ext);
    REQUIRE(!path.empty());
    auto s = (*c)->before_model(read_all(path), "");
    REQUIRE(s);
    auto in = (*c)->take_inputs(**s);
    // 4 s at 2 frames a second.
    CHECK(in.data.size() >= 7);
    CHECK(in.data.size() <= 9);
    CHECK(in.c == 3);
    CHECK(in.h == 32);
    // Stand in for the model: each frame's pixels, centred. Frames of the
    // same photo are near-identical; the two photos are not.
    std::vector<std::vector<float>> feats;
    for (auto& t : in.data) {
      double mean = 0;
      for (float v : t)
        mean += v;
      mean /= static_cast<double>(t.size());
      std::vector<float> f;
      for (float v : t)
        f.push_back(static_cast<float>(v - mean));
      feats.push_back(f);
    }
    auto a = (*c)->after_model(**s, feats);
    REQUIRE(a);
    auto extra = json::parse(a->extra_json);
    REQUIRE(extra["segments"].size() == 2);
    CHECK(extra["frames"] == in.data.size());
    CHECK(extra["segments"][0]["start_s"] == 0.0);
    CHECK(extra["segments"][1]["start_s"].get<double>() == Approx(2.0).margin(0.5));
    CHECK(extra["segments"][1]["end_s"].get<double>() == Approx(4.0).margin(0.5));
    auto& e0 = extra["segments"][0]["embedding"];
    auto& e1 = extra["segments"][1]["embedding"];
    double dot = 0;
    for (size_t k = 0; k < e0.size(); ++k)
      dot += e0[k].get<double>() * e1[k].get<double>();
    CHECK(dot < 0.9);
    CHECK(a->embedding.size() == 3 * 32 * 32);
  }
  // Corrupt, truncated, empty and over-long input: the client's error.
  auto mp4 = read_all(make_video(dir.string(), "mp4"));
  auto bad = [&](const std::string& bytes) {
    auto s = (*c)->before_model(bytes, "");
    return s ? errc::internal : s.error().code;
  };
  CHECK(bad("") == errc::bad_request);
  CHECK(bad(mp4.substr(0, 200)) == errc::bad_request);
  CHECK(bad(std::string(5000, 'x')) == errc::bad_request);
  auto shorter = json::parse(ops.dump());
  shorter[0]["max_duration_s"] = 1;
  auto c2 = compiled_pipeline::compile(def_of(shorter), lim);
  REQUIRE(c2);
  auto s2 = (*c2)->before_model(mp4, "");
  REQUIRE_FALSE(s2);
  CHECK(s2.error().code == errc::payload_too_large);
  fs::remove_all(dir);
}

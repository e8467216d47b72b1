// Training over HTTP against the real server: submit, follow (polling and
// server-sent events), artifacts, cancel within a second, resume, survive a
// SIGKILL, register the model and embed with it; the dataset registry.
#include <chrono>
#include <filesystem>
#include <set>
#include <thread>

// Torch first: glog's CHECK would shadow Catch's otherwise.
#include <opencv2/imgcodecs.hpp>
#include <torch/torch.h>

#include "datasets/datasets.hpp"
#include "integration/harness.hpp"
#include "models/state_dict.hpp"
#include "models/zoo/zoo.hpp"

#undef CHECK
#include <catch2/catch.hpp>

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace rookery::test;

namespace {

header_list bearer(const std::string& token) {
  return {{"Authorization", "Bearer " + token}};
}

/// A small classifier run on real Fashion-MNIST: `steps` steps of 32 images.

/// Polls until `done(job)` or the deadline.
template <class F>
json wait_for(const server& s, const std::string& token, const std::string& id, F done,
              std::chrono::seconds limit = std::chrono::seconds(240)) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  json job;
  while (std::chrono::steady_clock::now() < deadline) {
    job = get_job(s, token, id);
    if (done(job))
      return job;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  FAIL("job " << id << " did not get there in time: " << job.dump().substr(0, 600));
  return job;
}

bool finished(const json& j) {
  auto s = j["state"].get<std::string>();
  return s == "succeeded" || s == "failed" || s == "cancelled";
}

int64_t step_of(const json& j) {
  if (!j.contains("progress_detail"))
    return 0;
  return j["progress_detail"].value("step", int64_t{0});
}

/// The events of an SSE body, in order: (event, data).
std::vector<std::pair<std::string, json>> parse_sse(const std::string& body) {
  std::vector<std::pair<std::string, json>> out;
  size_t pos = 0;
  while (pos < body.size()) {
    auto end = body.find("\n\n", pos);
    if (end == std::string::npos)
      break;
    auto block = body.substr(pos, end - pos);
    pos = end + 2;
    std::string event, data;
    size_t lp = 0;
    while (lp < block.size()) {
      auto le = block.find('\n', lp);
      auto line = block.substr(lp, le == std::string::npos ? std::string::npos : le - lp);
      lp = le == std::string::npos ? block.size() : le + 1;
      if (line.rfind("event: ", 0) == 0)
        event = line.substr(7);
      else if (line.rfind("data: ", 0) == 0)
        data = line.substr(6);
    }
    if (!event.empty())
      out.emplace_back(event, json::parse(data));
  }
  return out;
}

/// A Fashion-MNIST test image as PNG bytes, and the image itself.
std::pair<std::string, torch::Tensor> fashion_png(int64_t index) {
  rookery::data::dataset_paths paths;
  auto ds = rookery::data::find_dataset(paths, "fashion-mnist", 0, false);
  REQUIRE(ds);
  auto sets = rookery::data::load_images(*ds, {0, 0, 0});
  REQUIRE(sets);
  auto img = sets->test.images[index]; // 1 x 28 x 28 uint8
  cv::Mat m(28, 28, CV_8UC1, img.contiguous().data_ptr<uint8_t>());
  std::vector<uchar> png;
  cv::imencode(".png", m, png);
  return {std::string(png.begin(), png.end()), img.clone()};
}

} // namespace

TEST_CASE("train a classifier over HTTP, follow it, fetch artifacts, register and embed",
          "[integration][train]") {
  temp_dir dir;
  server s{dir.path};
  auto alice = signup_and_login(s, "alice");

  auto sub = http("POST", s.url("/v1/jobs"), classifier_spec(2, 1024).dump(), bearer(alice));
  REQUIRE(sub.status == 202);
  auto id = sub.json()["id"].get<std::string>();
  CHECK(sub.json()["events"] == "/v1/jobs/" + id + "/events");

  // Follow it live: the stream ends when the job does.
  auto events = http("GET", s.url("/v1/jobs/" + id + "/events"), "", bearer(alice));
  REQUIRE(events.status == 200);
  CHECK(events.headers["content-type"] == "text/event-stream");
  auto evs = parse_sse(events.body);
  REQUIRE(evs.size() >= 3);
  CHECK(evs.front().first == "state");
  CHECK(evs.back().first == "end");
  CHECK(evs.back().second["state"] == "succeeded");
  std::set<std::string> kinds;
  for (auto& [e, d] : evs)
    kinds.insert(e);
  CHECK(kinds.count("metrics") == 1);
  CHECK(kinds.count("progress") == 1);

  auto job = wait_for(s, alice, id, finished);
  REQUIRE(job["state"] == "succeeded");
  CHECK(job["kind"] == "train");
  CHECK(job["progress"] == 1);
  CHECK(job["progress_detail"]["step"] == 64);
  CHECK(job["progress_detail"]["total_steps"] == 64);
  CHECK(job["metrics"]["val_acc"].get<double>() > 0.5);
  REQUIRE(job["history"].is_array());
  CHECK(job["history"].size() >= 16);
  CHECK(job["result"]["outcome"] == "completed");
  CHECK(job["spec"]["hyper"]["optimizer"] == "adam"); // normalised spec, defaults filled in

  // Artifacts: listed, served, and they decode.
  auto list = http("GET", s.url("/v1/jobs/" + id + "/artifacts"), "", bearer(alice));
  REQUIRE(list.status == 200);
  std::set<std::string> paths;
  const auto listing = list.json(); // named: a range over a temporary's member dangles
  for (auto& a : listing["artifacts"])
    paths.insert(a["path"].get<std::string>());
  for (auto p : {"checkpoints/last.pt", "checkpoints/epoch_2.pt", "model/model.pt",
                 "artifacts/curves_loss.png", "artifacts/curves_metrics.png", "metrics.jsonl"})
    CHECK(paths.count(p) == 1);
  auto png = http("GET", s.url("/v1/jobs/" + id + "/artifacts/artifacts/curves_loss.png"), "",
                  bearer(alice));
  REQUIRE(png.status == 200);
  CHECK(png.headers["content-type"] == "image/png");
  std::vector<uchar> bytes(png.body.begin(), png.body.end());
  CHECK_FALSE(cv::imdecode(bytes, cv::IMREAD_COLOR).empty());
  // Never outside the job's directory; never someone else's.
  CHECK(http("GET", s.url("/v1/jobs/" + id + "/artifacts/..%2F..%2Frookery.db"), "", bearer(alice)).status == 404);
  CHECK(http("GET", s.url("/v1/jobs/" + id + "/artifacts/nothing.png"), "", bearer(alice)).status == 404);
  auto bob = signup_and_login(s, "bobby");
  CHECK(http("GET", s.url("/v1/jobs/" + id + "/artifacts"), "", bearer(bob)).status == 404);
  CHECK(http("POST", s.url("/v1/jobs/" + id + "/register"), R"({"name":"x"})", bearer(bob)).status == 404);

  // Register the model and embed a real Fashion-MNIST image with it.
  auto reg = http("POST", s.url("/v1/jobs/" + id + "/register"), R"({"name":"fmnist-cnn"})",
                  bearer(alice));
  REQUIRE(reg.status == 201);
  CHECK(reg.json()["dim"] == 256);
  CHECK(reg.json()["input_shape"] == json::array({1, 28, 28}));
  auto [image_png, image] = fashion_png(0);
  auto emb = http("POST", s.url("/v1/embed?pipeline=fmnist-cnn"), image_png, bearer(alice));
  REQUIRE(emb.status == 200);
  auto e = emb.json()["embedding"].get<std::vector<float>>();
  REQUIRE(e.size() == 256);

  // The server's embedding is the trained model's penultimate features.
  rookery::zoo::model_options o;
  o.num_classes = 10;
  o.in_channels = 1;
  auto net = rookery::zoo::create_model("small_cnn", o);
  REQUIRE(net);
  REQUIRE(rookery::load_state_dict(**net, dir.path + "/jobs/" + id + "/model/model.pt"));
  (*net)->eval();
  auto pre = job["result"]["model"]["preprocess"];
  auto x = image.to(torch::kFloat32).div(255).unsqueeze(0);
  x = (x - pre["mean"][0].get<double>()) / pre["std"][0].get<double>();
  auto f = torch::nn::functional::normalize((*net)->forward_features(x),
                                            torch::nn::functional::NormalizeFuncOptions().dim(1));
  auto server_emb = torch::tensor(e).view({1, -1});
  CHECK(torch::cosine_similarity(f, server_emb).item<double>() > 0.9999);

  // Registering a running or failed job, or without a name, is refused.
  CHECK(http("POST", s.url("/v1/jobs/" + id + "/register"), "{}", bearer(alice)).status == 400);
}

TEST_CASE("cancel stops a training run within a second; resume continues it",
          "[integration][train]") {
  temp_dir dir;
  server s{dir.path};
  auto alice = signup_and_login(s, "alice");
  auto spec = classifier_spec(3, 4096, {{"checkpoint_every", 20}});
  auto id = http("POST", s.url("/v1/jobs"), spec.dump(), bearer(alice)).json()["id"].get<std::string>();
  wait_for(s, alice, id, [](const json& j) { return step_of(j) >= 25; });
  auto c = http("DELETE", s.url("/v1/jobs/" + id), "", bearer(alice));
  REQUIRE(c.status == 200);
  CHECK(c.json()["state"] == "cancelled");
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  auto h1 = get_job(s, alice, id)["history"].size();
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  auto after = get_job(s, alice, id);
  CHECK(after["state"] == "cancelled");
  CHECK(after["history"].size() == h1); // nothing ran after the first second
  CHECK(http("DELETE", s.url("/v1/jobs/" + id), "", bearer(alice)).status == 409);

  auto r = http("POST", s.url("/v1/jobs/" + id + "/resume"), "", bearer(alice));
  REQUIRE(r.status == 202);
  auto done = wait_for(s, alice, id, finished);
  REQUIRE(done["state"] == "succeeded");
  CHECK(done["result"]["resumed"] == true);
  CHECK(done["result"]["resumed_from_step"].get<int64_t>() >= 20);
  CHECK(done["result"]["steps"] == 3 * 128);
  CHECK(http("POST", s.url("/v1/jobs/" + id + "/resume"), "", bearer(alice)).status == 409);
}

TEST_CASE("a training job survives SIGKILL and resumes from its last checkpoint",
          "[integration][train]") {
  temp_dir dir;
  std::string id, alice;
  const int64_t total = 2 * 96; // 2 epochs of 3072 images, batch 32
  {
    server s{dir.path};
    alice = signup_and_login(s, "alice");
    auto spec = classifier_spec(2, 3072, {{"checkpoint_every", 25}});
    id = http("POST", s.url("/v1/jobs"), spec.dump(), bearer(alice)).json()["id"].get<std::string>();
    wait_for(s, alice, id, [](const json& j) { return step_of(j) >= 60; });
    s.kill();
  }
  server s{dir.path};
  // The session survives too (the store is on disk).
  auto job = wait_for(s, alice, id, finished);
  REQUIRE(job["state"] == "succeeded");
  CHECK(job["result"]["resumed"] == true);
  auto from = job["result"]["resumed_from_step"].get<int64_t>();
  CHECK(from >= 50);
  CHECK((from % 25 == 0 || from == 96)); // every 25 steps, and at the end of epoch 1
  CHECK(job["result"]["steps"] == total);
  CHECK(job["progress_detail"]["total_steps"] == total);
  // Every step was logged exactly once although some ran twice.
  std::set<std::pair<int64_t, std::string>> seen;
  for (auto& p : job["history"])
    CHECK(seen.emplace(p["step"].get<int64_t>(), p["phase"].get<std::string>()).second);
  CHECK(seen.count({total, "val"}) == 1);
}

TEST_CASE("bad training requests get clear 4xx answers", "[integration][train]") {
  temp_dir dir;
  server s{dir.path};
  auto alice = signup_and_login(s, "alice");
  auto post = [&](const std::string& body, const header_list& h) {
    return http("POST", s.url("/v1/jobs"), body, h);
  };
  CHECK(post("{nope", bearer(alice)).status == 400);
  CHECK(post(R"({"dataset":"fashion-mnist"})", bearer(alice)).status == 400);
  auto unknown = post(R"({"trainer":"teleport","dataset":"fashion-mnist"})", bearer(alice));
  CHECK(unknown.status == 400);
  CHECK(unknown.json()["detail"].get<std::string>().find("classifier") != std::string::npos);
  CHECK(post(R"({"trainer":"classifier","dataset":"mnist-of-dreams"})", bearer(alice)).status == 404);
  auto bad_hyper = post(R"({"trainer":"classifier","dataset":"fashion-mnist","hyper":{"lr":-1}})",
                        bearer(alice));
  CHECK(bad_hyper.status == 400);
  CHECK(bad_hyper.json()["detail"].get<std::string>().find("hyper.lr") != std::string::npos);
  CHECK(post(R"({"trainer":"classifier","dataset":"fashion-mnist","model":"resnet9000"})",
             bearer(alice)).status == 400);
  CHECK(post(classifier_spec(1, 64).dump(), {}).status == 401);
  // A key without the train scope may not train.
  auto key = http("POST", s.url("/v1/keys"), R"({"name":"k","scopes":["embed"]})", bearer(alice));
  REQUIRE(key.status == 201);
  CHECK(post(classifier_spec(1, 64).dump(), {{"X-API-Key", key.json()["key"].get<std::string>()}})
          .status == 403);
  CHECK(http("GET", s.url("/v1/jobs/j_nope/events"), "", bearer(alice)).status == 404);
  CHECK(http("POST", s.url("/v1/jobs/j_nope/resume"), "", bearer(alice)).status == 404);
  CHECK(http("GET", s.url("/healthz")).status == 200);
}

TEST_CASE("datasets: built-ins listed, an image-folder archive uploaded and trained on",
          "[integration][datasets]") {
  temp_dir dir;
  server s{dir.path};
  auto alice = signup_and_login(s, "alice");
  auto list = http("GET", s.url("/v1/datasets"), "", bearer(alice));
  REQUIRE(list.status == 200);
  std::map<std::string, json> by_name;
  const auto listing = list.json();
  for (auto& d : listing["datasets"])
    by_name[d["name"].get<std::string>()] = d;
  REQUIRE(by_name.count("fashion-mnist") == 1);
  CHECK(by_name["fashion-mnist"]["train_size"] == 60000);
  CHECK(by_name["fashion-mnist"]["classes"].size() == 10);
  REQUIRE(by_name.count("fortunes") == 1);
  CHECK(by_name["fortunes"]["kind"] == "text_classification");

  // A tar of two class folders of generated 16x16 images (bright vs dark).
  auto tar = dir.path + "/shapes.tar";
  REQUIRE(sh("/usr/bin/python3 - <<'EOF'\n"
             "import io, tarfile, zlib, struct\n"
             "def png(v):\n"
             "    raw = b''.join(b'\\x00' + bytes([v]) * 16 for _ in range(16))\n"
             "    def chunk(t, d):\n"
             "        c = struct.pack('>I', len(d)) + t + d\n"
             "        return c + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)\n"
             "    return (b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 16, 16, 8, 0, 0, 0, 0))\n"
             "            + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))\n"
             "with tarfile.open('" + tar + "', 'w') as t:\n"
             "    for cls, base in (('bright', 200), ('dark', 30)):\n"
             "        for i in range(40):\n"
             "            data = png(base + i % 20)\n"
             "            info = tarfile.TarInfo(f'shapes/{cls}/{i}.png'); info.size = len(data)\n"
             "            t.addfile(info, io.BytesIO(data))\n"
             "EOF") == 0);
  auto boundary = std::string("rookeryboundary42");
  auto form = [&](const std::string& name, const std::string& file) {
    std::string b;
    b += "--" + boundary + "\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n" + name + "\r\n";
    b += "--" + boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n"
         "Content-Type: application/octet-stream\r\n\r\n" + file + "\r\n";
    b += "--" + boundary + "--\r\n";
    return b;
  };
  header_list h = bearer(alice);
  h.emplace_back("Content-Type", "multipart/form-data; boundary=" + boundary);
  auto up = http("POST", s.url("/v1/datasets"), form("shapes", read_file(tar)), h);
  REQUIRE(up.status == 201);
  CHECK(up.json()["classes"] == json::array({"bright", "dark"}));
  CHECK(up.json()["train_size"].get<int64_t>() + up.json()["test_size"].get<int64_t>() == 80);
  CHECK(http("POST", s.url("/v1/datasets"), form("shapes", read_file(tar)), h).status == 409);
  auto junk = http("POST", s.url("/v1/datasets"), form("junk", "this is not an archive"), h);
  CHECK(junk.status == 400);
  CHECK(junk.headers["content-type"] == "application/problem+json");
  // Bob cannot see it.
  auto bob = signup_and_login(s, "bobby");
  CHECK(http("GET", s.url("/v1/datasets/shapes"), "", bearer(bob)).status == 404);

  json spec{{"trainer", "classifier"}, {"dataset", "shapes"}, {"model", "small_cnn"},
            {"hyper", {{"epochs", 6}, {"batch_size", 16}, {"lr", 0.01}}}};
  auto id = http("POST", s.url("/v1/jobs"), spec.dump(), bearer(alice)).json()["id"].get<std::string>();
  auto job = wait_for(s, alice, id, finished);
  REQUIRE(job["state"] == "succeeded");
  CHECK(job["metrics"]["val_acc"].get<double>() >= 0.9); // bright vs dark is easy
  CHECK(http("DELETE", s.url("/v1/datasets/fashion-mnist"), "", bearer(alice)).status == 403);
  CHECK(http("DELETE", s.url("/v1/datasets/shapes"), "", bearer(alice)).status == 204);
  CHECK(http("GET", s.url("/v1/datasets/shapes"), "", bearer(alice)).status == 404);
}

#include "harness.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <curl/curl.h>
#include <cstring>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

namespace fs = std::filesystem;

namespace rookery::test {

temp_dir::temp_dir() {
  std::random_device rd;
  path = (fs::temp_directory_path() / ("rookery-test-" + std::to_string(rd()) + std::to_string(rd())))
           .string();
  fs::create_directories(path);
}

temp_dir::~temp_dir() {
  std::error_code ec;
  fs::remove_all(path, ec);
}

nlohmann::json response::json() const {
  return nlohmann::json::parse(body, nullptr, false);
}

namespace {

size_t on_body(char* ptr, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(ptr, size * n);
  return size * n;
}

size_t on_header(char* ptr, size_t size, size_t n, void* user) {
  std::string line(ptr, size * n);
  auto colon = line.find(':');
  if (colon != std::string::npos) {
    auto name = line.substr(0, colon);
    for (auto& c : name)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    auto value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' '))
      value.erase(0, 1);
    while (!value.empty() && (value.back() == '\r' || value.back() == '\n'))
      value.pop_back();
    (*static_cast<std::map<std::string, std::string>*>(user))[name] = value;
  }
  return size * n;
}

} // namespace

response http(const std::string& method, const std::string& url, const std::string& body,
              const header_list& headers) {
  static const bool init = [] {
    curl_global_init(CURL_GLOBAL_ALL);
    return true;
  }();
  (void) init;
  response r;
  CURL* c = curl_easy_init();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  if (!body.empty() || method == "POST" || method == "PUT") {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  }
  curl_slist* list = nullptr;
  list = curl_slist_append(list, "Expect:");
  for (auto& [k, v] : headers)
    list = curl_slist_append(list, (k + ": " + v).c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &r.headers);
  auto rc = curl_easy_perform(c);
  if (rc == CURLE_OK)
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  else
    r.body = curl_easy_strerror(rc);
  curl_slist_free_all(list);
  curl_easy_cleanup(c);
  return r;
}

std::map<std::string, std::string> test_env() {
  return {{"ROOKERY_PASSWORD_HASH_COST", "min"},
          {"ROOKERY_LOG_LEVEL", "warn"},
          {"ROOKERY_TORCH_THREADS", "1"},
          // Two tests run at once on the 2-core machine: one replica each, as before
          // the thread plan (common/config.cpp plan_threads) made it one per core.
          {"ROOKERY_REPLICAS", "1"},
          {"ROOKERY_DECODERS", "2"},
          {"ROOKERY_SCHEDULER_THREADS", "2"},
          // The tests were written for a ResNet-18 image pipeline and an empty model
          // repository: no built-in models (tests/integration/nsfwjs_test.cpp has them).
          {"ROOKERY_PIPELINES", R"({"image": "resnet18"})"},
          {"ROOKERY_BUILTIN_MODELS", ""}};
}

server::server(const std::string& data_dir, std::vector<std::string> args,
               std::map<std::string, std::string> env) {
  log_path_ = data_dir + "/server-" + std::to_string(std::random_device{}()) + ".log";
  fs::create_directories(data_dir);
  std::vector<std::string> argv = {ROOKERY_BINARY, "serve", "--data", data_dir};
  // Port 0 (any free port) unless the test names one: a process that comes
  // back after a kill keeps its address.
  if (std::find(args.begin(), args.end(), "--port") == args.end())
    argv.insert(argv.end(), {"--port", "0"});
  argv.insert(argv.end(), args.begin(), args.end());
  auto full_env = test_env();
  for (auto& [k, v] : env)
    full_env[k] = v;
  pid_ = fork();
  if (pid_ == 0) {
    int fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    for (auto& [k, v] : full_env) {
      if (v == unset_env)
        unsetenv(k.c_str());
      else
        setenv(k.c_str(), v.c_str(), 1);
    }
    std::vector<char*> cargv;
    for (auto& a : argv)
      cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    execv(cargv[0], cargv.data());
    _exit(127);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  bool is_worker = std::find(args.begin(), args.end(), "worker") != args.end();
  while (std::chrono::steady_clock::now() < deadline) {
    auto text = output();
    auto p = text.find("listening on http://");
    if (p != std::string::npos) {
      auto colon = text.find(':', p + 20);
      auto end = text.find_first_not_of("0123456789", colon + 1);
      if (end != std::string::npos) {
        port_ = static_cast<uint16_t>(std::stoi(text.substr(colon + 1, end - colon - 1)));
        auto c = text.find("cluster port ");
        if (!is_worker)
          return;
        if (c != std::string::npos && text.find('\n', c) != std::string::npos) {
          cluster_port_ = static_cast<uint16_t>(std::stoi(text.substr(c + 13)));
          return;
        }
      }
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("rookery exited during start:\n" + output());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  kill();
  throw std::runtime_error("rookery did not start in time:\n" + output());
}

server::~server() {
  if (pid_ > 0)
    kill();
}

std::string server::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(port_) + path;
}

int server::stop() {
  if (pid_ <= 0)
    return -1;
  ::kill(pid_, SIGTERM);
  int status = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill();
  return -2;
}

void server::kill() {
  if (pid_ <= 0)
    return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

std::string server::output() const {
  return read_file(log_path_);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string photo_path(const std::string& name) {
  return "/usr/lib/python3/dist-packages/skimage/data/" + name;
}

int sh(const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

std::vector<float> reference::floats(const std::string& name) const {
  auto bytes = read_file(dir.path + "/" + name);
  std::vector<float> v(bytes.size() / 4);
  std::memcpy(v.data(), bytes.data(), v.size() * 4);
  return v;
}

const reference& exported() {
  static reference ref = [] {
    reference r;
    auto cmd = std::string{"/usr/bin/python3 "} + ROOKERY_SOURCE_DIR
               + "/tests/tools/export_resnet.py " + r.dir.path + " resnet18 " + photo_path()
               + " > " + r.dir.path + "/export.log 2>&1";
    if (sh(cmd) != 0)
      throw std::runtime_error("export_resnet.py failed: " + read_file(r.dir.path + "/export.log"));
    r.photo_embedding = r.floats("image0_emb.bin");
    return r;
  }();
  return ref;
}

std::string signup_and_login(const server& s, const std::string& user,
                             const std::string& password) {
  nlohmann::json cred{{"username", user}, {"password", password}};
  auto r = http("POST", s.url("/v1/users"), cred.dump(), {{"Content-Type", "application/json"}});
  if (r.status != 201)
    throw std::runtime_error("signup failed: " + std::to_string(r.status) + " " + r.body);
  r = http("POST", s.url("/v1/auth/login"), cred.dump(), {{"Content-Type", "application/json"}});
  if (r.status != 200)
    throw std::runtime_error("login failed: " + std::to_string(r.status) + " " + r.body);
  return r.json()["token"].get<std::string>();
}

nlohmann::json wait_for_job(const server& s, const std::string& token, const std::string& id,
                            int seconds) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  nlohmann::json job;
  while (std::chrono::steady_clock::now() < deadline) {
    auto g = http("GET", s.url("/v1/jobs/" + id), "", {{"Authorization", "Bearer " + token}});
    if (g.status != 200)
      throw std::runtime_error("GET /v1/jobs/" + id + " answered " + std::to_string(g.status));
    job = g.json();
    auto st = job["state"].get<std::string>();
    if (st == "succeeded" || st == "failed" || st == "cancelled")
      return job;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  throw std::runtime_error("job " + id + " did not finish in " + std::to_string(seconds)
                           + " s: " + job.dump().substr(0, 600));
}

double cosine(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0, na = 0, nb = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    d += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return d / std::sqrt(na * nb + 1e-30);
}

std::map<std::string, std::string> admin_env() {
  auto env = test_env();
  env["ROOKERY_ADMIN_USER"] = "root";
  env["ROOKERY_ADMIN_PASSWORD"] = "root-password";
  return env;
}

std::string admin_token(const server& s) {
  auto r = http("POST", s.url("/v1/auth/login"), R"({"username":"root","password":"root-password"})");
  if (r.status != 200)
    throw std::runtime_error("admin login failed with " + std::to_string(r.status));
  return r.json()["token"].get<std::string>();
}

uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

int connected_workers(const server& g) {
  auto m = http("GET", g.url("/metrics"));
  auto p = m.body.find("\nrookery_cluster_workers_connected");
  if (m.status != 200 || p == std::string::npos)
    return -1;
  auto sp = m.body.find(' ', p + 1);
  return static_cast<int>(std::stod(m.body.substr(sp + 1)));
}

nlohmann::json classifier_spec(int64_t epochs, int64_t limit_train, nlohmann::json extra_hyper) {
  nlohmann::json hyper{{"epochs", epochs},          {"batch_size", 32}, {"lr", 0.003},
                       {"limit_train", limit_train}, {"limit_test", 256}, {"log_every", 2}};
  for (auto& [k, v] : extra_hyper.items())
    hyper[k] = v;
  return nlohmann::json{{"trainer", "classifier"}, {"dataset", "fashion-mnist"},
                        {"model", "small_cnn"}, {"hyper", hyper}};
}

nlohmann::json get_job(const server& s, const std::string& token, const std::string& id) {
  auto g = http("GET", s.url("/v1/jobs/" + id), "", {{"Authorization", "Bearer " + token}});
  if (g.status != 200)
    throw std::runtime_error("GET /v1/jobs/" + id + " answered " + std::to_string(g.status) + ": " + g.body);
  return g.json();
}

} // namespace rookery::test

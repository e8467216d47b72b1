// Integration-test harness: starts the real `rookery` binary on 127.0.0.1 with
// port 0 and its own temporary data directory, and talks HTTP to it (libcurl).
#pragma once
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <sys/types.h>

namespace rookery::test {

struct temp_dir {
  std::string path;
  temp_dir();
  ~temp_dir();
};

struct response {
  long status = 0;
  std::string body;
  std::map<std::string, std::string> headers; // lower-case names
  nlohmann::json json() const;
};

using header_list = std::vector<std::pair<std::string, std::string>>;

response http(const std::string& method, const std::string& url, const std::string& body = "",
              const header_list& headers = {});

/// A running `rookery serve` process.
class server {
public:
  /// Starts `rookery serve --port 0 --data <data> <args...>` with extra env
  /// entries, and waits until it prints its port.
  server(const std::string& data_dir, std::vector<std::string> args = {},
         std::map<std::string, std::string> env = {});
  ~server();
  std::string url(const std::string& path) const;
  uint16_t port() const { return port_; }
  uint16_t cluster_port() const { return cluster_port_; }
  /// The process (for SIGSTOP/SIGCONT); -1 once it has exited.
  pid_t pid() const { return pid_; }
  /// SIGTERM and wait; returns the exit status.
  int stop();
  /// SIGKILL and wait.
  void kill();
  /// Everything the process printed so far.
  std::string output() const;

private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  uint16_t port_ = 0;
  uint16_t cluster_port_ = 0;
  std::string log_path_;
};

/// Defaults every test server gets: cheap password hashing, quiet logs, a
/// ResNet-18 image pipeline and no built-in models.
std::map<std::string, std::string> test_env();

/// As a value in server's `env`: leave the variable unset (e.g. a test_env() default).
inline const std::string unset_env = "\x01unset";

/// Registers `user` and logs in; returns the bearer token.
std::string signup_and_login(const server& s, const std::string& user,
                             const std::string& password = "correct horse battery");

std::string read_file(const std::string& path);

/// A real photo shipped by python3-skimage.
std::string photo_path(const std::string& name = "chelsea.png");

/// ResNet-18 weights (seeded random init) and torchvision's outputs, exported
/// once per test process by tests/tools/export_resnet.py: weights.pth,
/// input.bin (2x3x224x224), logits.bin (2x1000), image0_emb.bin (the photo).
struct reference {
  temp_dir dir;
  std::vector<float> photo_embedding;
  std::string weights() const { return dir.path + "/weights.pth"; }
  std::vector<float> floats(const std::string& name) const;
};
const reference& exported();

/// Runs a shell command; returns its exit status.
int sh(const std::string& cmd);

/// Polls GET /v1/jobs/{id} (bearer `token`) until the job is succeeded,
/// failed or cancelled; throws after `seconds`. Returns the job.
nlohmann::json wait_for_job(const server& s, const std::string& token, const std::string& id,
                            int seconds = 300);

/// A small classifier job on Fashion-MNIST (small_cnn, batch 32), with
/// `extra_hyper` merged into its hyper-parameters.
nlohmann::json classifier_spec(int64_t epochs, int64_t limit_train,
                               nlohmann::json extra_hyper = nlohmann::json::object());

/// GET /v1/jobs/{id} as `token`; throws unless it answers 200.
nlohmann::json get_job(const server& s, const std::string& token, const std::string& id);

/// test_env() plus a first admin, root / root-password.
std::map<std::string, std::string> admin_env();

/// Logs in as the admin of admin_env(); returns the bearer token.
std::string admin_token(const server& s);

/// A loopback TCP port that was free a moment ago (for a process that must
/// come back on the same port).
uint16_t free_port();

/// A gateway's rookery_cluster_workers_connected gauge (-1 if unreadable).
int connected_workers(const server& gateway);

/// Polls `f` every 50 ms until it is true or `limit_s` passes; returns how
/// long it took, or -1.
template <class F>
double until(F f, double limit_s = 10) {
  auto t0 = std::chrono::steady_clock::now();
  while (true) {
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (f())
      return dt;
    if (dt > limit_s)
      return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

/// Cosine similarity of two vectors of the same length.
double cosine(const std::vector<float>& a, const std::vector<float>& b);

} // namespace rookery::test

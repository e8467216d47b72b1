// Integration-test harness: starts the real `rookery` binary on 127.0.0.1 with
// port 0 and its own temporary data directory, and talks HTTP to it (libcurl).
#pragma once
#include <map>
#include <string>
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

/// Cosine similarity of two vectors of the same length.
double cosine(const std::vector<float>& a, const std::vector<float>& b);

} // namespace rookery::test

// Rookery's configuration: defaults < JSON file (--config) < ROOKERY_* environment
// variables < command-line flags. `rookery serve --print-config` prints the result.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace rookery {

/// ROOKERY_BUILTIN_MODELS_DIR as CMake configured it (where scripts/setup.sh installs
/// the built-in models): <source>/build/builtin-models unless set otherwise.
std::string compiled_builtin_models_dir();

struct config {
  // -- node
  std::string role = "all"; // all | gateway | worker
  std::string host = "127.0.0.1";
  uint16_t port = 8080; // 0: pick a free port (printed on stdout as "listening on host:port")
  std::string data = "./rookery-data";
  // Where users, sessions, keys and jobs live: "" = SQLite at <data>/rookery.db
  // (one gateway); a postgresql:// URI = PostgreSQL, shared by every gateway.
  std::string store;
  std::string node_id; // names this node in job claims; "" = <hostname>-<random>
  std::string log_level = "info";
  uint32_t http_threads = 2;
  uint32_t scheduler_threads = 0; // CAF workers; 0 = number of cores
  // -- cluster (CAF middleman)
  std::string cluster_host = "127.0.0.1";
  uint16_t cluster_port = 0; // worker: port its embedding service is published on
  std::vector<std::string> seeds; // gateway: "host:port" of workers
  // worker: where the gateways' data directory is mounted here. Training
  // runs from gateways read data sets and write job directories under it.
  // Empty: at the same path as on the gateways.
  std::string shared_data;
  uint32_t heartbeat_ms = 1000;
  uint32_t connection_timeout_ms = 5000;
  uint32_t reconnect_ms = 1000;
  // -- accounts
  std::string signup = "open"; // open | admin
  std::string admin_user;      // first admin, created on first start when set
  std::string admin_password;
  int64_t session_ttl_s = 86400;
  std::string password_hash_cost = "interactive"; // interactive | min (tests only)
  uint32_t login_slowdown_after = 3;   // failures before answers are slowed
  uint32_t login_lockout_after = 10;   // failures before 429
  int64_t login_window_s = 900;
  double key_rate_per_s = 50;  // per API key / session
  double key_burst = 100;
  // -- limits
  uint64_t max_body_bytes = 32ull << 20;     // embedding inputs and JSON bodies
  uint64_t max_upload_bytes = 1ull << 30;    // model weights (POST /v1/models)
  int64_t max_image_pixels = 40'000'000;
  uint32_t request_timeout_ms = 30000;
  uint32_t drain_timeout_ms = 10000; // on SIGTERM: longest wait for work in flight
  // -- hostile clients (see docs/ARCHITECTURE.md, "Limits")
  uint32_t head_timeout_ms = 30000;          // request line + headers must arrive within this
  uint64_t min_upload_bytes_per_s = 65536;   // after a 60 s grace a body must keep this rate
  uint32_t upload_timeout_s = 1800;          // longest time to read one request (whole body)
  uint32_t import_timeout_ms = 600000;       // model/dataset import and registration
  uint32_t max_connections = 1024;           // open HTTP connections at once
  // -- models and pipelines
  // The thread plan (docs/ARCHITECTURE.md, "Thread plan"): 0 = derived from
  // `cores` by plan_threads(); load_config() fills them in, so --print-config
  // shows what the server runs with.
  uint32_t cores = 0;          // CPUs to plan for; 0 = usable_cores() (affinity, cgroup quota)
  uint32_t replicas = 0;       // model replicas per model
  uint32_t torch_threads = 0;  // intra-op threads of each replica
  uint32_t decoders = 0;       // image decode/preprocess actors per pipeline
  uint32_t max_batch = 8;      // dynamic batching limit
  // "optimized": every model is traced/frozen/optimised for inference when it
  // loads (models/inference.hpp), eager where that fails; "eager": never
  std::string inference = "optimized";
  // Extra image pipelines: pipeline name -> repository model, preprocessed as
  // the model's config says. The built-in pipelines (pipelines/builtin/*.json)
  // and those added over HTTP need no entry here.
  std::map<std::string, std::string> pipelines;
  // read-only built-in model directory (<dir>/<name>/<version>/), searched after the data
  // directory's models; "" = none. Default: ROOKERY_BUILTIN_MODELS_DIR as CMake set it
  std::string builtin_models = compiled_builtin_models_dir();
  bool allow_untrained = true; // serve random weights when none are installed (flagged as such)
  // MIME type -> pipeline, winning over the MIME types the pipelines declare
  // (empty: each pipeline's own "mime_types" decide).
  std::map<std::string, std::string> mime_table;
  // -- jobs
  uint32_t max_running_jobs = 2;
  uint32_t max_jobs_per_user = 1000;
  uint32_t job_lease_s = 15;    // a claimed job returns to the pool this long after its node stops renewing
  uint32_t job_poll_ms = 1000;  // lease renewal, claims of waiting jobs, progress of jobs run elsewhere
  uint32_t auth_revalidate_ms = 1000; // shared store: cached sessions/keys are checked again after this
  // -- training
  uint32_t train_threads = 0; // intra-op threads of a training run; 0 = number of cores
  std::string fashion_mnist_dir = "/usr/share/datasets/fashion-mnist"; // Debian's dataset-fashion-mnist
  std::string fortunes_dir = "/usr/share/games/fortunes";              // Debian's fortunes
  std::string wordnet_dir = "/usr/share/wordnet";                      // Debian's wordnet-base
  uint64_t max_dataset_bytes = 1ull << 30; // uncompressed size of an uploaded data set
};

/// Parses a full configuration: `file` may be empty; `env` holds the
/// environment (name -> value); `overrides` holds flag values (key -> text).
result<config> load_config(const std::string& file, const std::map<std::string, std::string>& env,
                           const std::map<std::string, std::string>& overrides);

/// CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU
/// quota (/sys/fs/cgroup/cpu.max, rounded up), at least 1.
uint32_t usable_cores();

/// The derived thread plan for `cores` CPUs (see docs/ARCHITECTURE.md, "Thread
/// plan"): fills the settings that are 0 (replicas, torch_threads, decoders).
void plan_threads(config& c, uint32_t cores);

/// The environment of this process as a map (ROOKERY_* entries only).
std::map<std::string, std::string> rookery_environment();

/// Pretty JSON of every setting (secrets masked).
std::string to_json_text(const config& cfg);

} // namespace rookery

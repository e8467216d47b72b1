#include "actors/node.hpp"

#include <filesystem>
#include <thread>

#include <unistd.h>

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include "actors/auth.hpp"
#include "actors/cluster.hpp"
#include "actors/dataset_service.hpp"
#include "actors/embed_service.hpp"
#include "actors/job_manager.hpp"
#include "actors/model_registry.hpp"
#include "actors/trainer_host.hpp"
#include "actors/store_actor.hpp"
#include "common/clock.hpp"
#include "common/crypto.hpp"
#include "common/inflight.hpp"
#include "common/log.hpp"
#include "http/server.hpp"
#include "messages/registration.hpp"
#include "pipelines/pipeline.hpp"
#include "store/store.hpp"

namespace fs = std::filesystem;

namespace rookery {

struct node::impl {
  config cfg;
  std::unique_ptr<caf::actor_system_config> sys_cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::vector<caf::actor> actors; // everything to stop on shutdown
  std::unique_ptr<http_server> http;
  uint16_t cluster_port = 0;
  caf::actor published; // the worker's published embedding service
  std::shared_ptr<Store> db; // used by the store actor while it runs, then here
  std::string node_id;
  bool stopped = false;
};

namespace {

/// <hostname>-<8 hex>: readable in logs and in the jobs table's owner column,
/// and new at every start (a restarted pod is a new claimant).
std::string default_node_id() {
  char host[256] = {0};
  if (gethostname(host, sizeof host - 1) != 0 || host[0] == 0)
    std::snprintf(host, sizeof host, "node");
  return crypto::random_id(std::string(host) + "-", 4);
}

template <class Handle>
void keep(node::impl& n, const Handle& h) {
  n.actors.push_back(caf::actor_cast<caf::actor>(h));
}

} // namespace

/// What a crash in the middle of an upload, a model import or a data-set
/// import leaves behind: upload spool files, `.staging-*` model versions and
/// `.import-*`/`.removing-*` data-set directories. None of them is ever
/// resumed, so they are removed at start. With a shared store several
/// gateways may share the data directory (a ReadWriteMany volume), and what
/// looks like a leftover may be another node's upload in progress: then only
/// what has not been touched for an hour goes.
void remove_interrupted_files(const config& cfg, bool shared) {
  std::error_code ec;
  std::size_t removed = 0;
  const auto cutoff = fs::file_time_type::clock::now() - std::chrono::hours(1);
  auto abandoned = [&](const fs::path& p) {
    std::error_code te;
    auto t = fs::last_write_time(p, te);
    return !shared || (!te && t < cutoff);
  };
  for (fs::directory_iterator it(fs::path(cfg.data) / "uploads", ec), end; !ec && it != end;
       it.increment(ec))
    if (it->is_regular_file() && abandoned(it->path())) {
      std::error_code rm;
      removed += fs::remove(it->path(), rm) ? 1 : 0;
    }
  std::vector<fs::path> staging;
  for (fs::directory_iterator m(fs::path(cfg.data) / "models", ec), end; !ec && m != end;
       m.increment(ec)) {
    std::error_code ec2;
    if (!m->is_directory())
      continue;
    for (fs::directory_iterator v(m->path(), ec2), vend; !ec2 && v != vend; v.increment(ec2))
      if (v->path().filename().string().rfind(".staging-", 0) == 0 && abandoned(v->path()))
        staging.push_back(v->path());
  }
  // Series and text models that a registration was copying (*-models/.staging-*).
  for (const char* kind : {"series-models", "text-models"}) {
    std::error_code ek;
    for (fs::directory_iterator m(fs::path(cfg.data) / kind, ek), end; !ek && m != end; m.increment(ek))
      if (m->path().filename().string().rfind(".staging-", 0) == 0 && abandoned(m->path()))
        staging.push_back(m->path());
  }
  for (auto& p : staging) {
    std::error_code rm;
    fs::remove_all(p, rm);
    ++removed;
  }
  if (!shared) // a data-set import of another gateway may be in progress
    removed += data::recover_uploads(dataset_paths_of(cfg));
  if (removed)
    log::info("removed {} leftovers of interrupted uploads and imports", removed);
}

void init_crypto(const config& cfg) {
  crypto::init();
  crypto::set_pwhash_params(cfg.password_hash_cost == "min" ? crypto::pwhash_params::minimum()
                                                            : crypto::pwhash_params::interactive());
}

std::string store_location(const config& cfg) {
  return cfg.store.empty() ? (fs::path(cfg.data) / "rookery.db").string() : cfg.store;
}

status create_user_offline(const config& cfg, const std::string& username,
                           const std::string& password, bool is_admin) {
  auto db = Store::open(store_location(cfg));
  if (!db)
    return db.error();
  if ((*db)->find_user_by_name(username))
    return fail(errc::conflict, "user '" + username + "' exists already");
  auto hash = crypto::hash_password(password);
  if (hash.empty())
    return fail(errc::internal, "password hashing failed");
  user_record rec;
  rec.username = username;
  rec.password_hash = hash;
  rec.is_admin = is_admin;
  rec.created_at = unix_now();
  auto u = (*db)->create_user(rec);
  if (!u)
    return u.error();
  return {};
}

node::node(std::unique_ptr<impl> p) : impl_(std::move(p)) {}

node::~node() {
  stop();
}

uint16_t node::http_port() const {
  return impl_->http ? impl_->http->port() : 0;
}

uint16_t node::cluster_port() const {
  return impl_->cluster_port;
}

void node::stop() {
  if (!impl_ || impl_->stopped)
    return;
  impl_->stopped = true;
  // Drain: stop being ready, stop taking new cluster connections, and let the
  // work in flight finish (bounded by drain_timeout_ms) before stopping.
  inflight::draining() = true;
  if (impl_->cluster_port != 0 && impl_->published)
    impl_->sys->middleman().unpublish(impl_->published, impl_->cluster_port);
  auto deadline = std::chrono::steady_clock::now()
                  + std::chrono::milliseconds(impl_->cfg.drain_timeout_ms);
  while ((inflight::http() > 0 || inflight::embeds() > 0)
         && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (inflight::http() > 0 || inflight::embeds() > 0)
    log::warn("shutdown: {} HTTP requests and {} embeddings still in flight after {} ms",
              inflight::http().load(), inflight::embeds().load(), impl_->cfg.drain_timeout_ms);
  if (impl_->http)
    impl_->http->stop();
  for (auto& a : impl_->actors)
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  impl_->actors.clear();
  impl_->sys.reset(); // waits for all actors
  // Every trainer has stopped: hand this node's unfinished jobs back, so another
  // node (or this one, restarted) claims them at once instead of after the lease.
  if (impl_->db) {
    if (auto st = impl_->db->release_jobs(impl_->node_id); !st)
      log::warn("shutdown: cannot release this node's jobs: {}", st.error().message);
    impl_->db.reset();
  }
}

result<std::unique_ptr<node>> node::start(const config& cfg) {
  auto n = std::make_unique<impl>();
  n->cfg = cfg;
  init_crypto(cfg);
  std::error_code ec;
  fs::create_directories(cfg.data, ec);
  if (ec)
    return fail(errc::internal, "cannot create data directory " + cfg.data + ": " + ec.message());

  // The store is opened here, before any actor exists, so a broken database
  // stops the start with a clear message.
  auto db = Store::open(store_location(cfg));
  if (!db)
    return db.error();
  const bool shared = (*db)->shared();
  log::info("store: {} (schema version {})", (*db)->backend(), (*db)->schema_version());
  remove_interrupted_files(cfg, shared);
  if (!cfg.admin_user.empty() && !(*db)->find_user_by_name(cfg.admin_user)) {
    if (cfg.admin_password.size() < 8)
      return fail(errc::bad_request, "admin_password must have at least 8 characters");
    user_record admin;
    admin.username = cfg.admin_user;
    admin.password_hash = crypto::hash_password(cfg.admin_password);
    admin.is_admin = true;
    admin.created_at = unix_now();
    auto u = (*db)->create_user(admin);
    // Another gateway starting at the same time may have created it first.
    if (!u && u.error().code != errc::conflict)
      return u.error();
    if (u)
      log::info("created admin user '{}'", cfg.admin_user);
  }
  n->node_id = !cfg.node_id.empty() ? cfg.node_id : default_node_id();
  log::info("node id: {}", n->node_id);

  n->sys_cfg = std::make_unique<caf::actor_system_config>();
  auto& sc = *n->sys_cfg;
  register_types(sc);
  sc.load<caf::io::middleman>();
  // CAF 0.17 ships with heartbeats off: set both on every node, or a frozen
  // peer is never noticed.
  sc.set("middleman.heartbeat-interval",
         caf::timespan{std::chrono::milliseconds(cfg.heartbeat_ms)});
  sc.set("middleman.connection-timeout",
         caf::timespan{std::chrono::milliseconds(cfg.connection_timeout_ms)});
  auto threads = cfg.scheduler_threads != 0 ? cfg.scheduler_threads
                                            : std::max(2u, std::thread::hardware_concurrency());
  sc.set("scheduler.max-threads", static_cast<size_t>(threads));
  sc.set("logger.verbosity", caf::atom("quiet"));
  n->sys = std::make_unique<caf::actor_system>(sc);
  auto& sys = *n->sys;

  std::shared_ptr<Store> shared_db{std::move(db.value())};
  n->db = shared_db;
  auto store = sys.spawn<caf::detached>(store_impl, shared_db);
  keep(*n, store);
  std::vector<hasher_actor> hashers;
  for (int i = 0; i < 2; ++i) {
    hashers.push_back(sys.spawn<caf::detached>(hasher_impl));
    keep(*n, hashers.back());
  }
  auth_settings as;
  as.session_ttl_s = cfg.session_ttl_s;
  as.slowdown_after = cfg.login_slowdown_after;
  as.lockout_after = cfg.login_lockout_after;
  as.window_s = cfg.login_window_s;
  as.rate_per_s = cfg.key_rate_per_s;
  as.burst = cfg.key_burst;
  as.revalidate_ms = shared ? cfg.auth_revalidate_ms : 0;
  auto auth = sys.spawn(auth_impl, store, hashers, as);
  keep(*n, auth);

  embed_service_actor embed;
  model_registry_actor models;
  if (cfg.role != "gateway") {
    model_registry_settings ms;
    ms.data_dir = cfg.data;
    ms.max_batch = cfg.max_batch;
    ms.torch_threads = static_cast<int>(cfg.torch_threads);
    ms.replicas = cfg.replicas;
    ms.optimize = cfg.inference == "optimized";
    ms.allow_untrained = cfg.allow_untrained;
    ms.stand_in = builtin_pipeline_models();
    models = sys.spawn<caf::detached>(model_registry_impl, ms);
    keep(*n, models);
  }
  if (cfg.role == "gateway") {
    auto cl = sys.spawn(cluster_impl, cfg.seeds, std::chrono::milliseconds(cfg.reconnect_ms),
                        std::chrono::milliseconds(cfg.request_timeout_ms),
                        std::chrono::milliseconds(cfg.import_timeout_ms),
                        cfg.data); // the gateways' shared volume: kept models and pipeline changes
    keep(*n, cl);
    embed = cl;
    // /v1/models, /v2 and registrations go to the workers' registries.
    caf::scoped_actor ask{sys};
    ask->request(cl, std::chrono::seconds(5), caf::get_atom::value, model_atom::value)
      .receive([&](model_registry_actor& r) { models = r; },
               [&](caf::error& e) { log::error("gateway: no model router: {}", sys.render(e)); });
  } else {
    // A worker hosts training for the gateways (jobs submitted there).
    trainer_host_actor trainer;
    if (cfg.role == "worker") {
      trainer_host_settings ts;
      ts.max_running = cfg.max_running_jobs;
      ts.shared_data = cfg.shared_data;
      ts.train_threads = static_cast<int>(cfg.train_threads != 0 ? cfg.train_threads
                                                                 : std::thread::hardware_concurrency());
      trainer = sys.spawn(trainer_host_impl, ts);
      keep(*n, trainer);
    }
    auto svc = spawn_embed_service(sys, cfg, n->actors, models, trainer);
    if (!svc)
      return svc.error();
    embed = *svc;
    keep(*n, embed);
    if (cfg.role == "worker") {
      auto port = sys.middleman().publish(embed, cfg.cluster_port, cfg.cluster_host.c_str(), true);
      if (!port)
        return fail(errc::unavailable, "cannot publish on cluster port "
                                         + std::to_string(cfg.cluster_port) + ": "
                                         + sys.render(port.error()));
      n->cluster_port = *port;
      n->published = caf::actor_cast<caf::actor>(embed);
      log::info("worker: embedding service published on {}:{}", cfg.cluster_host, *port);
    }
  }
  job_manager_settings js;
  js.data_dir = cfg.data;
  js.max_running = cfg.max_running_jobs;
  js.paths = dataset_paths_of(cfg);
  js.node_id = n->node_id;
  js.shared = shared;
  js.lease_s = cfg.job_lease_s;
  js.poll_ms = cfg.job_poll_ms;
  js.train_threads = static_cast<int>(cfg.train_threads != 0 ? cfg.train_threads
                                                               : std::thread::hardware_concurrency());
  if (cfg.role == "gateway") // the cluster lends the workers' trainer hosts: training runs there
    js.trainer_hosts = caf::actor_cast<worker_directory_actor>(embed);
  auto jobs = sys.spawn<caf::detached>(job_manager_impl, store, embed, models, js);
  keep(*n, jobs);
  auto datasets = sys.spawn<caf::detached>(dataset_service_impl, dataset_paths_of(cfg),
                                           cfg.max_dataset_bytes);
  keep(*n, datasets);

  node_handles h;
  h.sys = &sys;
  h.store = store;
  h.auth = auth;
  h.embed = embed;
  h.jobs = jobs;
  h.models = models;
  h.datasets = datasets;
  h.role = cfg.role;
  auto http = http_server::start(cfg, h);
  if (!http) {
    auto ptr = std::unique_ptr<node>(new node(std::move(n)));
    ptr->stop();
    return http.error();
  }
  n->http = std::move(http.value());
  return std::unique_ptr<node>(new node(std::move(n)));
}

} // namespace rookery

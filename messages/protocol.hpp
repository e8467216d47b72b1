// The whole actor protocol of Rookery on one screen: atoms, message structs and
// the typed interface of every actor. Message structs have a free `inspect` and
// are registered under the same name on every node (messages/registration.cpp),
// so those marked "remote" can cross the network between gateway and worker.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <caf/atom.hpp>
#include <caf/fwd.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include "messages/records.hpp"

namespace rookery {

// -- atoms (CAF 0.17: at most 10 characters) ---------------------------------

using user_atom = caf::atom_constant<caf::atom("user")>;
using session_atom = caf::atom_constant<caf::atom("session")>;
using key_atom = caf::atom_constant<caf::atom("key")>;
using job_atom = caf::atom_constant<caf::atom("job")>;
using model_atom = caf::atom_constant<caf::atom("model")>;
using count_atom = caf::atom_constant<caf::atom("count")>;
using list_atom = caf::atom_constant<caf::atom("list")>;
using login_atom = caf::atom_constant<caf::atom("login")>;
using logout_atom = caf::atom_constant<caf::atom("logout")>;
using signup_atom = caf::atom_constant<caf::atom("signup")>;
using authn_atom = caf::atom_constant<caf::atom("authn")>;
using hash_atom = caf::atom_constant<caf::atom("hash")>;
using verify_atom = caf::atom_constant<caf::atom("verify")>;
using expire_atom = caf::atom_constant<caf::atom("expire")>;
using embed_atom = caf::atom_constant<caf::atom("embed")>;
using submit_atom = caf::atom_constant<caf::atom("submit")>;
using cancel_atom = caf::atom_constant<caf::atom("cancel")>;
using info_atom = caf::atom_constant<caf::atom("info")>;
using done_atom = caf::atom_constant<caf::atom("done")>;
using batch_atom = caf::atom_constant<caf::atom("batch")>;
using workers_atom = caf::atom_constant<caf::atom("workers")>;
using retry_atom = caf::atom_constant<caf::atom("retry")>;
using infer_atom = caf::atom_constant<caf::atom("infer")>;
using subscribe_atom = caf::atom_constant<caf::atom("subscribe")>;
using artifact_atom = caf::atom_constant<caf::atom("artifact")>;
using register_atom = caf::atom_constant<caf::atom("register")>;
using tick_atom = caf::atom_constant<caf::atom("tick")>;
using resume_atom = caf::atom_constant<caf::atom("resume")>;
using claim_atom = caf::atom_constant<caf::atom("claim")>;
using renew_atom = caf::atom_constant<caf::atom("renew")>;
using release_atom = caf::atom_constant<caf::atom("release")>;
using failure_atom = caf::atom_constant<caf::atom("failure")>;
using start_atom = caf::atom_constant<caf::atom("start")>;

// -- messages ------------------------------------------------------------------

/// A dense float tensor crossing actors (and the network): row-major CHW or NCHW.
struct tensor_msg { // remote
  std::vector<int64_t> shape;
  std::vector<float> data;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, tensor_msg& x) {
  return f(caf::meta::type_name("rookery.tensor_msg"), x.shape, x.data);
}

/// One embedding out of a model replica.
struct embedding_msg { // remote
  std::vector<float> values;
  double queue_ms = 0;   // time waiting in the replica's queue
  double compute_ms = 0; // time of the forward pass of the whole batch
  uint32_t batch = 1;    // size of the batch this item ran in
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, embedding_msg& x) {
  return f(caf::meta::type_name("rookery.embedding_msg"), x.values, x.queue_ms, x.compute_ms,
           x.batch);
}

/// Ask for an embedding of raw bytes. `pipeline` empty: chosen from `mime`.
struct embed_request { // remote
  std::string pipeline;
  std::string mime; // sniffed by the gateway (libmagic)
  std::string data; // the raw bytes
  std::string request_id;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, embed_request& x) {
  return f(caf::meta::type_name("rookery.embed_request"), x.pipeline, x.mime, x.data,
           x.request_id);
}

struct embed_result { // remote
  std::string pipeline;
  std::string mime;
  std::string model;
  uint32_t dim = 0;
  std::vector<float> embedding;
  double queue_ms = 0;
  double compute_ms = 0;
  std::string node; // which node computed it
  std::string extra_json; // more answer fields (a video's segments and frames), JSON object text
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, embed_result& x) {
  return f(caf::meta::type_name("rookery.embed_result"), x.pipeline, x.mime, x.model, x.dim,
           x.embedding, x.queue_ms, x.compute_ms, x.node, x.extra_json);
}

/// What a pipeline can do, for GET /v1/pipelines.
struct pipeline_info { // remote
  std::string name;
  std::string kind; // "image"
  std::vector<std::string> mime_types;
  std::string model;
  uint32_t dim = 0;
  bool ready = false;    // weights loaded
  bool pretrained = false;
  std::string status;    // human-readable: where weights came from, or why not ready
  uint32_t replicas = 0;
  std::string ops_json;  // the operator chain, every parameter filled in (JSON array text)
  std::string weights;   // provenance of the model's weights
  bool builtin = false;  // shipped with Rookery (not removable)
  std::string inference_json; // how the model runs (model_meta::inference_json); "" = unknown
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, pipeline_info& x) {
  return f(caf::meta::type_name("rookery.pipeline_info"), x.name, x.kind, x.mime_types, x.model,
           x.dim, x.ready, x.pretrained, x.status, x.replicas, x.ops_json, x.weights, x.builtin,
           x.inference_json);
}

/// A pipeline to add at run time: POST /v1/pipelines.
struct pipeline_spec_msg { // remote
  std::string name;
  std::string ops_json;
  std::vector<std::string> mime_types;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, pipeline_spec_msg& x) {
  return f(caf::meta::type_name("rookery.pipeline_spec_msg"), x.name, x.ops_json, x.mime_types);
}

/// A model of the repository as served (Open Inference Protocol metadata).
struct model_meta { // remote
  std::string name;
  uint32_t version = 0;
  std::string arch;
  std::string format;
  std::vector<int64_t> input_shape;  // per item, e.g. {3, 224, 224}
  std::vector<int64_t> output_shape; // per item, e.g. {1000}
  uint32_t dim = 0;                  // embedding dimension
  bool ready = false;
  std::string status;
  bool pretrained = false;           // real weights (false: seeded random, untrained)
  std::string weights;               // provenance, e.g. "nsfwjs@4.4.0 inception_v3"
  bool builtin = false;              // a read-only built-in model
  std::string inference_json;        // embedding_model::inference_json() of the replica that
                                     // answered: optimised or eager, and why ("" = not loaded)
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, model_meta& x) {
  return f(caf::meta::type_name("rookery.model_meta"), x.name, x.version, x.arch, x.format,
           x.input_shape, x.output_shape, x.dim, x.ready, x.status, x.pretrained, x.weights,
           x.builtin, x.inference_json);
}

/// The replicas serving one model, and what they serve.
struct model_pool {
  std::vector<caf::actor> replicas; // replica_actor handles (typed handles do not inspect)
  model_meta meta;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, model_pool& x) {
  return f(caf::meta::type_name("rookery.model_pool"), x.replicas, x.meta);
}

/// Install weights into the repository (the file is already on this node's disk).
struct model_import { // remote
  std::string name;
  std::string arch;
  std::string format;
  std::string weights_path;
  std::string options_json;    // zoo::model_options (JSON object text); "" = defaults
  std::string preprocess_json; // image preprocessing for pipelines; "" = ImageNet's
  std::string weights;         // the file's bytes, when it is not on this node's disk
                               // (a gateway forwarding an upload); weights_path is then ""
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, model_import& x) {
  return f(caf::meta::type_name("rookery.model_import"), x.name, x.arch, x.format, x.weights_path,
           x.options_json, x.preprocess_json, x.weights);
}

/// A training job to submit: the spec as JSON text (trainers/train_job.hpp).
struct train_submit {
  std::string spec_json;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, train_submit& x) {
  return f(caf::meta::type_name("rookery.train_submit"), x.spec_json);
}

/// One event of a running job: type "progress" | "metrics" | "artifact" |
/// "state", payload as JSON text. Trainers send them to the job manager, which
/// keeps the latest and forwards them to subscribers (server-sent events).
struct train_event {
  std::string job_id;
  std::string type;
  std::string json;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, train_event& x) {
  return f(caf::meta::type_name("rookery.train_event"), x.job_id, x.type, x.json);
}

/// A training run handed to a worker's trainer host (remote). The job's
/// directory (checkpoints, metrics, artifacts) and the data sets are on the
/// volume that gateways and workers share, at the same paths on both.
struct train_run {
  std::string job_id;
  std::string spec_json;   // validated by the gateway
  uint64_t user_id = 0;
  std::string job_dir;     // <gateway data>/jobs/<id>
  std::string data_dir;    // the gateway's <data>: uploaded data sets
  std::string fashion_mnist_dir, fortunes_dir, wordnet_dir; // Debian's data sets
  caf::actor receiver;     // a train_receiver_actor (the gateway's job manager)
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, train_run& x) {
  return f(caf::meta::type_name("rookery.train_run"), x.job_id, x.spec_json, x.user_id, x.job_dir,
           x.data_dir, x.fashion_mnist_dir, x.fortunes_dir, x.wordnet_dir, x.receiver);
}

/// A job's artifacts: the listing (JSON text) when no path was asked, else
/// the file to send and its content type.
struct artifact_reply {
  std::string listing_json;
  std::string file;
  std::string content_type;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, artifact_reply& x) {
  return f(caf::meta::type_name("rookery.artifact_reply"), x.listing_json, x.file,
           x.content_type);
}

/// A data set of the registry as users see it (datasets/registry.hpp).
struct dataset_record {
  std::string name;
  std::string kind;
  std::string source;
  std::string format;
  uint64_t owner_id = 0;
  std::vector<std::string> classes;
  std::vector<std::string> columns;
  int64_t train_size = 0;
  int64_t test_size = 0;
  std::vector<int64_t> item_shape;
  bool available = true;
  std::string status;
  int64_t created_at = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, dataset_record& x) {
  return f(caf::meta::type_name("rookery.dataset_record"), x.name, x.kind, x.source, x.format,
           x.owner_id, x.classes, x.columns, x.train_size, x.test_size, x.item_shape, x.available,
           x.status, x.created_at);
}

/// An uploaded data set file, already on this node's disk.
struct dataset_upload {
  std::string name;
  std::string format; // image_folder | csv | "" (sniffed)
  std::string file;
  int64_t image_size = 0;
  int64_t channels = 0;
  double test_fraction = 0.2;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, dataset_upload& x) {
  return f(caf::meta::type_name("rookery.dataset_upload"), x.name, x.format, x.file, x.image_size,
           x.channels, x.test_fraction);
}

struct login_result {
  std::string token;
  int64_t expires_at = 0;
  std::string session_id;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, login_result& x) {
  return f(caf::meta::type_name("rookery.login_result"), x.token, x.expires_at, x.session_id);
}

/// A new API key: the record plus the secret, shown to the user once.
struct new_key {
  key_record record;
  std::string secret;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, new_key& x) {
  return f(caf::meta::type_name("rookery.new_key"), x.record, x.secret);
}

// -- actor interfaces ----------------------------------------------------------

/// store: sole user of this node's store connection (SQLite or PostgreSQL;
/// runs detached: disk and network I/O).
using store_actor = caf::typed_actor<
  // Create a user (id 0 in, assigned id out). conflict when the name is taken.
  caf::replies_to<caf::put_atom, user_record>::with<user_record>,
  // Find a user by name / by id. not_found otherwise.
  caf::replies_to<caf::get_atom, user_atom, std::string>::with<user_record>,
  caf::replies_to<caf::get_atom, user_atom, uint64_t>::with<user_record>,
  // Number of users (first-admin bootstrap).
  caf::replies_to<count_atom, user_atom>::with<int64_t>,
  // Sessions: create, find by token hash, delete by id, list the unexpired ones at time t.
  caf::replies_to<caf::put_atom, session_record>::with<caf::ok_atom>,
  caf::replies_to<caf::get_atom, session_atom, std::string>::with<session_record>,
  caf::replies_to<caf::delete_atom, session_atom, std::string>::with<caf::ok_atom>,
  caf::replies_to<list_atom, session_atom, int64_t>::with<std::vector<session_record>>,
  // API keys: create, list a user's, find by secret hash, delete (user id, key id).
  caf::replies_to<caf::put_atom, key_record>::with<caf::ok_atom>,
  caf::replies_to<list_atom, key_atom, uint64_t>::with<std::vector<key_record>>,
  caf::replies_to<caf::get_atom, key_atom, std::string>::with<key_record>,
  caf::replies_to<caf::delete_atom, key_atom, uint64_t, std::string>::with<caf::ok_atom>,
  // Jobs: create, update, find, list a user's (newest first), list unfinished.
  caf::replies_to<caf::put_atom, job_record>::with<caf::ok_atom>,
  caf::replies_to<caf::update_atom, job_record>::with<caf::ok_atom>,
  caf::replies_to<caf::get_atom, job_atom, std::string>::with<job_record>,
  caf::replies_to<list_atom, job_atom, uint64_t>::with<std::vector<job_record>>,
  caf::replies_to<list_atom, job_atom>::with<std::vector<job_record>>,
  // Update a job only while `owner` holds it (conflict otherwise).
  caf::replies_to<caf::update_atom, job_record, std::string>::with<caf::ok_atom>,
  // Claims: (owner, now, lease_s, limit, ignore_leases) -> the unfinished
  // jobs now held by owner, oldest first; one job by id (conflict when
  // another node holds it); renew owner's leases until t -> ids it still
  // holds; release owner's jobs (graceful stop).
  caf::replies_to<claim_atom, std::string, int64_t, int64_t, uint32_t, bool>::with<std::vector<job_record>>,
  caf::replies_to<claim_atom, job_atom, std::string, std::string, int64_t, int64_t>::with<job_record>,
  caf::replies_to<renew_atom, std::string, int64_t>::with<std::vector<std::string>>,
  caf::replies_to<release_atom, std::string>::with<caf::ok_atom>,
  // Cancel an unfinished job wherever it runs (id, now) -> the cancelled record;
  // conflict when it has finished already.
  caf::replies_to<cancel_atom, job_atom, std::string, int64_t>::with<job_record>,
  // Failed logins: note one (name, now, window_s) -> the count; read; clear.
  caf::replies_to<failure_atom, std::string, int64_t, int64_t>::with<login_failures_record>,
  caf::replies_to<caf::get_atom, failure_atom, std::string>::with<login_failures_record>,
  caf::replies_to<caf::delete_atom, failure_atom, std::string>::with<caf::ok_atom>,
  // Model repository entries.
  caf::replies_to<caf::put_atom, model_record>::with<caf::ok_atom>,
  caf::replies_to<list_atom, model_atom>::with<std::vector<model_record>>>;

/// hasher: Argon2id off the scheduler (a small pool of detached actors).
using hasher_actor = caf::typed_actor<
  // Hash a password.
  caf::replies_to<hash_atom, std::string>::with<std::string>,
  // Verify (hash, password).
  caf::replies_to<verify_atom, std::string, std::string>::with<bool>>;

/// session: one per login; holds identity, scopes and an expiry timer.
using session_actor = caf::typed_actor<
  // Who this session belongs to; errc::unauthorized once expired.
  caf::replies_to<caf::get_atom>::with<principal>,
  // End the session now (logout).
  caf::reacts_to<caf::close_atom>>;

/// auth: accounts, logins, sessions, API keys, rate limits.
using auth_actor = caf::typed_actor<
  // Register (username, password, is_admin).
  caf::replies_to<signup_atom, std::string, std::string, bool>::with<user_record>,
  // Log in (username, password, client address) -> token.
  caf::replies_to<login_atom, std::string, std::string, std::string>::with<login_result>,
  // Log out the session owning this bearer token.
  caf::replies_to<logout_atom, std::string>::with<caf::ok_atom>,
  // Authenticate ("bearer" | "key", secret) -> principal; 429 when the key's rate is exceeded.
  caf::replies_to<authn_atom, std::string, std::string>::with<principal>,
  // Keys: create (owner, name, scopes, expires_in_s), list, delete.
  caf::replies_to<caf::put_atom, key_atom, principal, std::string, std::vector<std::string>,
                  int64_t>::with<new_key>,
  caf::replies_to<list_atom, key_atom, principal>::with<std::vector<key_record>>,
  caf::replies_to<caf::delete_atom, key_atom, principal, std::string>::with<caf::ok_atom>,
  // A session actor tells auth it expired (token hash).
  caf::reacts_to<expire_atom, std::string>,
  // Internal: a slowed-down login is due (pending id).
  caf::reacts_to<retry_atom, uint64_t>>;

/// model replica: owns one loaded model; batches whatever is queued (remote).
using replica_actor = caf::typed_actor<
  // Embed one preprocessed tensor (CHW).
  caf::replies_to<embed_atom, tensor_msg>::with<embedding_msg>,
  // Raw model output for a batch (NCHW in, N x D out).
  caf::replies_to<infer_atom, tensor_msg>::with<tensor_msg>,
  // What the replica serves.
  caf::replies_to<info_atom>::with<model_meta>,
  // Internal: run a batch of what is queued.
  caf::reacts_to<batch_atom>>;

/// model registry: serves every model of the repository (loaded on first use,
/// one replica each) for the Open Inference Protocol, and installs new ones.
using model_registry_actor = caf::typed_actor<
  // Run a model (name, NCHW batch) -> N x D output.
  caf::replies_to<infer_atom, std::string, tensor_msg>::with<tensor_msg>,
  // Metadata of one model (loads it when needed); not_found when not installed.
  caf::replies_to<info_atom, std::string>::with<model_meta>,
  // Every installed model (newest versions; not loaded by this).
  caf::replies_to<list_atom>::with<std::vector<model_meta>>,
  // Import weights as the next version; the served replica is replaced.
  caf::replies_to<caf::put_atom, model_import>::with<model_meta>,
  // Remove every version of a model.
  caf::replies_to<caf::delete_atom, std::string>::with<caf::ok_atom>,
  // The replica pool serving a model (spawned, loading, on first use): the
  // one pool per model that pipelines and /v2 share.
  caf::replies_to<caf::get_atom, std::string>::with<model_pool>>;

/// What a training run reports, in order: train_event messages, then exactly
/// one (done_atom, job id, ok, result JSON or error). The job manager is one;
/// a worker's trainer host is one for its own trainers (remote).
using train_receiver_actor = caf::typed_actor<
  caf::reacts_to<train_event>,
  caf::reacts_to<done_atom, std::string, bool, std::string>>;

/// trainer host: runs training jobs on a worker for the gateways (remote; one
/// per worker, lent by its embedding service). Each run is a detached trainer;
/// its events go to the run's receiver. A receiver that goes away (its
/// gateway died) stops its runs, leaving the jobs to resume elsewhere.
using trainer_host_actor = train_receiver_actor::extend<
  // Start a run -> (running, capacity) after it; conflict when every slot is
  // taken, bad_request when the run is malformed.
  caf::replies_to<start_atom, train_run>::with<uint32_t, uint32_t>,
  // Stop a run at its next step; it still reports done (as failed).
  caf::reacts_to<cancel_atom, std::string>,
  // Runs now, and the capacity.
  caf::replies_to<info_atom>::with<uint32_t, uint32_t>>;

/// embedding service: the pipelines of one node, or (gateway) a router over
/// remote workers' services. This is what a worker publishes (remote).
using embed_service_actor = caf::typed_actor<
  // Embed raw bytes through a pipeline.
  caf::replies_to<embed_request>::with<embed_result>,
  // Describe the pipelines.
  caf::replies_to<list_atom>::with<std::vector<pipeline_info>>,
  // Add (or replace) image pipeline `name` backed by repository model `model`,
  // preprocessing as the model's config says (registration of trained models).
  caf::replies_to<caf::put_atom, std::string, std::string>::with<pipeline_info>,
  // Add (or replace) a pipeline from its operator chain (POST /v1/pipelines).
  caf::replies_to<caf::put_atom, pipeline_spec_msg>::with<pipeline_info>,
  // Remove a pipeline added at run time (built-ins: forbidden).
  caf::replies_to<caf::delete_atom, std::string>::with<caf::ok_atom>,
  // This node's model registry (remote), so a gateway can route /v1/models
  // and /v2 to it; unavailable on a node that serves no models.
  caf::replies_to<caf::get_atom, model_atom>::with<model_registry_actor>,
  // This node's trainer host (remote), so a gateway runs training here;
  // unavailable on a node that hosts no training.
  caf::replies_to<caf::get_atom, job_atom>::with<trainer_host_actor>>;

/// datasets: the registry of built-in and uploaded data sets (detached: it
/// reads and decodes archives).
using dataset_actor = caf::typed_actor<
  // The data sets the caller may use.
  caf::replies_to<list_atom, principal>::with<std::vector<dataset_record>>,
  // One of them; not_found otherwise.
  caf::replies_to<caf::get_atom, principal, std::string>::with<dataset_record>,
  // Import an upload (the file is removed afterwards).
  caf::replies_to<caf::put_atom, principal, dataset_upload>::with<dataset_record>,
  // Remove an upload of the caller (admins: any).
  caf::replies_to<caf::delete_atom, principal, std::string>::with<caf::ok_atom>>;

/// job manager: asynchronous work polled by id: embeddings and training runs
/// (one detached trainer actor per running training job).
using job_manager_actor = caf::typed_actor<
  // Submit an embedding job for the caller (principal, request) -> queued record.
  caf::replies_to<submit_atom, principal, embed_request>::with<job_record>,
  // Submit a training job (spec checked first: 400/404 on a bad spec) -> queued record.
  caf::replies_to<submit_atom, principal, train_submit>::with<job_record>,
  // A trainer reports progress, metrics and artifacts.
  caf::reacts_to<train_event>,
  // Subscribe `subscriber` to a job's events -> the job now, history included.
  // The subscriber then gets train_event messages and, at the end,
  // (done_atom, job_record).
  caf::replies_to<subscribe_atom, principal, std::string, caf::actor>::with<job_record>,
  // A job's artifacts: path "" lists them, else the file to serve.
  caf::replies_to<artifact_atom, principal, std::string, std::string>::with<artifact_reply>,
  // Register a finished training job's model as repository model `name` and
  // serve it as embedding pipeline `name` -> the model's metadata.
  caf::replies_to<register_atom, principal, std::string, std::string>::with<model_meta>,
  // Get one job of the caller (admins: any). not_found for others' jobs.
  caf::replies_to<caf::get_atom, principal, std::string>::with<job_record>,
  // List the caller's jobs.
  caf::replies_to<list_atom, principal>::with<std::vector<job_record>>,
  // Cancel a job of the caller (a training run stops within a second).
  caf::replies_to<cancel_atom, principal, std::string>::with<job_record>,
  // Resume a cancelled or failed training job from its last checkpoint.
  caf::replies_to<resume_atom, principal, std::string>::with<job_record>,
  // Internal: a running job finished (id, result JSON or error).
  caf::reacts_to<done_atom, std::string, bool, std::string>,
  // Internal: renew leases, claim waiting jobs, poll watched jobs.
  caf::reacts_to<tick_atom>>;

} // namespace rookery

// rookery: serve | admin create-user | models import | version
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <thread>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <iostream>

#include <CLI/CLI.hpp>
#include "actors/dataset_service.hpp"
#include "actors/node.hpp"
#include "common/config.hpp"
#include "common/log.hpp"
#include "common/mime.hpp"
#include "messages/json.hpp"
#include "models/embedding_model.hpp"
#include "models/repository.hpp"
#include "pipelines/image.hpp"
#include "pipelines/pipeline.hpp"
#include "common/clock.hpp"
#include "store/store.hpp"
#include "trainers/train_job.hpp"

namespace fs = std::filesystem;
using namespace rookery;

namespace {

// Flags that map one-to-one onto configuration keys.
struct common_flags {
  std::string config_file;
  std::map<std::string, std::string> overrides;
  std::vector<std::string> sets;

  void add(CLI::App* app, bool server) {
    app->add_option("--config", config_file, "JSON configuration file");
    auto flag = [&](const char* name, const char* key, const char* help) {
      app->add_option_function<std::string>(
        name, [this, key](const std::string& v) { overrides[key] = v; }, help);
    };
    flag("--data", "data", "data directory (SQLite, models, jobs) [./rookery-data]");
    flag("--store", "store", "postgresql://... URI of a shared store [SQLite in the data directory]");
    if (!server)
      return;
    flag("--host", "host", "HTTP address [127.0.0.1]");
    flag("--port", "port", "HTTP port; 0 picks a free one [8080]");
    flag("--role", "role", "all | gateway | worker [all]");
    flag("--cluster-host", "cluster_host", "address the worker publishes on [127.0.0.1]");
    flag("--shared-data", "shared_data", "worker: where the gateways' data directory is mounted [same path]");
    flag("--cluster-port", "cluster_port", "worker: CAF port to publish on; 0 picks one");
    flag("--seeds", "seeds", "gateway: comma-separated worker host:port list");
    flag("--log-level", "log_level", "trace | debug | info | warn | error | off");
    app->add_option("--set", sets, "any setting as key=value (repeatable)");
  }

  result<config> load() {
    for (auto& kv : sets) {
      auto eq = kv.find('=');
      if (eq == std::string::npos)
        return fail(errc::bad_request, "--set needs key=value, got '" + kv + "'");
      overrides[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    auto cfg = load_config(config_file, rookery_environment(), overrides);
    if (cfg)
      set_builtin_models_dir(cfg->builtin_models); // every command sees the same built-ins
    return cfg;
  }
};

int serve(common_flags& flags, bool print_config) {
  auto cfg = flags.load();
  if (!cfg) {
    std::cerr << "rookery: " << cfg.error().message << "\n";
    return 2;
  }
  if (print_config) {
    std::cout << to_json_text(*cfg) << std::endl;
    return 0;
  }
  log::set_level(cfg->log_level);
  // Block the stop signals in every thread; this one waits for them below.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  auto n = node::start(*cfg);
  if (!n) {
    std::cerr << "rookery: cannot start: " << n.error().message << "\n";
    return 1;
  }
  std::cout << "rookery: listening on http://" << cfg->host << ":" << (*n)->http_port()
            << " (role " << cfg->role << ", data " << cfg->data << ")" << std::endl;
  if (cfg->role == "worker")
    std::cout << "rookery: cluster port " << (*n)->cluster_port() << std::endl;
  {
    const char* wait = std::getenv("OMP_WAIT_POLICY");
    std::cout << "rookery: thread plan: " << cfg->cores << " cores, " << cfg->replicas
              << " replicas x " << cfg->torch_threads << " intra-op threads, " << cfg->decoders
              << " decoders, inference " << cfg->inference << ", OMP_WAIT_POLICY "
              << (wait ? wait : "unset") << std::endl;
  }
  int sig = 0;
  sigwait(&set, &sig);
  log::info("signal {}: shutting down", sig);
  (*n)->stop();
  log::info("stopped");
  return 0;
}

int create_user(common_flags& flags, const std::string& user, const std::string& password,
                bool admin) {
  auto cfg = flags.load();
  if (!cfg) {
    std::cerr << "rookery: " << cfg.error().message << "\n";
    return 2;
  }
  if (password.size() < 8) {
    std::cerr << "rookery: the password needs at least 8 characters\n";
    return 2;
  }
  init_crypto(*cfg);
  if (auto st = create_user_offline(*cfg, user, password, admin); !st) {
    std::cerr << "rookery: " << st.error().message << "\n";
    return 1;
  }
  std::cout << "created " << (admin ? "admin " : "") << "user '" << user << "'" << std::endl;
  return 0;
}

int import_cmd(common_flags& flags, const std::string& arch, const std::string& weights,
                 const std::string& name, const std::string& format, const std::string& options,
                 const std::string& preprocess) {
  auto cfg = flags.load();
  if (!cfg) {
    std::cerr << "rookery: " << cfg.error().message << "\n";
    return 2;
  }
  import_request req;
  req.name = name;
  req.arch = arch;
  req.format = format;
  req.weights = weights;
  req.options_json = options;
  req.preprocess_json = preprocess;
  auto m = rookery::import_model(cfg->data, req);
  if (!m) {
    std::cerr << "rookery: cannot import " << weights << ": " << m.error().message << "\n";
    return 1;
  }
  // Recorded in the store too, for GET /v1/models.
  if (auto db = Store::open(store_location(*cfg))) {
    model_record rec;
    rec.name = m->name;
    rec.version = m->version;
    rec.arch = m->arch;
    rec.format = m->format;
    rec.path = m->weights;
    rec.config_json = m->config_json;
    rec.created_at = unix_now();
    (*db)->put_model(rec);
  }
  std::cout << "imported " << m->name << " version " << m->version << " (" << m->arch << ", "
            << m->format << ", dim " << m->dim << ") into " << m->dir << std::endl;
  return 0;
}

/// `rookery embed FILE`: the embedding pipeline without a server, for scripts.
int embed_cmd(common_flags& flags, const std::string& file, const std::string& pipeline) {
  auto cfg = flags.load();
  if (!cfg) {
    std::cerr << "rookery: " << cfg.error().message << "\n";
    return 2;
  }
  std::ifstream in(file, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) {
    std::cerr << "rookery: cannot read " << file << "\n";
    return 1;
  }
  auto mime = sniff_mime(bytes);
  auto defs = node_pipeline_defs(cfg->data, cfg->pipelines);
  auto name = pipeline;
  if (name.empty()) {
    if (auto i = cfg->mime_table.find(mime); i != cfg->mime_table.end())
      name = i->second;
    for (auto& [n, d] : defs)
      for (auto& m : d.mime_types)
        if (name.empty() && m == mime)
          name = n;
    if (name.empty()) {
      std::cerr << "rookery: no pipeline embeds '" << mime << "'\n";
      return 1;
    }
  }
  auto d = defs.find(name);
  if (d == defs.end()) {
    std::cerr << "rookery: unknown pipeline '" << name << "'\n";
    return 1;
  }
  pipeline_limits lim;
  lim.max_pixels = cfg->max_image_pixels;
  lim.torch_threads = static_cast<int>(cfg->torch_threads);
  auto compiled = compiled_pipeline::compile(d->second, lim);
  if (!compiled) {
    std::cerr << "rookery: pipeline " << name << ": " << compiled.error().message << "\n";
    return 1;
  }
  auto& c = **compiled;
  auto print = [&](compiled_pipeline::answer& a, const std::string& model) {
    embed_result r;
    r.pipeline = name;
    r.mime = mime;
    r.model = model;
    r.dim = static_cast<uint32_t>(a.embedding.size());
    r.embedding = std::move(a.embedding);
    r.extra_json = std::move(a.extra_json);
    std::cout << to_json(r).dump() << std::endl;
    return 0;
  };
  if (auto* own = c.own_model()) { // faces: the operator's own networks, the whole chain
    auto answer = c.run_inline(std::move(bytes), mime);
    if (!answer) {
      std::cerr << "rookery: " << answer.error().message << "\n";
      return 1;
    }
    return print(*answer, own->name);
  }
  auto installed = find_installed_model(cfg->data, c.model());
  if (!installed) {
    std::cerr << "rookery: " << installed.error().message
              << " (install weights with `rookery models import`)\n";
    return 1;
  }
  model_spec spec{installed->name, installed->arch, installed->weights, installed->format,
                  static_cast<int>(cfg->torch_threads), installed->options_json};
  auto model = embedding_model::load(spec);
  if (!model) {
    std::cerr << "rookery: " << model.error().message << "\n";
    return 1;
  }
  auto state = c.before_model(std::move(bytes), mime);
  if (!state) {
    std::cerr << "rookery: " << state.error().message << "\n";
    return 1;
  }
  auto inputs = c.take_inputs(**state);
  std::vector<const float*> ptrs;
  for (auto& t : inputs.data)
    ptrs.push_back(t.data());
  auto out = (*model)->features(ptrs, inputs.c, inputs.h, inputs.w);
  if (!out) {
    std::cerr << "rookery: " << out.error().message << "\n";
    return 1;
  }
  auto answer = c.after_model(**state, std::move(*out));
  if (!answer) {
    std::cerr << "rookery: " << answer.error().message << "\n";
    return 1;
  }
  return print(*answer, installed->name);
}

std::atomic<bool> train_cancel{false};

/// `rookery train SPEC.json --out DIR`: a training job without a server. Run
/// it again with the same --out to resume from the last checkpoint; Ctrl-C
/// stops at the next step.
int train_cmd(common_flags& flags, const std::string& spec_file, const std::string& out_dir,
              int threads, bool quiet) {
  auto cfg = flags.load();
  if (!cfg) {
    std::cerr << "rookery: " << cfg.error().message << "\n";
    return 2;
  }
  std::ifstream in(spec_file);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  train_env env;
  env.paths = dataset_paths_of(*cfg);
  env.is_admin = true; // a local run sees every data set of its data directory
  env.threads = threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency());
  auto spec = validate_train_spec(text, env);
  if (!spec) {
    std::cerr << "rookery: " << spec.error().message << "\n";
    return 2;
  }
  std::signal(SIGINT, [](int) { train_cancel = true; });
  std::signal(SIGTERM, [](int) { train_cancel = true; });
  auto r = run_train_job(*spec, env, out_dir, train_cancel,
                         [quiet](const std::string& type, const std::string& payload) {
                           if (!quiet && type != "progress")
                             std::cerr << type << " " << payload << "\n";
                         });
  if (!r) {
    std::cerr << "rookery: " << r.error().message << "\n";
    return 1;
  }
  std::cout << *r << std::endl;
  return 0;
}

/// `rookery datasets import FILE --name N`: what POST /v1/datasets does, into
/// the data directory (owner 0: the local user `rookery train` runs as).
int dataset_import_cmd(common_flags& flags, const std::string& file, const std::string& name,
                       const std::string& format, double test_fraction) {
  auto cfg = flags.load();
  if (!cfg) {
    std::cerr << "rookery: " << cfg.error().message << "\n";
    return 2;
  }
  data::import_options opt;
  opt.name = name;
  opt.format = format;
  opt.test_fraction = test_fraction;
  auto d = data::import_dataset(dataset_paths_of(*cfg), file, opt);
  if (!d) {
    std::cerr << "rookery: " << d.error().message << "\n";
    return 1;
  }
  std::cout << d->name << ": " << d->kind << " (" << d->format << "), " << d->status << std::endl;
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"Rookery: embedding and training server built on actors"};
  app.require_subcommand(1);

  common_flags serve_flags;
  bool print_config = false;
  auto* serve_cmd = app.add_subcommand("serve", "start a node");
  serve_flags.add(serve_cmd, true);
  serve_cmd->add_flag("--print-config", print_config, "print the effective configuration");

  auto* admin = app.add_subcommand("admin", "maintenance");
  admin->require_subcommand(1);
  common_flags admin_flags;
  std::string user, password;
  bool is_admin = false;
  auto* cu = admin->add_subcommand("create-user", "create a user (the first admin)");
  admin_flags.add(cu, false);
  cu->add_option("--username", user)->required();
  cu->add_option("--password", password, "or ROOKERY_ADMIN_PASSWORD")
    ->envname("ROOKERY_ADMIN_PASSWORD");
  cu->add_flag("--admin", is_admin, "make the user an admin");

  auto* models = app.add_subcommand("models", "model repository");
  models->require_subcommand(1);
  common_flags model_flags;
  std::string arch, weights, name, format;
  auto* imp = models->add_subcommand("import", "import weights into the model repository");
  model_flags.add(imp, false);
  imp->add_option("--arch", arch, "zoo architecture (resnet18, ...) or torchscript")->required();
  imp->add_option("--weights", weights, "torchvision state_dict (torch.save) or TorchScript file")
    ->required()
    ->check(CLI::ExistingFile);
  imp->add_option("--name", name, "repository name")->required();
  imp->add_option("--format", format, "state_dict | torchscript (default from --arch)");
  std::string options, preprocess;
  imp->add_option("--options", options,
                  "model options as JSON, e.g. '{\"num_classes\": 10, \"in_channels\": 1}': "
                  "the weights load strictly into that model");
  imp->add_option("--preprocess", preprocess,
                  "image preprocessing as JSON: {\"resize\", \"crop\", \"channels\", "
                  "\"mean\", \"std\"} (default: ImageNet's)");

  common_flags embed_flags;
  std::string embed_file, embed_pipeline;
  auto* emb = app.add_subcommand("embed", "embed a file without a server (prints JSON)");
  embed_flags.add(emb, false);
  emb->add_option("file", embed_file, "the file to embed")->required()->check(CLI::ExistingFile);
  emb->add_option("--pipeline", embed_pipeline, "pipeline name (default: from the sniffed type)");

  common_flags train_flags;
  std::string train_spec, train_out;
  int train_threads = 0;
  bool train_quiet = false;
  auto* trn = app.add_subcommand("train", "run a training job spec without a server (prints the result JSON)");
  train_flags.add(trn, false);
  trn->add_option("spec", train_spec, "job spec JSON file (as POST /v1/jobs takes)")
    ->required()
    ->check(CLI::ExistingFile);
  trn->add_option("--out", train_out, "job directory: checkpoints, artifacts, model; "
                                      "an existing one resumes")->required();
  trn->add_option("--threads", train_threads, "intra-op threads (default: cores)");
  trn->add_flag("--quiet", train_quiet, "print only the result");

  auto* datasets = app.add_subcommand("datasets", "data set registry");
  datasets->require_subcommand(1);
  common_flags ds_flags;
  std::string ds_file, ds_name, ds_format;
  double ds_test_fraction = 0.2;
  auto* ds_imp = datasets->add_subcommand("import", "import a data set file (as POST /v1/datasets)");
  ds_flags.add(ds_imp, false);
  ds_imp->add_option("file", ds_file, "archive of class folders (images or .txt), CSV, UCR .tsv or UEA .ts")
    ->required()
    ->check(CLI::ExistingFile);
  ds_imp->add_option("--name", ds_name, "data set name")->required();
  ds_imp->add_option("--format", ds_format, "image_folder | text_folder | csv | ucr | ts (default: sniffed)");
  ds_imp->add_option("--test-fraction", ds_test_fraction, "held-out share per class (0.2)");

  app.add_subcommand("version", "print the version");

  CLI11_PARSE(app, argc, argv);
  if (serve_cmd->parsed())
    return serve(serve_flags, print_config);
  if (cu->parsed()) {
    if (password.empty()) {
      std::cerr << "rookery: --password (or ROOKERY_ADMIN_PASSWORD) is required\n";
      return 2;
    }
    return create_user(admin_flags, user, password, is_admin);
  }
  if (emb->parsed())
    return embed_cmd(embed_flags, embed_file, embed_pipeline);
  if (trn->parsed())
    return train_cmd(train_flags, train_spec, train_out, train_threads, train_quiet);
  if (ds_imp->parsed())
    return dataset_import_cmd(ds_flags, ds_file, ds_name, ds_format, ds_test_fraction);
  if (imp->parsed())
    return import_cmd(model_flags, arch, weights, name, format, options, preprocess);
  std::cout << "rookery 0.1.0" << std::endl;
  return 0;
}

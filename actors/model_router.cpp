#include "actors/model_router.hpp"

#include <algorithm>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <set>

#include <filesystem>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "common/job_files.hpp"
#include "common/log.hpp"
#include "messages/registration.hpp"

namespace fs = std::filesystem;

namespace rookery {

namespace {

using self_ptr = model_router_actor::stateful_pointer<model_router_state>;

struct workers {
  std::vector<model_registry_actor> regs;
  std::vector<std::string> names;
};

/// Hands the connected workers' registries to `f`; answers `rp` with
/// unavailable when there is none.
template <class T, class F>
void with_workers(self_ptr self, caf::typed_response_promise<T> rp, F f) {
  self->request(self->state.cluster, std::chrono::seconds(5), list_atom::value, model_atom::value)
    .then(
      [=](std::vector<caf::actor>& regs, std::vector<std::string>& names) mutable {
        if (regs.empty()) {
          rp.deliver(to_error(errc::unavailable, "no worker with a model registry is reachable"));
          return;
        }
        workers w;
        for (auto& r : regs)
          w.regs.push_back(caf::actor_cast<model_registry_actor>(r));
        w.names = std::move(names);
        f(rp, std::move(w));
      },
      [=](caf::error& e) mutable { rp.deliver(e); });
}

/// An error of the transport or of a worker that cannot serve now: worth
/// one more try on another worker. A model's own answer (not found, bad
/// input) is not.
bool retryable(const caf::error& e) {
  return e.category() == caf::atom("system") || to_failure(e).code == errc::unavailable;
}

void infer_on(self_ptr self, caf::typed_response_promise<tensor_msg> rp,
              std::shared_ptr<workers> w, size_t first, size_t attempt, std::string name,
              tensor_msg input) {
  auto i = (first + attempt) % w->regs.size();
  self->request(w->regs[i], self->state.timeout, infer_atom::value, name, input)
    .then([=](tensor_msg& out) mutable { rp.deliver(std::move(out)); },
          [=](caf::error& e) mutable {
            if (attempt + 1 < std::min<size_t>(2, w->regs.size()) && retryable(e)) {
              log::warn("model router: {} on worker {} failed ({}); trying another", name,
                        w->names[i], to_failure(e).message);
              infer_on(self, rp, w, first, attempt + 1, std::move(name), std::move(input));
              return;
            }
            rp.deliver(e);
          });
}

/// Asks the workers in turn for a model's metadata: the first that has it
/// answers; not_found only when none has it.
void info_from(self_ptr self, caf::typed_response_promise<model_meta> rp,
               std::shared_ptr<workers> w, size_t i, std::string name, caf::error first_error) {
  if (i == w->regs.size()) {
    rp.deliver(first_error ? first_error
                           : to_error(errc::not_found, "no model '" + name + "' in the repository"));
    return;
  }
  self->request(w->regs[i], self->state.timeout, info_atom::value, name)
    .then([=](model_meta& m) mutable { rp.deliver(std::move(m)); },
          [=](caf::error& e) mutable {
            auto err = first_error;
            if (!err && to_failure(e).code != errc::not_found)
              err = e;
            info_from(self, rp, w, i + 1, std::move(name), err);
          });
}

// -- what the gateways keep for back-fills -------------------------------------

/// Keeps an import that some worker took: <dir>/<name>/weights and import.json.
void keep_import(const std::string& dir, const model_import& req) {
  if (dir.empty())
    return;
  auto root = fs::path(dir) / req.name;
  nlohmann::json meta{{"name", req.name},
                      {"arch", req.arch},
                      {"format", req.format},
                      {"options_json", req.options_json},
                      {"preprocess_json", req.preprocess_json}};
  auto a = jobs::write_atomically((root / "weights").string(), req.weights);
  auto b = a ? jobs::write_atomically((root / "import.json").string(), meta.dump()) : a;
  if (!b)
    log::warn("model router: cannot keep model '{}' for workers that join later: {}", req.name,
              b.error().message);
}

/// The imports kept for back-fills, by name.
std::map<std::string, model_import> kept_imports(const std::string& dir) {
  std::map<std::string, model_import> out;
  std::error_code ec;
  if (dir.empty())
    return out;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    auto meta = jobs::read_all((it->path() / "import.json").string());
    auto weights = jobs::read_all((it->path() / "weights").string());
    if (!meta || !weights)
      continue;
    auto j = nlohmann::json::parse(*meta, nullptr, false);
    if (!j.is_object())
      continue;
    model_import r;
    r.name = j.value("name", "");
    r.arch = j.value("arch", "");
    r.format = j.value("format", "");
    r.options_json = j.value("options_json", "");
    r.preprocess_json = j.value("preprocess_json", "");
    r.weights = std::move(*weights);
    if (!r.name.empty())
      out.emplace(r.name, std::move(r));
  }
  return out;
}


} // namespace

model_router_actor::behavior_type
model_router_impl(model_router_actor::stateful_pointer<model_router_state> self,
                  worker_directory_actor cluster, std::chrono::milliseconds timeout,
                  std::chrono::milliseconds import_timeout, std::string models_dir) {
  self->state.cluster = std::move(cluster);
  self->state.timeout = timeout;
  self->state.import_timeout = import_timeout;
  self->state.models_dir = std::move(models_dir);
  return {
    [=](infer_atom, const std::string& name, tensor_msg& input) -> caf::result<tensor_msg> {
      auto rp = self->make_response_promise<tensor_msg>();
      auto start = self->state.next++;
      with_workers(self, rp, [=](auto rp, workers w) {
        auto shared = std::make_shared<workers>(std::move(w));
        infer_on(self, rp, shared, start % shared->regs.size(), 0, name, input);
      });
      return rp;
    },
    [=](info_atom, const std::string& name) -> caf::result<model_meta> {
      auto rp = self->make_response_promise<model_meta>();
      with_workers(self, rp, [=](auto rp, workers w) {
        info_from(self, rp, std::make_shared<workers>(std::move(w)), 0, name, caf::error{});
      });
      return rp;
    },
    [=](caf::get_atom, const std::string& name) -> caf::result<model_pool> {
      auto rp = self->make_response_promise<model_pool>();
      with_workers(self, rp, [=](auto rp, workers w) {
        auto i = self->state.next++ % w.regs.size();
        self->request(w.regs[i], self->state.import_timeout, caf::get_atom::value, name)
          .then([=](model_pool& p) mutable { rp.deliver(std::move(p)); },
                [=](caf::error& e) mutable { rp.deliver(e); });
      });
      return rp;
    },
    [=](list_atom) -> caf::result<std::vector<model_meta>> {
      auto rp = self->make_response_promise<std::vector<model_meta>>();
      with_workers(self, rp, [=](auto rp, workers w) mutable {
        struct entry {
          model_meta meta;
          std::set<uint32_t> versions;
          size_t on = 0;
        };
        struct gather {
          std::map<std::string, entry> models;
          size_t left = 0;
          size_t answered = 0;
        };
        auto g = std::make_shared<gather>();
        g->left = w.regs.size();
        auto finish = [=]() mutable {
          if (--g->left > 0)
            return;
          std::vector<model_meta> out;
          for (auto& [name, e] : g->models) {
            auto m = e.meta;
            if (e.versions.size() > 1) {
              std::string vs;
              for (auto v : e.versions)
                vs += (vs.empty() ? "" : ", ") + std::to_string(v);
              m.status += "; workers differ: versions " + vs;
            }
            if (e.on < g->answered)
              m.status += "; on " + std::to_string(e.on) + " of " + std::to_string(g->answered)
                          + " workers";
            out.push_back(std::move(m));
          }
          rp.deliver(std::move(out));
        };
        for (auto& r : w.regs)
          self->request(r, std::chrono::seconds(5), list_atom::value)
            .then(
              [=](std::vector<model_meta>& ms) mutable {
                ++g->answered;
                for (auto& m : ms) {
                  auto& e = g->models[m.name];
                  e.versions.insert(m.version);
                  ++e.on;
                  if (e.on == 1 || m.version > e.meta.version)
                    e.meta = m;
                }
                finish();
              },
              [=](caf::error&) mutable { finish(); });
      });
      return rp;
    },
    [=](caf::put_atom, model_import& req) -> caf::result<model_meta> {
      // The file is on this gateway's disk (an upload, or a job's model):
      // its bytes travel to each worker's repository.
      if (!req.weights_path.empty()) {
        std::ifstream in(req.weights_path, std::ios::binary);
        if (!in)
          return to_error(errc::internal, "cannot read the weights to forward");
        req.weights.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
        req.weights_path.clear();
      }
      auto rp = self->make_response_promise<model_meta>();
      with_workers(self, rp, [=](auto rp, workers w) mutable {
        struct gather {
          std::optional<model_meta> first;
          caf::error err;
          std::vector<std::string> failed;
          size_t ok = 0;
          size_t left = 0;
        };
        auto g = std::make_shared<gather>();
        g->left = w.regs.size();
        // After the last answer: the first success (kept for back-fills, and
        // naming the workers that refused), or the first error.
        auto finish = [=]() mutable {
          if (--g->left > 0)
            return;
          if (!g->first) {
            rp.deliver(g->err);
            return;
          }
          keep_import(self->state.models_dir, req);
          auto out = *g->first;
          out.status += partial_note("installed", g->ok, g->failed);
          rp.deliver(std::move(out));
        };
        for (size_t i = 0; i < w.regs.size(); ++i) {
          auto who = w.names[i];
          self->request(w.regs[i], self->state.import_timeout, caf::put_atom::value, req)
            .then(
              [=](model_meta& m) mutable {
                ++g->ok;
                if (!g->first)
                  g->first = std::move(m);
                finish();
              },
              [=](caf::error& e) mutable {
                log::warn("model router: worker {} refused model '{}': {}", who, req.name,
                          to_failure(e).message);
                g->failed.push_back(who + ": " + to_failure(e).message);
                if (!g->err)
                  g->err = e;
                finish();
              });
        }
      });
      return rp;
    },
    [=](caf::delete_atom, const std::string& name) -> caf::result<caf::ok_atom> {
      // Not back-filled any more, whatever the workers answer.
      if (!self->state.models_dir.empty() && !name.empty() && name.find('/') == std::string::npos
          && name != "." && name != "..") {
        std::error_code ec;
        fs::remove_all(fs::path(self->state.models_dir) / name, ec);
      }
      auto rp = self->make_response_promise<caf::ok_atom>();
      with_workers(self, rp, [=](auto rp, workers w) mutable {
        struct gather {
          bool any = false;
          caf::error err;
          size_t left = 0;
        };
        auto g = std::make_shared<gather>();
        g->left = w.regs.size();
        for (auto& r : w.regs)
          self->request(r, self->state.import_timeout, caf::delete_atom::value, name)
            .then(
              [=](caf::ok_atom) mutable {
                g->any = true;
                if (--g->left > 0)
                  return;
                if (g->err && to_failure(g->err).code != errc::not_found)
                  rp.deliver(g->err);
                else
                  rp.deliver(caf::ok_atom::value);
              },
              [=](caf::error& e) mutable {
                // A worker without the model is fine when another had it;
                // any other refusal (a built-in) wins over not_found.
                if (!g->err || to_failure(g->err).code == errc::not_found)
                  g->err = e;
                if (--g->left > 0)
                  return;
                if (g->any && to_failure(g->err).code == errc::not_found)
                  rp.deliver(caf::ok_atom::value);
                else
                  rp.deliver(g->err);
              });
      });
      return rp;
    },
    [=](backfill_atom, const caf::actor& worker, const std::string& name) -> caf::result<caf::ok_atom> {
      auto kept = kept_imports(self->state.models_dir);
      if (kept.empty())
        return caf::ok_atom::value;
      auto reg = caf::actor_cast<model_registry_actor>(worker);
      auto rp = self->make_response_promise<caf::ok_atom>();
      self->request(reg, std::chrono::seconds(10), list_atom::value)
        .then(
          [=](std::vector<model_meta>& has) mutable {
            std::set<std::string> there;
            for (auto& m : has)
              there.insert(m.name);
            auto left = std::make_shared<size_t>(0);
            for (auto& [n, r] : kept)
              *left += there.count(n) == 0 ? 1 : 0;
            if (*left == 0) {
              rp.deliver(caf::ok_atom::value);
              return;
            }
            log::info("model router: back-filling {} models to worker {}", *left, name);
            for (auto& [n, r] : kept) {
              if (there.count(n) != 0)
                continue;
              auto model = n;
              self->request(reg, self->state.import_timeout, caf::put_atom::value, r)
                .then(
                  [=](model_meta&) mutable {
                    if (--*left == 0)
                      rp.deliver(caf::ok_atom::value);
                  },
                  [=](caf::error& e) mutable {
                    log::warn("model router: worker {} refused back-filled model '{}': {}", name,
                              model, to_failure(e).message);
                    if (--*left == 0)
                      rp.deliver(caf::ok_atom::value);
                  });
            }
          },
          [=](caf::error& e) mutable {
            log::warn("model router: cannot list worker {}'s models: {}", name, to_failure(e).message);
            rp.deliver(caf::ok_atom::value);
          });
      return rp;
    },
  };
}

} // namespace rookery

#include "actors/trainer_host.hpp"

#include <filesystem>

#include <caf/all.hpp>

#include "common/log.hpp"
#include "common/metrics.hpp"
#include "messages/registration.hpp"
#include "trainers/train_job.hpp"

namespace fs = std::filesystem;

namespace rookery {

namespace {

caf::behavior trainer_actor(caf::event_based_actor* self, std::string id, std::string spec,
                            train_env env, std::string dir, std::shared_ptr<run_control> ctl,
                            train_receiver_actor receiver) {
  self->send(self, tick_atom::value);
  return {
    [=](tick_atom) {
      result<std::string> r = fail(errc::internal, "the training run ended unexpectedly");
      try {
        r = run_train_job(spec, env, dir, ctl->stop,
                          [&](const std::string& type, const std::string& payload) {
                            self->send(receiver, train_event{id, type, payload});
                          });
      } catch (const std::exception& e) {
        r = fail(errc::internal, std::string{"the training run failed: "} + e.what());
      }
      // Reported so the receiver frees the run's slot only now. On shutdown
      // the job stays unfinished in the store, to resume on a restart.
      if (!ctl->shutdown) {
        if (r)
          self->send(receiver, done_atom::value, id, true, *r);
        else
          self->send(receiver, done_atom::value, id, false, r.error().message);
      }
      self->quit();
    },
  };
}

} // namespace

void spawn_trainer(caf::actor_system& sys, std::string id, std::string spec, const train_env& env,
                   std::string dir, std::shared_ptr<run_control> ctl,
                   train_receiver_actor receiver) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  sys.spawn<caf::detached>(trainer_actor, std::move(id), std::move(spec), env, std::move(dir),
                           std::move(ctl), std::move(receiver));
}

std::string map_shared_path(const std::string& path, const std::string& gateway_data,
                            const std::string& shared_data) {
  if (shared_data.empty())
    return path;
  auto base = fs::path(gateway_data).lexically_normal();
  if (!base.has_filename() && base.has_parent_path() && base != base.root_path())
    base = base.parent_path(); // "/data/" -> "/data"
  auto rel = fs::path(path).lexically_normal().lexically_relative(base);
  if (rel.empty() || *rel.begin() == "..")
    return {};
  return (fs::path(shared_data) / rel).lexically_normal().string();
}

trainer_host_actor::behavior_type
trainer_host_impl(trainer_host_actor::stateful_pointer<trainer_host_state> self,
                  trainer_host_settings settings) {
  self->state.settings = settings;
  self->state.settings.max_running = std::max<uint32_t>(1, settings.max_running);
  // A receiver that goes away (its gateway died or lost the network): its
  // runs stop at their next step without reporting, and keep their slots
  // until they have stopped.
  self->set_down_handler([=](const caf::down_msg& dm) {
    for (auto& [id, r] : self->state.runs)
      if (r.receiver && r.receiver.address() == dm.source) {
        log::warn("trainer host: the gateway of job {} went away; stopping the run", id);
        r.ctl->stop = true;
        r.receiver = nullptr;
      }
  });
  // When the worker stops, its runs end at their next step; their jobs stay
  // unfinished and resume elsewhere.
  self->attach_functor([controls = self->state.controls](const caf::error&) {
    for (auto& [id, ctl] : *controls) {
      ctl->shutdown = true;
      ctl->stop = true;
    }
  });
  auto gauge = [=] {
    metrics::instance().set_gauge("rookery_trainer_runs", "",
                                  static_cast<double>(self->state.runs.size()));
  };
  gauge();
  auto counts = [=] {
    return caf::result<uint32_t, uint32_t>{static_cast<uint32_t>(self->state.runs.size()),
                                           self->state.settings.max_running};
  };
  return {
    [=](start_atom, train_run& run) -> caf::result<uint32_t, uint32_t> {
      auto& st = self->state;
      if (run.job_id.empty() || run.job_dir.empty() || !run.receiver)
        return to_error(errc::bad_request, "a training run needs a job id, a directory and a receiver");
      if (st.runs.count(run.job_id) != 0)
        return to_error(errc::conflict, "job '" + run.job_id + "' runs here already");
      if (st.runs.size() >= st.settings.max_running)
        return to_error(errc::conflict, "every training slot of this worker is taken");
      auto job_dir = map_shared_path(run.job_dir, run.data_dir, st.settings.shared_data);
      if (job_dir.empty())
        return to_error(errc::bad_request, "job directory " + run.job_dir + " is not under the "
                                           "gateway's data directory " + run.data_dir);
      train_env env;
      env.paths.data_dir = st.settings.shared_data.empty() ? run.data_dir : st.settings.shared_data;
      if (!run.fashion_mnist_dir.empty())
        env.paths.fashion_mnist_dir = run.fashion_mnist_dir;
      if (!run.fortunes_dir.empty())
        env.paths.fortunes_dir = run.fortunes_dir;
      if (!run.wordnet_dir.empty())
        env.paths.wordnet_dir = run.wordnet_dir;
      env.user_id = run.user_id;
      env.is_admin = true; // the gateway checked the data set's visibility at submission
      env.threads = st.settings.train_threads;
      auto receiver = caf::actor_cast<train_receiver_actor>(run.receiver);
      self->monitor(receiver);
      auto ctl = std::make_shared<run_control>();
      st.runs[run.job_id] = trainer_host_state::run{ctl, receiver};
      (*st.controls)[run.job_id] = ctl;
      log::info("trainer host: job {} started ({} of {} slots)", run.job_id, st.runs.size(),
                st.settings.max_running);
      spawn_trainer(self->system(), run.job_id, run.spec_json, env, job_dir, ctl,
                    caf::actor_cast<train_receiver_actor>(self));
      gauge();
      return counts();
    },
    [=](cancel_atom, const std::string& id) {
      if (auto i = self->state.runs.find(id); i != self->state.runs.end())
        i->second.ctl->stop = true;
    },
    [=](info_atom) { return counts(); },
    [=](train_event& ev) {
      if (auto i = self->state.runs.find(ev.job_id); i != self->state.runs.end() && i->second.receiver)
        self->send(i->second.receiver, std::move(ev));
    },
    [=](done_atom, const std::string& id, bool ok, std::string& payload) {
      auto i = self->state.runs.find(id);
      if (i == self->state.runs.end())
        return;
      if (i->second.receiver)
        self->send(i->second.receiver, done_atom::value, id, ok, std::move(payload));
      self->state.runs.erase(i);
      self->state.controls->erase(id);
      gauge();
      log::info("trainer host: job {} ended ({})", id, ok ? "succeeded" : "failed or stopped");
    },
  };
}

} // namespace rookery

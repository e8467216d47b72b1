#include "actors/job_manager.hpp"

#include <filesystem>
#include <fstream>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "common/crypto.hpp"
#include "common/log.hpp"
#include "messages/json.hpp"
#include "messages/registration.hpp"
#include "store/store.hpp"

namespace fs = std::filesystem;

namespace rookery {

namespace {

constexpr auto kStoreTimeout = std::chrono::seconds(30);
constexpr auto kJobTimeout = std::chrono::minutes(10);

bool visible_to(const job_record& j, const principal& p) {
  return j.user_id == p.user_id || p.is_admin;
}

bool finished(const std::string& state) {
  return state == job_state::succeeded || state == job_state::failed
         || state == job_state::cancelled;
}

std::string input_path(const std::string& dir, const std::string& id) {
  return (fs::path(dir) / id / "input.bin").string();
}

status write_file(const std::string& path, const std::string& bytes) {
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  std::ofstream out(path + ".tmp", std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out)
    return fail(errc::internal, "cannot write job input " + path);
  fs::rename(path + ".tmp", path, ec); // atomic: a crash leaves no half file
  if (ec)
    return fail(errc::internal, "cannot write job input " + path + ": " + ec.message());
  return {};
}

/// Looks a finished job up in the store and hands it to `f` when `who` may
/// see it; answers not_found otherwise (others' jobs are invisible).
template <class Self, class T, class F>
void with_stored_job(Self* self, const principal& who, const std::string& id,
                     caf::typed_response_promise<T> rp, F f) {
  self->request(self->state.store, kStoreTimeout, caf::get_atom::value, job_atom::value, id)
    .then(
      [=](job_record& j) mutable {
        if (!visible_to(j, who))
          rp.deliver(to_error(errc::not_found, "no job '" + id + "'"));
        else
          f(rp, j);
      },
      [=](caf::error& e) mutable { rp.deliver(e); });
}

} // namespace

job_manager_actor::behavior_type
job_manager_impl(job_manager_actor::stateful_pointer<job_manager_state> self, store_actor store,
                 embed_service_actor embed, std::string data_dir, uint32_t max_running) {
  auto& st = self->state;
  st.store = store;
  st.embed = embed;
  st.jobs_dir = (fs::path(data_dir) / "jobs").string();
  st.max_running = std::max<uint32_t>(1, max_running);

  auto persist = [=](const job_record& j) {
    self->request(self->state.store, kStoreTimeout, caf::update_atom::value, j)
      .then([](caf::ok_atom) {},
            [=](caf::error& e) { log::error("job {}: cannot save state: {}", j.id,
                                            to_failure(e).message); });
  };

  // Starts queued jobs while there is room.
  auto schedule = std::make_shared<std::function<void()>>();
  *schedule = [=] {
    auto& st = self->state;
    while (st.running < st.max_running && !st.queue.empty()) {
      auto id = st.queue.front();
      st.queue.pop_front();
      auto i = st.active.find(id);
      if (i == st.active.end() || i->second.state != job_state::queued)
        continue;
      auto& job = i->second;
      std::ifstream in(input_path(st.jobs_dir, id), std::ios::binary);
      std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (!in.good() && !in.eof()) {
        job.state = job_state::failed;
        job.error = "the job's input is gone";
        job.finished_at = Store::now();
        persist(job);
        st.active.erase(i);
        continue;
      }
      job.state = job_state::running;
      job.started_at = Store::now();
      persist(job);
      ++st.running;
      auto spec = nlohmann::json::parse(job.spec_json, nullptr, false);
      embed_request req;
      req.pipeline = spec.is_object() ? spec.value("pipeline", "") : "";
      req.mime = spec.is_object() ? spec.value("mime", "") : "";
      req.data = std::move(bytes);
      req.request_id = id;
      self->request(st.embed, kJobTimeout, std::move(req))
        .then(
          [=](embed_result& r) {
            self->send(self, done_atom::value, id, true, to_json(r).dump());
          },
          [=](caf::error& e) {
            self->send(self, done_atom::value, id, false, to_failure(e).message);
          });
    }
  };

  // After a restart: re-queue what was queued or running; inputs are on disk.
  self->request(st.store, kStoreTimeout, list_atom::value, job_atom::value)
    .then(
      [=](std::vector<job_record>& jobs) {
        for (auto& j : jobs) {
          j.state = job_state::queued;
          j.started_at = 0;
          if (self->state.active.count(j.id) != 0)
            continue;
          log::info("job {}: resuming after restart", j.id);
          self->state.queue.push_back(j.id);
          self->state.active.emplace(j.id, j);
          persist(j);
        }
        (*schedule)();
      },
      [](caf::error& e) { log::error("cannot list unfinished jobs: {}", to_failure(e).message); });

  return {
    [=](submit_atom, const principal& who, embed_request& req) -> caf::result<job_record> {
      job_record j;
      j.id = crypto::random_id("j_");
      j.user_id = who.user_id;
      j.kind = "embed";
      j.state = job_state::queued;
      j.spec_json = nlohmann::json{{"pipeline", req.pipeline},
                                   {"mime", req.mime},
                                   {"bytes", req.data.size()}}
                      .dump();
      j.created_at = Store::now();
      if (auto st = write_file(input_path(self->state.jobs_dir, j.id), req.data); !st)
        return to_error(st.error());
      auto rp = self->make_response_promise<job_record>();
      self->request(self->state.store, kStoreTimeout, caf::put_atom::value, j)
        .then(
          [=](caf::ok_atom) mutable {
            self->state.active.emplace(j.id, j);
            self->state.queue.push_back(j.id);
            rp.deliver(j);
            (*schedule)();
          },
          [=](caf::error& e) mutable { rp.deliver(e); });
      return rp;
    },
    [=](caf::get_atom, const principal& who, const std::string& id) -> caf::result<job_record> {
      if (auto i = self->state.active.find(id); i != self->state.active.end()) {
        if (!visible_to(i->second, who))
          return to_error(errc::not_found, "no job '" + id + "'");
        return i->second;
      }
      auto rp = self->make_response_promise<job_record>();
      with_stored_job(self, who, id, rp, [](auto& rp, job_record& j) { rp.deliver(j); });
      return rp;
    },
    [=](list_atom, const principal& who) -> caf::result<std::vector<job_record>> {
      return self->delegate(self->state.store, list_atom::value, job_atom::value, who.user_id);
    },
    [=](cancel_atom, const principal& who, const std::string& id) -> caf::result<job_record> {
      auto i = self->state.active.find(id);
      if (i == self->state.active.end() || !visible_to(i->second, who)) {
        // Not active: either unknown, someone else's, or already finished.
        auto rp = self->make_response_promise<job_record>();
        with_stored_job(self, who, id, rp, [id](auto& rp, job_record& j) {
          rp.deliver(to_error(errc::conflict, "job '" + id + "' already " + j.state));
        });
        return rp;
      }
      auto job = i->second;
      if (job.state == job_state::running)
        --self->state.running; // its result is dropped when it arrives
      job.state = job_state::cancelled;
      job.finished_at = Store::now();
      self->state.active.erase(i);
      std::error_code ec;
      fs::remove_all(fs::path(self->state.jobs_dir) / id, ec);
      persist(job);
      (*schedule)();
      return job;
    },
    [=](done_atom, const std::string& id, bool ok, std::string& payload) {
      auto i = self->state.active.find(id);
      if (i == self->state.active.end())
        return; // cancelled meanwhile
      auto job = i->second;
      self->state.active.erase(i);
      --self->state.running;
      job.state = ok ? job_state::succeeded : job_state::failed;
      (ok ? job.result_json : job.error) = std::move(payload);
      job.progress = 1;
      job.finished_at = Store::now();
      std::error_code ec;
      fs::remove_all(fs::path(self->state.jobs_dir) / id, ec);
      persist(job);
      (*schedule)();
    },
  };
}

} // namespace rookery

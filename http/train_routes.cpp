// Training over HTTP: submit a training job, follow it (server-sent events),
// fetch its artifacts, resume it, register its model; and the dataset registry.
#include "http/context.hpp"
#include "http/multipart.hpp"
#include "messages/json.hpp"
#include "messages/registration.hpp"

namespace rookery::http {

namespace {

using restinio::request_handle_t;
using restinio::router::route_params_t;

constexpr auto kKeepAlive = std::chrono::seconds(15);

json dataset_json(const dataset_record& d) {
  return json{{"name", d.name},
              {"kind", d.kind},
              {"source", d.source},
              {"format", d.format},
              {"classes", d.classes},
              {"columns", d.columns},
              {"train_size", d.train_size},
              {"test_size", d.test_size},
              {"item_shape", d.item_shape},
              {"available", d.available},
              {"status", d.status},
              {"owner_id", d.owner_id},
              {"created_at", d.created_at != 0 ? json(d.created_at) : json(nullptr)}};
}

bool finished(const std::string& state) {
  return state == job_state::succeeded || state == job_state::failed
         || state == job_state::cancelled;
}

// -- training jobs -----------------------------------------------------------------

void submit_training(const std::shared_ptr<api>& a, const ctx_ptr& ctx) {
  auto body = parse_json_body(ctx);
  if (!body)
    return;
  auto spec = body->dump();
  with_principal(a, ctx, "train", [=](caf::event_based_actor* self, const principal& who) {
    self->request(a->nodes.jobs, a->timeout, submit_atom::value, who, train_submit{spec})
      .then(
        [=](job_record& j) {
          respond_json(ctx, 202, json{{"id", j.id},
                                      {"state", j.state},
                                      {"href", "/v1/jobs/" + j.id},
                                      {"events", "/v1/jobs/" + j.id + "/events"},
                                      {"artifacts", "/v1/jobs/" + j.id + "/artifacts"}});
        },
        [=](caf::error& e) { respond_error(ctx, e); });
  });
}

/// One server-sent event.
std::string sse(const std::string& event, const std::string& data) {
  return "event: " + event + "\ndata: " + data + "\n\n";
}

using stream_t = restinio::response_builder_t<restinio::chunked_output_t>;

struct sse_state {
  static inline const char* name = "sse_subscriber";
  std::optional<stream_t> stream;
  std::vector<std::string> pending; // events that came before the stream started
};

/// Follows one job for one client: replays the history, then forwards events
/// until the job ends, the client hangs up or the job manager goes away.
caf::behavior sse_subscriber(caf::stateful_actor<sse_state>* self, std::shared_ptr<api> a,
                             ctx_ptr ctx, principal who, std::string id) {
  auto me = caf::actor_cast<caf::actor>(self);
  auto write = [=](const std::string& chunk) {
    auto& st = self->state;
    if (!st.stream) {
      st.pending.push_back(chunk);
      return;
    }
    st.stream->append_chunk(chunk);
    // A failed write means the client is gone: stop following the job.
    st.stream->flush([me](const restinio::asio_ns::error_code& ec) {
      if (ec)
        caf::anon_send(me, caf::close_atom::value);
    });
  };
  auto end = [=](const std::string& last_chunk) {
    auto& st = self->state;
    if (st.stream) {
      if (!last_chunk.empty())
        st.stream->append_chunk(last_chunk);
      st.stream->done();
      st.stream.reset();
    }
    self->quit();
  };
  self->set_down_handler([=](caf::down_msg&) {
    end(sse("end", json{{"id", id}, {"state", "unknown"},
                        {"detail", "the server is shutting down"}}.dump()));
  });
  self->request(a->nodes.jobs, a->timeout, subscribe_atom::value, who, id, me)
    .then(
      [=](job_record& j) {
        auto& st = self->state;
        st.stream.emplace(begin_stream(ctx, "text/event-stream"));
        st.stream->append_chunk(sse("state", json{{"id", j.id}, {"state", j.state},
                                                  {"kind", j.kind}}.dump()));
        // The history so far, so a client that connects late misses nothing.
        auto history = json::parse(j.history_json.empty() ? "[]" : j.history_json, nullptr, false);
        if (history.is_array())
          for (auto& p : history)
            st.stream->append_chunk(sse("metrics", p.dump()));
        if (!j.progress_json.empty())
          st.stream->append_chunk(sse("progress", j.progress_json));
        for (auto& c : st.pending)
          st.stream->append_chunk(c);
        st.pending.clear();
        if (finished(j.state))
          return end(sse("end", to_json(j).dump()));
        st.stream->flush();
        self->monitor(a->nodes.jobs);
        self->delayed_send(self, kKeepAlive, tick_atom::value);
      },
      [=](caf::error& e) {
        respond_error(ctx, e);
        self->quit();
      });
  return {
    [=](train_event& ev) { write(sse(ev.type, ev.json)); },
    [=](done_atom, job_record& j) {
      j.history_json.clear();
      end(sse("end", to_json(j).dump()));
    },
    [=](tick_atom) {
      write(": keep-alive\n\n");
      self->delayed_send(self, kKeepAlive, tick_atom::value);
    },
    [=](caf::close_atom) { end(""); },
  };
}

void job_events(const std::shared_ptr<api>& a, const ctx_ptr& ctx, std::string id) {
  with_principal(a, ctx, "", [=](caf::event_based_actor*, const principal& who) {
    a->nodes.sys->spawn(sse_subscriber, a, ctx, who, id);
  });
}

void job_artifacts(const std::shared_ptr<api>& a, const ctx_ptr& ctx, std::string id,
                   std::string path) {
  with_principal(a, ctx, "", [=](caf::event_based_actor* self, const principal& who) {
    self->request(a->nodes.jobs, a->timeout, artifact_atom::value, who, id, path)
      .then(
        [=](artifact_reply& r) {
          if (path.empty())
            respond(ctx, 200, r.listing_json, "application/json");
          else
            respond_file(ctx, r.file, r.content_type);
        },
        [=](caf::error& e) { respond_error(ctx, e); });
  });
}

void register_job_model(const std::shared_ptr<api>& a, const ctx_ptr& ctx, std::string id) {
  auto body = parse_json_body(ctx);
  if (!body)
    return;
  auto n = body->find("name");
  if (n == body->end() || !n->is_string() || n->get<std::string>().empty())
    return respond_problem(ctx, errc::bad_request,
                           "field 'name' (string) is required: the model and pipeline name");
  auto name = n->get<std::string>();
  with_principal(a, ctx, "train", [=](caf::event_based_actor* self, const principal& who) {
    self->request(a->nodes.jobs, import_timeout(a), register_atom::value, who, id, name)
      .then(
        [=](model_meta& m) {
          auto j = to_json(m);
          j["input_shape"] = m.input_shape;
          j["pipeline"] = m.name;
          j["embed"] = "/v1/pipelines/" + m.name + "/embed";
          respond_json(ctx, 201, j);
        },
        [=](caf::error& e) { respond_error(ctx, e); });
  });
}

void resume_job(const std::shared_ptr<api>& a, const ctx_ptr& ctx, std::string id) {
  with_principal(a, ctx, "train", [=](caf::event_based_actor* self, const principal& who) {
    self->request(a->nodes.jobs, a->timeout, resume_atom::value, who, id)
      .then([=](job_record& j) { respond_json(ctx, 202, to_json(j)); },
            [=](caf::error& e) { respond_error(ctx, e); });
  });
}

// -- datasets -------------------------------------------------------------------------

void list_datasets(const std::shared_ptr<api>& a, const ctx_ptr& ctx) {
  with_principal(a, ctx, "", [=](caf::event_based_actor* self, const principal& who) {
    self->request(a->nodes.datasets, a->timeout, list_atom::value, who)
      .then(
        [=](std::vector<dataset_record>& ds) {
          json arr = json::array();
          for (auto& d : ds)
            arr.push_back(dataset_json(d));
          respond_json(ctx, 200, json{{"datasets", arr}});
        },
        [=](caf::error& e) { respond_error(ctx, e); });
  });
}

void get_dataset(const std::shared_ptr<api>& a, const ctx_ptr& ctx, std::string name) {
  with_principal(a, ctx, "", [=](caf::event_based_actor* self, const principal& who) {
    self->request(a->nodes.datasets, a->timeout, caf::get_atom::value, who, name)
      .then([=](dataset_record& d) { respond_json(ctx, 200, dataset_json(d)); },
            [=](caf::error& e) { respond_error(ctx, e); });
  });
}

/// A number field of the form; nullopt (and a 400) when it is not one.
std::optional<double> form_number(const ctx_ptr& ctx, const std::map<std::string, std::string>& f,
                                  const char* name, double fallback) {
  auto i = f.find(name);
  if (i == f.end() || i->second.empty())
    return fallback;
  try {
    size_t pos = 0;
    double v = std::stod(i->second, &pos);
    if (pos == i->second.size())
      return v;
  } catch (const std::exception&) {
  }
  respond_problem(ctx, errc::bad_request, std::string{"form field '"} + name + "' must be a number");
  return std::nullopt;
}

void upload_dataset(const std::shared_ptr<api>& a, const ctx_ptr& ctx) {
  auto form = read_upload_form(
    a, ctx,
    "upload data sets as multipart/form-data: 'name', optional 'format' (image_folder | csv), "
    "'image_size', 'channels', 'test_fraction', and the file part 'file' (a tar/zip of class "
    "folders, or a CSV)",
    {"name", "file"});
  if (!form)
    return;
  auto& fields = *form;
  auto size = form_number(ctx, fields, "image_size", 0);
  if (!size)
    return;
  auto channels = form_number(ctx, fields, "channels", 0);
  if (!channels)
    return;
  auto test_fraction = form_number(ctx, fields, "test_fraction", 0.2);
  if (!test_fraction)
    return;
  if (*size < 0 || *size > 1024 || (*channels != 0 && *channels != 1 && *channels != 3)
      || *test_fraction < 0 || *test_fraction >= 1)
    return respond_problem(ctx, errc::bad_request,
                           "image_size must be 0..1024, channels 0, 1 or 3, test_fraction in [0, 1)");
  auto file = std::make_shared<std::string>(std::move(fields["file"]));
  dataset_upload up;
  up.name = fields["name"];
  up.format = fields["format"];
  up.image_size = static_cast<int64_t>(*size);
  up.channels = static_cast<int64_t>(*channels);
  up.test_fraction = *test_fraction;
  with_principal(a, ctx, "train", [=](caf::event_based_actor* self, const principal& who) {
    auto path = save_upload(a, ctx, *file, "dataset_");
    if (!path)
      return;
    auto req = up;
    req.file = *path; // the dataset actor removes it
    self->request(a->nodes.datasets, import_timeout(a), caf::put_atom::value, who, req)
      .then([=](dataset_record& d) { respond_json(ctx, 201, dataset_json(d)); },
            [=](caf::error& e) { respond_error(ctx, e); });
  });
}

void delete_dataset(const std::shared_ptr<api>& a, const ctx_ptr& ctx, std::string name) {
  with_principal(a, ctx, "train", [=](caf::event_based_actor* self, const principal& who) {
    self->request(a->nodes.datasets, a->timeout, caf::delete_atom::value, who, name)
      .then([=](caf::ok_atom) { respond_empty(ctx, 204); },
            [=](caf::error& e) { respond_error(ctx, e); });
  });
}

} // namespace

void register_train_routes(router_t& r, const std::shared_ptr<api>& a) {
  auto route = [&](restinio::http_method_id_t method, const char* path, route_fn fn) {
    add_route(r, a, method, path, std::move(fn));
  };
  route(restinio::http_method_post(), "/v1/jobs", [](auto a, auto c, auto&) { submit_training(a, c); });
  route(restinio::http_method_get(), "/v1/jobs/:id/events", [](auto a, auto c, auto& p) {
    job_events(a, c, std::string{p["id"]});
  });
  route(restinio::http_method_get(), "/v1/jobs/:id/artifacts", [](auto a, auto c, auto& p) {
    job_artifacts(a, c, std::string{p["id"]}, "");
  });
  route(restinio::http_method_get(), "/v1/jobs/:id/artifacts/:path(.+)", [](auto a, auto c, auto& p) {
    job_artifacts(a, c, std::string{p["id"]}, std::string{p["path"]});
  });
  route(restinio::http_method_post(), "/v1/jobs/:id/register", [](auto a, auto c, auto& p) {
    register_job_model(a, c, std::string{p["id"]});
  });
  route(restinio::http_method_post(), "/v1/jobs/:id/resume", [](auto a, auto c, auto& p) {
    resume_job(a, c, std::string{p["id"]});
  });
  route(restinio::http_method_get(), "/v1/datasets", [](auto a, auto c, auto&) { list_datasets(a, c); });
  route(restinio::http_method_post(), "/v1/datasets", [](auto a, auto c, auto&) { upload_dataset(a, c); });
  route(restinio::http_method_get(), "/v1/datasets/:name", [](auto a, auto c, auto& p) {
    get_dataset(a, c, std::string{p["name"]});
  });
  route(restinio::http_method_delete(), "/v1/datasets/:name", [](auto a, auto c, auto& p) {
    delete_dataset(a, c, std::string{p["name"]});
  });
}

} // namespace rookery::http

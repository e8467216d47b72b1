// The /v1 resources. Handlers stay thin: parse, authenticate, ask an actor,
// answer. Everything that decides lives in the actors.
#include "actors/auth.hpp"
#include "common/mime.hpp"
#include "http/context.hpp"
#include "http/problem.hpp"
#include "http/multipart.hpp"
#include "messages/json.hpp"
#include "messages/registration.hpp"
#include "common/json_limits.hpp"
#include "pipelines/pipeline.hpp"

namespace rookery::http {

namespace {

using restinio::request_handle_t;
using restinio::router::route_params_t;

bool valid_username(const std::string& u) {
  if (u.size() < 3 || u.size() > 64)
    return false;
  for (char c : u)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.')
      return false;
  return true;
}

/// Reads a string field; answers 400 and returns nullopt when missing.
std::optional<std::string> string_field(const ctx_ptr& ctx, const json& j, const char* name) {
  auto i = j.find(name);
  if (i == j.end() || !i->is_string()) {
    respond_problem(ctx, errc::bad_request, std::string{"field '"} + name + "' (string) is required");
    return std::nullopt;
  }
  return i->get<std::string>();
}

json principal_json(const principal& p) {
  return json{{"id", p.user_id},
              {"username", p.username},
              {"is_admin", p.is_admin},
              {"scopes", p.scopes},
              {"auth", p.key_id.empty() ? "session" : "api_key"},
              {"key_id", p.key_id.empty() ? json(nullptr) : json(p.key_id)}};
}

// -- accounts -----------------------------------------------------------------

struct credentials {
  json body;
  std::string username, password;
};

/// A {"username", "password"} body; answers 400 and returns nullopt otherwise.
std::optional<credentials> parse_credentials(const ctx_ptr& ctx) {
  auto body = parse_json_body(ctx);
  if (!body)
    return std::nullopt;
  auto username = string_field(ctx, *body, "username");
  if (!username)
    return std::nullopt;
  auto password = string_field(ctx, *body, "password");
  if (!password)
    return std::nullopt;
  return credentials{std::move(*body), std::move(*username), std::move(*password)};
}

void create_user(const std::shared_ptr<api>& a, const ctx_ptr& ctx) {
  auto cred = parse_credentials(ctx);
  if (!cred)
    return;
  const std::string username = cred->username;
  const std::string password = cred->password;
  if (!valid_username(username))
    return respond_problem(ctx, errc::bad_request,
                           "username must be 3-64 letters, digits, '_', '-' or '.'");
  if (password.size() < 8 || password.size() > 1024)
    return respond_problem(ctx, errc::bad_request, "password must be 8 to 1024 characters");
  auto flag = cred->body.find("is_admin");
  if (flag != cred->body.end() && !flag->is_boolean())
    return respond_problem(ctx, errc::bad_request, "'is_admin' must be true or false");
  bool want_admin = flag != cred->body.end() && flag->get<bool>();
  auto signup = [=](caf::event_based_actor* self, bool admin) {
    self->request(a->nodes.auth, a->timeout, signup_atom::value, username, password, admin)
      .then([=](user_record& u) { respond_json(ctx, 201, to_json(u)); },
            [=](caf::error& e) {
              auto f = to_failure(e);
              if (f.code == errc::conflict)
                respond_problem(ctx, errc::conflict, "username '" + username + "' is taken");
              else
                respond_error(ctx, e);
            });
  };
  bool has_credentials = ctx->req->header().has_field("X-API-Key")
                         || ctx->req->header().has_field(restinio::http_field::authorization);
  if (a->cfg.signup == "open" && !want_admin && !has_credentials)
    return with_actor(a, [=](caf::event_based_actor* self) { signup(self, false); });
  // Admin-only sign-up, or an admin creating another admin.
  with_principal(a, ctx, "", [=](caf::event_based_actor* self, const principal& who) {
    if (!who.is_admin || !has_scope(who, "admin")) {
      if (a->cfg.signup == "open" && !want_admin)
        return signup(self, false);
      return respond_problem(ctx, errc::forbidden, "only an admin can create this user");
    }
    signup(self, want_admin);
  });
}

void login(const std::shared_ptr<api>& a, const ctx_ptr& ctx) {
  auto cred = parse_credentials(ctx);
  if (!cred)
    return;
  auto client = ctx->req->remote_endpoint().address().to_string();
  with_actor(a, [=](caf::event_based_actor* self) {
    self->request(a->nodes.auth, a->timeout, login_atom::value, cred->username, cred->password,
                  client)
      .then(
        [=](login_result& r) {
          respond_json(ctx, 200, json{{"token", r.token},
                                      {"token_type", "Bearer"},
                                      {"expires_at", r.expires_at},
                                      {"session_id", r.session_id}});
        },
        [=](caf::error& e) { respond_error(ctx, e); });
  });
}

void logout(const std::shared_ptr<api>& a, const ctx_ptr& ctx) {
  auto auth = ctx->req->header().opt_value_of(restinio::http_field::authorization);
  std::string v = auth ? std::string{*auth} : std::string{};
  if (v.size() <= 7 || v.compare(0, 7, "Bearer ") != 0)
    return respond_problem(ctx, errc::unauthorized, "logout needs 'Authorization: Bearer <token>'");
  auto token = v.substr(7);
  with_actor(a, [=](caf::event_based_actor* self) {
    self->request(a->nodes.auth, a->timeout, logout_atom::value, token)
      .then([=](caf::ok_atom) { respond_empty(ctx, 204); },
            [=](caf::error& e) { respond_error(ctx, e); });
  });
}

// -- API keys -----------------------------------------------------------------

void create_key(const std::shared_ptr<api>& a, const ctx_ptr& ctx) {
  auto body = parse_json_body(ctx);
  if (!body)
    return;
  auto name = string_field(ctx, *body, "name");
  if (!name)
    return;
  std::vector<std::string> scopes;
  auto s = body->find("scopes");
  if (s == body->end() || !s->is_array())
    return respond_problem(ctx, errc::bad_request, "field 'scopes' (array of strings) is required");
  for (auto& x : *s) {
    if (!x.is_string())
      return respond_problem(ctx, errc::bad_request, "'scopes' must hold strings");
    scopes.push_back(x.get<std::string>());
  }
  int64_t expires_in = 0;
  if (auto e = body->find("expires_in_s"); e != body->end() && !e->is_null()) {
    // At most ten years: larger values would overflow expires_at (a key born
    // expired) and no client means them.
    constexpr int64_t kMaxKeyLifetime = 10LL * 36525 * 864; // 10 years of 365.25 days, in s
    if (!e->is_number_integer() || (!e->is_number_unsigned() && e->get<int64_t>() <= 0))
      return respond_problem(ctx, errc::bad_request, "'expires_in_s' must be a positive integer");
    if (e->is_number_unsigned() ? e->get<uint64_t>() > uint64_t(kMaxKeyLifetime)
                                : e->get<int64_t>() > kMaxKeyLifetime)
      return respond_problem(ctx, errc::bad_request,
                             "'expires_in_s' must be at most " + std::to_string(kMaxKeyLifetime)
                               + " (ten years)");
    expires_in = e->get<int64_t>();
  }
  with_principal(a, ctx, "", [=](caf::event_based_actor* self, const principal& who) {
    self->request(a->nodes.auth, a->timeout, caf::put_atom::value, key_atom::value, who, *name,
                  scopes, expires_in)
      .then(
        [=](new_key& k) {
          auto j = to_json(k.record);
          j["key"] = k.secret;
          respond_json(ctx, 201, j);
        },
        [=](caf::error& e) { respond_error(ctx, e); });
  });
}

void list_keys(const std::shared_ptr<api>& a, const ctx_ptr& ctx) {
  with_principal(a, ctx, "", [=](caf::event_based_actor* self, const principal& who) {
    self->request(a->nodes.auth, a->timeout, list_atom::value, key_atom::value, who)
      .then(
        [=](std::vector<key_record>& keys) {
          json arr = json::array();
          for (auto& k : keys)
            arr.push_back(to_json(k));
          respond_json(ctx, 200, json{{"keys", arr}});
        },
        [=](caf::error& e) { respond_error(ctx, e); });
  });
}

void delete_key(const std::shared_ptr<api>& a, const ctx_ptr& ctx, std::string id) {
  with_principal(a, ctx, "", [=](caf::event_based_actor* self, const principal& who) {
    self->request(a->nodes.auth, a->timeout, caf::delete_atom::value, key_atom::value, who, id)
      .then([=](caf::ok_atom) { respond_empty(ctx, 204); },
            [=](caf::error& e) {
              if (to_failure(e).code == errc::not_found)
                respond_problem(ctx, errc::not_found, "no API key '" + id + "'");
              else
                respond_error(ctx, e);
            });
  });
}

// -- pipelines and embeddings ---------------------------------------------------

void list_pipelines(const std::shared_ptr<api>& a, const ctx_ptr& ctx, std::string only) {
  with_principal(a, ctx, "", [=](caf::event_based_actor* self, const principal&) {
    self->request(a->nodes.embed, a->timeout, list_atom::value)
      .then(
        [=](std::vector<pipeline_info>& ps) {
          json arr = json::array();
          for (auto& p : ps) {
            if (!only.empty() && p.name == only)
              return respond_json(ctx, 200, to_json(p));
            arr.push_back(to_json(p));
          }
          if (!only.empty())
            return respond_problem(ctx, errc::not_found, "unknown pipeline '" + only + "'");
          // MIME type -> pipeline as uploads are routed: the pipelines' own
          // types (run-time ones over built-ins), then the configuration's.
          json mimes = json::object();
          for (int pass = 0; pass < 2; ++pass)
            for (auto& p : ps)
              if (p.builtin == (pass == 0))
                for (auto& m : p.mime_types)
                  mimes[m] = p.name;
          for (auto& [m, p] : a->cfg.mime_table)
            mimes[m] = p;
          respond_json(ctx, 200, json{{"pipelines", arr}, {"mime_table", mimes}});
        },
        [=](caf::error& e) { respond_error(ctx, e); });
  });
}

/// One upload to embed: the raw body, or one part of a multipart form.
struct upload {
  std::string part; // the form field's name ("" for a raw body)
  std::string data;
};

/// The uploads of a request: the raw body; or every part of a multipart form
/// that carries data, in order (a form of several files is a batch). A form
/// field named "pipeline" is not an upload: it names the pipeline.
std::optional<std::vector<upload>> uploads_of(const ctx_ptr& ctx, std::string& pipeline_field) {
  if (!is_multipart(ctx->req))
    return std::vector<upload>{{"", ctx->req->body()}};
  auto parts = parse_form(ctx->req);
  if (!parts) {
    respond_problem(ctx, errc::bad_request, "malformed multipart body");
    return std::nullopt;
  }
  std::vector<upload> out;
  for (auto& p : *parts) {
    if (p.name == "pipeline" && p.filename.empty()) {
      pipeline_field = p.body;
      continue;
    }
    if (!p.body.empty())
      out.push_back({p.name, std::move(p.body)});
  }
  if (out.empty()) {
    respond_problem(ctx, errc::bad_request, "malformed multipart body: no part with data");
    return std::nullopt;
  }
  constexpr size_t kMaxBatch = 64;
  if (out.size() > kMaxBatch) {
    respond_problem(ctx, errc::payload_too_large, "a batch holds at most " + std::to_string(kMaxBatch)
                                                    + " files; this one has " + std::to_string(out.size()));
    return std::nullopt;
  }
  return out;
}

/// {"texts": [...]} is a batch of texts: one {"text"} item each, answered as
/// {"items"} in order like a multipart batch. False when it answered a problem.
bool split_texts(const ctx_ptr& ctx, std::vector<upload>& ups, bool& split) {
  const auto& body = ups.front().data;
  const auto start = body.find_first_not_of(" \t\r\n");
  if (start == std::string::npos || body[start] != '{' || body.find("\"texts\"") == std::string::npos)
    return true;
  std::string why;
  auto j = jsonx::parse_bounded(body, &why);
  if (!j || !j->is_object() || !j->contains("texts"))
    return true; // not this shape: the pipeline judges it
  const auto& texts = (*j)["texts"];
  if (!texts.is_array() || texts.empty()) {
    respond_problem(ctx, errc::bad_request, "'texts' must be a non-empty array of strings");
    return false;
  }
  constexpr size_t kMaxTexts = 64;
  if (texts.size() > kMaxTexts) {
    respond_problem(ctx, errc::payload_too_large, "a batch holds at most " + std::to_string(kMaxTexts)
                                                    + " texts; this one has " + std::to_string(texts.size()));
    return false;
  }
  std::vector<upload> out;
  for (size_t i = 0; i < texts.size(); ++i) {
    if (!texts[i].is_string()) {
      respond_problem(ctx, errc::bad_request, "texts[" + std::to_string(i) + "] is not a string");
      return false;
    }
    out.push_back({"texts[" + std::to_string(i) + "]", json{{"text", texts[i]}}.dump()});
  }
  ups = std::move(out);
  split = true;
  return true;
}

json problem_json(const failure& f) {
  return problem_document(http_status(f.code), to_string(f.code),
                          f.code == errc::internal ? "internal error" : without_server_paths(f.message));
}

void embed(const std::shared_ptr<api>& a, const ctx_ptr& ctx, std::string pipeline) {
  if (ctx->req->body().size() > a->cfg.max_body_bytes)
    return respond_problem(ctx, errc::payload_too_large,
                           "the body has " + std::to_string(ctx->req->body().size())
                             + " bytes; the limit is " + std::to_string(a->cfg.max_body_bytes));
  std::string field;
  auto ups = uploads_of(ctx, field);
  if (!ups)
    return;
  if (ups->size() == 1 && ups->front().data.empty())
    return respond_problem(ctx, errc::bad_request, "the body is empty: send the data to embed");
  bool texts_batch = false;
  if (ups->size() == 1 && !is_multipart(ctx->req) && !split_texts(ctx, *ups, texts_batch))
    return;
  if (pipeline.empty())
    pipeline = query_value(ctx->req, "pipeline");
  if (pipeline.empty())
    pipeline = field;
  auto async = query_value(ctx->req, "async");
  bool is_async = async == "true" || async == "1";
  const bool batch = ups->size() > 1 || texts_batch;
  if (batch && is_async)
    return respond_problem(ctx, errc::bad_request, "?async=true takes one upload, not a batch");
  auto data = std::make_shared<std::vector<upload>>(std::move(*ups));
  with_principal(a, ctx, "embed", [=](caf::event_based_actor* self, const principal& who) {
    auto request_for = [&](upload& u) {
      embed_request req;
      req.pipeline = pipeline;
      req.mime = sniff_mime(u.data);
      req.data = std::move(u.data);
      req.request_id = ctx->request_id;
      return req;
    };
    if (is_async) {
      self->request(a->nodes.jobs, a->timeout, submit_atom::value, who, request_for(data->front()))
        .then(
          [=](job_record& j) {
            respond_json(ctx, 202, json{{"id", j.id}, {"state", j.state},
                                        {"href", "/v1/jobs/" + j.id}});
          },
          [=](caf::error& e) { respond_error(ctx, e); });
      return;
    }
    if (!batch) {
      self->request(a->nodes.embed, a->timeout, request_for(data->front()))
        .then([=](embed_result& r) { respond_json(ctx, 200, to_json(r)); },
              [=](caf::error& e) { respond_error(ctx, e); });
      return;
    }
    // A batch: every part on its own (each picks its pipeline by its type
    // unless one is named), answered in order; a bad part fails alone.
    auto items = std::make_shared<std::vector<json>>(data->size());
    auto left = std::make_shared<size_t>(data->size());
    auto finish = [=] {
      if (--*left == 0)
        respond_json(ctx, 200, json{{"items", *items}});
    };
    for (size_t i = 0; i < data->size(); ++i) {
      auto part = (*data)[i].part;
      self->request(a->nodes.embed, a->timeout, request_for((*data)[i]))
        .then(
          [=](embed_result& r) {
            auto j = to_json(r);
            j["part"] = part;
            j["status"] = 200;
            (*items)[i] = std::move(j);
            finish();
          },
          [=](caf::error& e) {
            auto j = problem_json(to_failure(e));
            j["part"] = part;
            (*items)[i] = std::move(j);
            finish();
          });
    }
  });
}

/// POST /v1/pipelines (admin): {"name", "ops", "mime_types"?} -> 201.
void add_pipeline(const std::shared_ptr<api>& a, const ctx_ptr& ctx) {
  auto body = parse_json_body(ctx);
  if (!body)
    return;
  auto def = parse_pipeline_def(jsonx::dump(*body));
  if (!def)
    return respond_problem(ctx, def.error().code, def.error().message);
  // Checked here too, so a bad chain answers 400 before anyone is asked.
  if (auto c = compiled_pipeline::compile(*def, pipeline_limits{}); !c)
    return respond_problem(ctx, c.error().code, c.error().message);
  pipeline_spec_msg spec{def->name, def->ops_json, def->mime_types};
  with_principal(a, ctx, "admin", [=](caf::event_based_actor* self, const principal& who) {
    if (!who.is_admin)
      return respond_problem(ctx, errc::forbidden, "only admins add pipelines");
    self->request(a->nodes.embed, import_timeout(a), caf::put_atom::value, spec)
      .then([=](pipeline_info& p) { respond_json(ctx, 201, to_json(p)); },
            [=](caf::error& e) { respond_error(ctx, e); });
  });
}

void remove_pipeline(const std::shared_ptr<api>& a, const ctx_ptr& ctx, std::string name) {
  with_principal(a, ctx, "admin", [=](caf::event_based_actor* self, const principal& who) {
    if (!who.is_admin)
      return respond_problem(ctx, errc::forbidden, "only admins remove pipelines");
    self->request(a->nodes.embed, a->timeout, caf::delete_atom::value, name)
      .then([=](caf::ok_atom) { respond_empty(ctx, 204); },
            [=](caf::error& e) { respond_error(ctx, e); });
  });
}

// -- jobs -------------------------------------------------------------------------

void list_jobs(const std::shared_ptr<api>& a, const ctx_ptr& ctx) {
  with_principal(a, ctx, "", [=](caf::event_based_actor* self, const principal& who) {
    self->request(a->nodes.jobs, a->timeout, list_atom::value, who)
      .then(
        [=](std::vector<job_record>& jobs) {
          json arr = json::array();
          for (auto& j : jobs) {
            auto v = to_json(j);
            v.erase("result"); // listings stay small; GET /v1/jobs/{id} has it
            arr.push_back(v);
          }
          respond_json(ctx, 200, json{{"jobs", arr}});
        },
        [=](caf::error& e) { respond_error(ctx, e); });
  });
}

void get_job(const std::shared_ptr<api>& a, const ctx_ptr& ctx, std::string id) {
  with_principal(a, ctx, "", [=](caf::event_based_actor* self, const principal& who) {
    self->request(a->nodes.jobs, a->timeout, caf::get_atom::value, who, id)
      .then([=](job_record& j) { respond_json(ctx, 200, to_json(j)); },
            [=](caf::error& e) { respond_error(ctx, e); });
  });
}

void cancel_job(const std::shared_ptr<api>& a, const ctx_ptr& ctx, std::string id) {
  with_principal(a, ctx, "", [=](caf::event_based_actor* self, const principal& who) {
    self->request(a->nodes.jobs, a->timeout, cancel_atom::value, who, id)
      .then([=](job_record& j) { respond_json(ctx, 200, to_json(j)); },
            [=](caf::error& e) { respond_error(ctx, e); });
  });
}

} // namespace

std::string query_value(const restinio::request_handle_t& req, const char* name) {
  try {
    auto qp = restinio::parse_query(req->header().query());
    if (qp.has(name))
      return std::string{qp[name]};
  } catch (const std::exception&) {
  }
  return {};
}

void add_route(router_t& r, const std::shared_ptr<api>& a, restinio::http_method_id_t method,
               const char* path, route_fn fn) {
  std::string p = path;
  r.add_handler(method, path, [a, p, fn](request_handle_t req, route_params_t params) {
    auto ctx = make_ctx(req, p);
    try {
      fn(a, ctx, params);
    } catch (...) { // a bug of ours: answer, never drop the connection
      respond_problem(ctx, errc::internal, "internal error");
    }
    return restinio::request_accepted();
  });
}

void register_v1_routes(router_t& r, const std::shared_ptr<api>& a) {
  auto route = [&](restinio::http_method_id_t method, const char* path, route_fn fn) {
    add_route(r, a, method, path, std::move(fn));
  };
  route(restinio::http_method_post(), "/v1/users", [](auto a, auto c, auto&) { create_user(a, c); });
  route(restinio::http_method_post(), "/v1/auth/login", [](auto a, auto c, auto&) { login(a, c); });
  route(restinio::http_method_post(), "/v1/auth/logout", [](auto a, auto c, auto&) { logout(a, c); });
  route(restinio::http_method_get(), "/v1/auth/me", [](auto a, auto c, auto&) {
    with_principal(a, c, "", [c](caf::event_based_actor*, const principal& who) {
      respond_json(c, 200, principal_json(who));
    });
  });
  route(restinio::http_method_post(), "/v1/keys", [](auto a, auto c, auto&) { create_key(a, c); });
  route(restinio::http_method_get(), "/v1/keys", [](auto a, auto c, auto&) { list_keys(a, c); });
  route(restinio::http_method_delete(), "/v1/keys/:id", [](auto a, auto c, auto& p) {
    delete_key(a, c, std::string{p["id"]});
  });
  route(restinio::http_method_get(), "/v1/pipelines", [](auto a, auto c, auto&) { list_pipelines(a, c, ""); });
  route(restinio::http_method_get(), "/v1/pipelines/:name", [](auto a, auto c, auto& p) {
    list_pipelines(a, c, std::string{p["name"]});
  });
  route(restinio::http_method_post(), "/v1/pipelines", [](auto a, auto c, auto&) { add_pipeline(a, c); });
  route(restinio::http_method_delete(), "/v1/pipelines/:name", [](auto a, auto c, auto& p) {
    remove_pipeline(a, c, std::string{p["name"]});
  });
  route(restinio::http_method_post(), "/v1/pipelines/:name/embed", [](auto a, auto c, auto& p) {
    embed(a, c, std::string{p["name"]});
  });
  route(restinio::http_method_post(), "/v1/embed", [](auto a, auto c, auto&) { embed(a, c, ""); });
  route(restinio::http_method_get(), "/v1/jobs", [](auto a, auto c, auto&) { list_jobs(a, c); });
  route(restinio::http_method_get(), "/v1/jobs/:id", [](auto a, auto c, auto& p) {
    get_job(a, c, std::string{p["id"]});
  });
  route(restinio::http_method_delete(), "/v1/jobs/:id", [](auto a, auto c, auto& p) {
    cancel_job(a, c, std::string{p["id"]});
  });
}

} // namespace rookery::http

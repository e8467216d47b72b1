// The model repository over HTTP (/v1/models) and the Open Inference Protocol
// (KServe v2) for every model in it (/v2/...).
#include <filesystem>

#include "actors/auth.hpp"
#include "common/json_limits.hpp"
#include "http/context.hpp"
#include "http/multipart.hpp"
#include "messages/json.hpp"
#include "messages/registration.hpp"

namespace fs = std::filesystem;

namespace rookery::http {

namespace {

// -- Open Inference Protocol answers: {"error": "..."} on failure --------------

void oip_error(const ctx_ptr& ctx, int status, const std::string& msg) {
  respond_json(ctx, status, json{{"error", msg}});
}

void oip_error(const ctx_ptr& ctx, const caf::error& e) {
  auto f = to_failure(e);
  int status = http_status(f.code);
  if (f.code == errc::internal)
    return oip_error(ctx, status, "internal error; the server log has the details under request id "
                                    + ctx->request_id);
  oip_error(ctx, status == 422 ? 400 : status,
            f.message.empty() ? "error" : without_server_paths(f.message));
}

/// The models served here; 503 on a gateway (models live on workers).
bool has_models(const std::shared_ptr<api>& a, const ctx_ptr& ctx, bool oip) {
  if (a->nodes.models)
    return true;
  auto msg = std::string{"this node (role "} + a->nodes.role + ") serves no models";
  if (oip)
    oip_error(ctx, 503, msg);
  else
    respond_problem(ctx, errc::unavailable, msg);
  return false;
}

/// Flattens OIP "data" (flat or nested arrays of numbers) into `out`.
bool flatten(const json& j, std::vector<float>& out) {
  if (j.is_number()) {
    out.push_back(j.get<float>());
    return true;
  }
  if (!j.is_array())
    return false;
  for (auto& x : j)
    if (!flatten(x, out))
      return false;
  return true;
}

void infer(const std::shared_ptr<api>& a, const ctx_ptr& ctx, const std::string& name) {
  if (!has_models(a, ctx, true))
    return;
  if (ctx->req->body().size() > a->cfg.max_body_bytes)
    return oip_error(ctx, 413, "the body is larger than max_body_bytes ("
                                 + std::to_string(a->cfg.max_body_bytes) + ")");
  std::string why;
  auto parsed = jsonx::parse_bounded(ctx->req->body(), &why, jsonx::kMaxDepth, a->cfg.max_body_bytes);
  if (!parsed)
    return oip_error(ctx, 400, why);
  if (!parsed->is_object())
    return oip_error(ctx, 400, "the body is not a valid JSON object");
  auto& body = *parsed;
  auto inputs = body.find("inputs");
  if (inputs == body.end() || !inputs->is_array() || inputs->size() != 1)
    return oip_error(ctx, 400, "'inputs' must be an array with exactly one tensor");
  auto& in = (*inputs)[0];
  if (!in.is_object() || !in.contains("shape") || !in["shape"].is_array())
    return oip_error(ctx, 400, "the input needs 'name', 'shape', 'datatype' and 'data'");
  if (in.value("datatype", "") != "FP32")
    return oip_error(ctx, 400, "only datatype FP32 is supported, got '"
                                 + (in.contains("datatype") ? in["datatype"].dump() : "") + "'");
  tensor_msg t;
  for (auto& d : in["shape"]) {
    if (!d.is_number_integer() || d.get<int64_t>() <= 0)
      return oip_error(ctx, 400, "'shape' must hold positive integers");
    t.shape.push_back(d.get<int64_t>());
  }
  if (t.shape.size() == 3)
    t.shape.insert(t.shape.begin(), 1);
  if (t.shape.size() != 4)
    return oip_error(ctx, 400, "the input shape must be [N, C, H, W] or [C, H, W]");
  if (!in.contains("data") || !flatten(in["data"], t.data))
    return oip_error(ctx, 400, "'data' must be an array of numbers");
  int64_t expect = 1;
  for (auto d : t.shape)
    expect *= d;
  if (static_cast<int64_t>(t.data.size()) != expect)
    return oip_error(ctx, 400, "'data' has " + std::to_string(t.data.size())
                                 + " values but the shape needs " + std::to_string(expect));
  std::string out_name = "output";
  if (auto outs = body.find("outputs"); outs != body.end() && outs->is_array() && !outs->empty())
    out_name = (*outs)[0].value("name", out_name);
  std::string id = body.contains("id") && body["id"].is_string() ? body["id"].get<std::string>() : "";
  auto input_name = in.value("name", "input");
  with_principal(a, ctx, "embed", [=](caf::event_based_actor* self, const principal&) {
    self->request(a->nodes.models, a->timeout, infer_atom::value, name, t)
      .then(
        [=](tensor_msg& out) {
          self->request(a->nodes.models, a->timeout, info_atom::value, name)
            .then(
              [=](model_meta& meta) {
                json r{{"model_name", name},
                       {"model_version", std::to_string(meta.version)},
                       {"outputs", json::array({{{"name", out_name},
                                                 {"datatype", "FP32"},
                                                 {"shape", out.shape},
                                                 {"data", out.data}}})}};
                if (!id.empty())
                  r["id"] = id;
                respond_json(ctx, 200, r);
              },
              [=](caf::error& e) { oip_error(ctx, e); });
        },
        [=](caf::error& e) { oip_error(ctx, e); });
  });
}

void model_metadata(const std::shared_ptr<api>& a, const ctx_ptr& ctx, const std::string& name,
                    bool ready_only) {
  if (!has_models(a, ctx, true))
    return;
  with_principal(a, ctx, "", [=](caf::event_based_actor* self, const principal&) {
    self->request(a->nodes.models, a->timeout, info_atom::value, name)
      .then(
        [=](model_meta& m) {
          if (ready_only) {
            if (m.ready)
              respond_json(ctx, 200, json{{"name", name}, {"ready", true}});
            else
              oip_error(ctx, 400, "model '" + name + "' is not ready: " + m.status);
            return;
          }
          std::vector<int64_t> in{-1}, out{-1};
          in.insert(in.end(), m.input_shape.begin(), m.input_shape.end());
          out.insert(out.end(), m.output_shape.begin(), m.output_shape.end());
          respond_json(ctx, 200,
                       json{{"name", name},
                            {"versions", json::array({std::to_string(m.version)})},
                            {"platform", m.format == "torchscript" ? "pytorch_torchscript"
                                                                   : "pytorch_libtorch"},
                            {"inputs", json::array({{{"name", "input"},
                                                     {"datatype", "FP32"},
                                                     {"shape", in}}})},
                            {"outputs", json::array({{{"name", "output"},
                                                      {"datatype", "FP32"},
                                                      {"shape", out}}})}});
        },
        [=](caf::error& e) { oip_error(ctx, e); });
  });
}

// -- /v1/models ------------------------------------------------------------------

void upload_model(const std::shared_ptr<api>& a, const ctx_ptr& ctx) {
  if (!has_models(a, ctx, false))
    return;
  auto form = read_upload_form(a, ctx,
                               "upload models as multipart/form-data with fields name, arch, "
                               "format, options and preprocess (optional) and the file part 'weights'",
                               {"name", "arch", "weights"});
  if (!form)
    return;
  auto& fields = *form;
  auto weights = std::make_shared<std::string>(std::move(fields["weights"]));
  model_import req{fields["name"], fields["arch"], fields["format"], "", fields["options"],
                   fields["preprocess"]};
  // Optional JSON parts: model options (e.g. {"num_classes": 10}) and preprocessing.
  for (auto f : {"options", "preprocess"})
    if (!fields[f].empty()) {
      auto j = jsonx::parse_bounded(fields[f]);
      if (!j || !j->is_object())
        return respond_problem(ctx, errc::bad_request,
                               std::string{"the '"} + f + "' part must be a JSON object");
    }
  with_principal(a, ctx, "admin", [=](caf::event_based_actor* self, const principal&) {
    // The upload goes to a file the import copies from; removed afterwards.
    auto path = save_upload(a, ctx, *weights, "upload_");
    if (!path)
      return;
    auto r = req;
    r.weights_path = *path;
    self->request(a->nodes.models, import_timeout(a), caf::put_atom::value, r)
      .then(
        [=](model_meta& m) {
          std::error_code ec;
          fs::remove(*path, ec);
          respond_json(ctx, 201, to_json(m));
        },
        [=](caf::error& e) {
          std::error_code ec;
          fs::remove(*path, ec);
          respond_error(ctx, e);
        });
  });
}

} // namespace

void register_model_routes(router_t& r, const std::shared_ptr<api>& a) {
  auto get = restinio::http_method_get();
  auto post = restinio::http_method_post();
  add_route(r, a, get, "/v1/models", [](auto a, auto ctx, auto&) {
    if (!has_models(a, ctx, false))
      return;
    with_principal(a, ctx, "", [=](caf::event_based_actor* self, const principal&) {
      self->request(a->nodes.models, a->timeout, list_atom::value)
        .then(
          [=](std::vector<model_meta>& ms) {
            json arr = json::array();
            for (auto& m : ms)
              arr.push_back(to_json(m));
            respond_json(ctx, 200, json{{"models", arr}});
          },
          [=](caf::error& e) { respond_error(ctx, e); });
    });
  });
  add_route(r, a, post, "/v1/models", [](auto a, auto ctx, auto&) { upload_model(a, ctx); });
  add_route(r, a, restinio::http_method_delete(), "/v1/models/:name", [](auto a, auto ctx, auto& p) {
    if (!has_models(a, ctx, false))
      return;
    std::string name{p["name"]};
    with_principal(a, ctx, "admin", [=](caf::event_based_actor* self, const principal&) {
      self->request(a->nodes.models, a->timeout, caf::delete_atom::value, name)
        .then([=](caf::ok_atom) { respond_empty(ctx, 204); },
              [=](caf::error& e) { respond_error(ctx, e); });
    });
  });
  // Open Inference Protocol.
  add_route(r, a, get, "/v2", [](auto, auto ctx, auto&) {
    respond_json(ctx, 200, json{{"name", "rookery"}, {"version", "0.1.0"}, {"extensions", json::array()}});
  });
  add_route(r, a, get, "/v2/health/live", [](auto, auto ctx, auto&) {
    respond_json(ctx, 200, json{{"live", true}});
  });
  add_route(r, a, get, "/v2/health/ready", [](auto a, auto ctx, auto&) {
    respond_json(ctx, a->nodes.models ? 200 : 503, json{{"ready", static_cast<bool>(a->nodes.models)}});
  });
  add_route(r, a, get, "/v2/models/:name", [](auto a, auto ctx, auto& p) {
    model_metadata(a, ctx, std::string{p["name"]}, false);
  });
  add_route(r, a, get, "/v2/models/:name/ready", [](auto a, auto ctx, auto& p) {
    model_metadata(a, ctx, std::string{p["name"]}, true);
  });
  add_route(r, a, post, "/v2/models/:name/infer", [](auto a, auto ctx, auto& p) {
    infer(a, ctx, std::string{p["name"]});
  });
}

} // namespace rookery::http

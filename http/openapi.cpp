// The OpenAPI 3.0 description of every route, served at /v1/openapi.json.
#include "http/context.hpp"

namespace rookery::http {

namespace {

json problem_ref() {
  return {{"content", {{"application/problem+json", {{"schema", {{"$ref", "#/components/schemas/Problem"}}}}}}}};
}

json op(const std::string& summary, const std::vector<int>& errors, bool auth = true,
        json ok = json{{"description", "OK"}}, int ok_code = 200) {
  json o{{"summary", summary}, {"responses", json::object()}};
  o["responses"][std::to_string(ok_code)] = ok;
  for (int e : errors) {
    auto r = problem_ref();
    r["description"] = "Problem";
    o["responses"][std::to_string(e)] = r;
  }
  if (!auth)
    o["security"] = json::array();
  return o;
}

json body_schema(const json& props, const std::vector<std::string>& required) {
  return {{"required", true},
          {"content",
           {{"application/json",
             {{"schema", {{"type", "object"}, {"properties", props}, {"required", required}}}}}}}};
}

json build() {
  json d;
  d["openapi"] = "3.0.3";
  d["info"] = {{"title", "Rookery"}, {"version", "1.0.0"},
               {"description", "Embedding and training server built on actors."}};
  d["components"]["securitySchemes"] = {
    {"bearer", {{"type", "http"}, {"scheme", "bearer"}}},
    {"apiKey", {{"type", "apiKey"}, {"in", "header"}, {"name", "X-API-Key"}}}};
  d["security"] = json::array({{{"bearer", json::array()}}, {{"apiKey", json::array()}}});
  d["components"]["schemas"]["Problem"] = {
    {"type", "object"},
    {"properties",
     {{"type", {{"type", "string"}}}, {"title", {{"type", "string"}}},
      {"status", {{"type", "integer"}}}, {"detail", {{"type", "string"}}},
      {"instance", {{"type", "string"}}}, {"request_id", {{"type", "string"}}}}}};
  d["components"]["schemas"]["Embedding"] = {
    {"type", "object"},
    {"properties",
     {{"pipeline", {{"type", "string"}}}, {"mime", {{"type", "string"}}},
      {"model", {{"type", "string"}}}, {"dim", {{"type", "integer"}}},
      {"embedding", {{"type", "array"}, {"items", {{"type", "number"}}}}}}}};
  d["components"]["schemas"]["Job"] = {
    {"type", "object"},
    {"properties",
     {{"id", {{"type", "string"}}},
      {"state", {{"type", "string"},
                 {"enum", {"queued", "running", "succeeded", "failed", "cancelled"}}}},
      {"result", {{"$ref", "#/components/schemas/Embedding"}}}}}};
  auto& p = d["paths"];
  json cred{{"username", {{"type", "string"}}}, {"password", {{"type", "string"}}}};
  p["/v1/users"]["post"] = op("Register a user (open or admin-only sign-up)", {400, 401, 403, 409},
                              false, {{"description", "Created"}}, 201);
  p["/v1/users"]["post"]["requestBody"] = body_schema(cred, {"username", "password"});
  p["/v1/auth/login"]["post"] = op("Log in: returns a bearer token", {400, 401, 429}, false);
  p["/v1/auth/login"]["post"]["requestBody"] = body_schema(cred, {"username", "password"});
  p["/v1/auth/logout"]["post"] = op("End the session of this bearer token", {401}, true,
                                    {{"description", "No Content"}}, 204);
  p["/v1/auth/me"]["get"] = op("Who the credential belongs to", {401});
  p["/v1/keys"]["post"] = op("Create an API key; the secret is shown once", {400, 401, 403}, true,
                             {{"description", "Created"}}, 201);
  p["/v1/keys"]["post"]["requestBody"] = body_schema(
    {{"name", {{"type", "string"}}},
     {"scopes", {{"type", "array"}, {"items", {{"type", "string"}, {"enum", {"embed", "train", "admin"}}}}}},
     {"expires_in_s", {{"type", "integer"}}}},
    {"name", "scopes"});
  p["/v1/keys"]["get"] = op("List your API keys", {401});
  p["/v1/keys/{id}"]["delete"] = op("Revoke an API key", {401, 404}, true,
                                    {{"description", "No Content"}}, 204);
  p["/v1/pipelines"]["get"] = op("Pipelines, their MIME types, models and readiness", {401, 503});
  p["/v1/pipelines/{name}"]["get"] = op("One pipeline: its operator chain, MIME types, model, dim, weights",
                                        {401, 404, 503});
  p["/v1/pipelines"]["post"] = op("Add a pipeline (admin): {name, ops: [{op, ...}], mime_types?}",
                                  {400, 401, 403, 404, 409, 422, 503, 504}, true,
                                  {{"description", "Created: the pipeline"}}, 201);
  p["/v1/pipelines/{name}"]["delete"] = op("Remove a pipeline added at run time (admin)",
                                           {401, 403, 404}, true, {{"description", "No Content"}}, 204);
  json embed_body{{"required", true},
                  {"content", {{"application/octet-stream", {{"schema", {{"type", "string"}, {"format", "binary"}}}}},
                               {"multipart/form-data", {{"schema", {{"type", "object"}}}}},
                               {"text/plain", {{"schema", {{"type", "string"}}}}},
                               {"application/json", {{"schema", {{"type", "object"},
                                 {"description", "{text}, {texts: [...]} (at most 64) or a series"}}}}}}}};
  json embed_ok{{"description", "The embedding"},
                {"content", {{"application/json", {{"schema", {{"$ref", "#/components/schemas/Embedding"}}}}}}}};
  p["/v1/embed"]["post"] = op("Embed raw bytes; the type is sniffed (?pipeline= overrides, ?async=true makes a job). "
                              "A multipart body of several files, or JSON {texts: [...]}, is a batch: "
                              "{items: [{part, status, ...}]} in order",
                              {400, 401, 403, 404, 413, 415, 429, 503, 504}, true, embed_ok);
  p["/v1/embed"]["post"]["requestBody"] = embed_body;
  p["/v1/embed"]["post"]["parameters"] = json::array(
    {{{"name", "pipeline"}, {"in", "query"}, {"schema", {{"type", "string"}}}},
     {{"name", "async"}, {"in", "query"}, {"schema", {{"type", "boolean"}}}}});
  p["/v1/pipelines/{name}/embed"]["post"] = p["/v1/embed"]["post"];
  p["/v1/pipelines/{name}/embed"]["post"]["summary"] = "Embed through the named pipeline";
  p["/v1/jobs"]["get"] = op("List your jobs", {401});
  p["/v1/jobs/{id}"]["get"] = op("Poll a job", {401, 404}, true,
                                 {{"description", "The job"},
                                  {"content", {{"application/json", {{"schema", {{"$ref", "#/components/schemas/Job"}}}}}}}});
  p["/v1/jobs/{id}"]["delete"] = op("Cancel a job", {401, 404, 409});
  p["/v1/jobs"]["post"] = op("Submit a training job: {trainer: classifier|gan|autoencoder|rnn|timeseries|text, "
                             "dataset, model, task?, hyper, register?}", {400, 401, 403, 404, 503}, true,
                             {{"description", "Accepted: {id, state, href, events, artifacts}"}}, 202);
  p["/v1/jobs"]["post"]["requestBody"] = body_schema(
    {{"trainer", {{"type", "string"}, {"enum", {"classifier", "gan", "autoencoder", "rnn", "timeseries", "text"}}}},
     {"dataset", {{"type", "string"}}},
     {"task", {{"type", "object"}}},
     {"model", {{"oneOf", json::array({{{"type", "string"}}, {{"type", "object"}}})}}},
     {"hyper", {{"type", "object"}}},
     {"register", {{"type", "string"}}}},
    {"trainer", "dataset"});
  p["/v1/jobs/{id}/events"]["get"] = op("Server-sent events of a job: state, metrics, progress, "
                                        "artifact, end", {401, 404}, true,
                                        {{"description", "text/event-stream"}});
  p["/v1/jobs/{id}/artifacts"]["get"] = op("List a job's checkpoints, model, images and history", {401, 404});
  p["/v1/jobs/{id}/artifacts/{path}"]["get"] = op("Download one artifact", {401, 404});
  p["/v1/jobs/{id}/register"]["post"] = op("Register a succeeded training job's model and serve it "
                                           "as an embedding pipeline", {400, 401, 403, 404, 409, 422, 503},
                                           true, {{"description", "Created"}}, 201);
  p["/v1/jobs/{id}/register"]["post"]["requestBody"] = body_schema({{"name", {{"type", "string"}}}}, {"name"});
  p["/v1/jobs/{id}/resume"]["post"] = op("Resume a cancelled or failed training job from its last "
                                         "checkpoint", {401, 403, 404, 409}, true,
                                         {{"description", "Accepted"}}, 202);
  p["/v1/datasets"]["get"] = op("Data sets: built-in (fashion-mnist, fortunes, synthetic-control, statsmodels' series) and your uploads", {401});
  p["/v1/datasets"]["post"] = op("Upload a data set: multipart name, file (tar/zip of class "
                                 "folders, CSV, UCR .tsv or UEA .ts), format?, image_size?, channels?, test_fraction?",
                                 {400, 401, 403, 409, 413, 415}, true, {{"description", "Created"}}, 201);
  p["/v1/datasets/{name}"]["get"] = op("One data set", {401, 404});
  p["/v1/datasets/{name}"]["delete"] = op("Remove an uploaded data set", {401, 403, 404}, true,
                                          {{"description", "No Content"}}, 204);
  p["/v1/models"]["get"] = op("Models in the repository", {401});
  p["/healthz"]["get"] = op("Liveness", {}, false);
  p["/readyz"]["get"] = op("Readiness: a pipeline can serve", {503}, false);
  p["/metrics"]["get"] = op("Prometheus metrics", {}, false);
  p["/v1/openapi.json"]["get"] = op("This document", {}, false);
  for (auto& [path, methods] : p.items())
    for (auto& [m, o] : methods.items()) {
      json params = o.value("parameters", json::array());
      for (auto pos = path.find('{'); pos != std::string::npos; pos = path.find('{', pos + 1)) {
        auto name = path.substr(pos + 1, path.find('}', pos) - pos - 1);
        params.push_back({{"name", name}, {"in", "path"}, {"required", true},
                          {"schema", {{"type", "string"}}}});
      }
      if (!params.empty())
        o["parameters"] = params;
    }
  return d;
}

} // namespace

const json& openapi_document() {
  static const json doc = build();
  return doc;
}

} // namespace rookery::http

#include "messages/json.hpp"

#include <nlohmann/json.hpp>

namespace rookery {

using nlohmann::json;

json to_json(const embed_result& r) {
  json j{{"pipeline", r.pipeline}, {"mime", r.mime}, {"model", r.model}};
  // A pipeline that answers no single vector (faces: a list of faces, each
  // with its own) has its fields in extra_json only.
  if (!r.embedding.empty() || r.extra_json.empty()) {
    j["dim"] = r.dim;
    j["embedding"] = r.embedding;
  }
  j["timing_ms"] = {{"queue", r.queue_ms}, {"compute", r.compute_ms}};
  if (!r.node.empty())
    j["node"] = r.node; // the worker that computed it (gateway only)
  if (!r.extra_json.empty()) { // a video's "segments" and "frames", ...
    auto extra = json::parse(r.extra_json, nullptr, false);
    if (extra.is_object())
      for (auto it = extra.begin(); it != extra.end(); ++it)
        j[it.key()] = it.value();
  }
  return j;
}

json to_json(const pipeline_info& p) {
  auto ops = json::parse(p.ops_json.empty() ? "[]" : p.ops_json, nullptr, false);
  auto inference = json::parse(p.inference_json.empty() ? "null" : p.inference_json, nullptr, false);
  return json{{"name", p.name},
              {"inference", inference.is_object() ? inference : json(nullptr)},
              {"kind", p.kind},
              {"ops", ops.is_array() ? ops : json::array()},
              {"mime_types", p.mime_types},
              {"model", p.model},
              {"dim", p.dim},
              {"ready", p.ready},
              {"pretrained", p.pretrained},
              {"weights", p.weights},
              {"builtin", p.builtin},
              {"status", p.status},
              {"replicas", p.replicas}};
}

json to_json(const key_record& k) {
  json j{{"id", k.id},           {"name", k.name},         {"scopes", k.scopes},
         {"prefix", k.prefix},   {"created_at", k.created_at}};
  j["expires_at"] = k.expires_at != 0 ? json(k.expires_at) : json(nullptr);
  return j;
}

json to_json(const user_record& u) {
  return json{{"id", u.id}, {"username", u.username}, {"is_admin", u.is_admin},
              {"created_at", u.created_at}};
}

json to_json(const job_record& j) {
  json out{{"id", j.id},
           {"kind", j.kind},
           {"state", j.state},
           {"progress", j.progress},
           {"created_at", j.created_at},
           {"started_at", j.started_at != 0 ? json(j.started_at) : json(nullptr)},
           {"finished_at", j.finished_at != 0 ? json(j.finished_at) : json(nullptr)},
           // The node that holds (or last held) the job; null while it waits for one.
           {"node", j.owner.empty() ? json(nullptr) : json(j.owner)}};
  if (!j.spec_json.empty())
    out["spec"] = json::parse(j.spec_json, nullptr, false);
  if (!j.result_json.empty())
    out["result"] = json::parse(j.result_json, nullptr, false);
  if (!j.error.empty())
    out["error"] = j.error;
  if (!j.progress_json.empty()) {
    auto p = json::parse(j.progress_json, nullptr, false);
    if (p.is_object()) {
      if (auto m = p.find("metrics"); m != p.end()) {
        out["metrics"] = *m; // the latest value of every metric
        p.erase("metrics");
      }
      out["progress_detail"] = p;
    }
  }
  if (!j.history_json.empty())
    out["history"] = json::parse(j.history_json, nullptr, false);
  return out;
}

json to_json(const model_meta& m) {
  json j{{"name", m.name},     {"version", m.version}, {"arch", m.arch},
         {"format", m.format}, {"dim", m.dim},         {"ready", m.ready},
         {"status", m.status}};
  if (!m.weights.empty())
    j["weights"] = m.weights;
  if (m.builtin)
    j["builtin"] = true;
  if (!m.inference_json.empty())
    if (auto inf = json::parse(m.inference_json, nullptr, false); inf.is_object())
      j["inference"] = inf;
  return j;
}

json to_json(const model_record& m) {
  return json{{"name", m.name},     {"version", m.version}, {"arch", m.arch},
              {"format", m.format}, {"created_at", m.created_at},
              {"config", json::parse(m.config_json.empty() ? "{}" : m.config_json, nullptr, false)}};
}

} // namespace rookery

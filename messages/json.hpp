// JSON views of records and results, shared by the HTTP layer and the job
// manager (which keeps job results as JSON text).
#pragma once
#include <nlohmann/json_fwd.hpp>

#include "messages/protocol.hpp"

namespace rookery {

nlohmann::json to_json(const embed_result& r);
nlohmann::json to_json(const pipeline_info& p);
nlohmann::json to_json(const key_record& k);
nlohmann::json to_json(const user_record& u);
nlohmann::json to_json(const job_record& j);
nlohmann::json to_json(const model_record& m);
nlohmann::json to_json(const model_meta& m);

} // namespace rookery

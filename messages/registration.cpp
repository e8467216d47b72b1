#include "messages/registration.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/error.hpp>
#include <caf/make_message.hpp>
#include <caf/sec.hpp>

#include "messages/protocol.hpp"

namespace rookery {

namespace {
constexpr caf::atom_value kCategory = caf::atom("rookery");
}

void register_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<user_record>("rookery.user_record");
  cfg.add_message_type<principal>("rookery.principal");
  cfg.add_message_type<session_record>("rookery.session_record");
  cfg.add_message_type<key_record>("rookery.key_record");
  cfg.add_message_type<job_record>("rookery.job_record");
  cfg.add_message_type<model_record>("rookery.model_record");
  cfg.add_message_type<login_failures_record>("rookery.login_failures_record");
  cfg.add_message_type<tensor_msg>("rookery.tensor_msg");
  cfg.add_message_type<embedding_msg>("rookery.embedding_msg");
  cfg.add_message_type<embed_request>("rookery.embed_request");
  cfg.add_message_type<embed_result>("rookery.embed_result");
  cfg.add_message_type<pipeline_info>("rookery.pipeline_info");
  cfg.add_message_type<pipeline_spec_msg>("rookery.pipeline_spec_msg");
  cfg.add_message_type<model_pool>("rookery.model_pool");
  cfg.add_message_type<login_result>("rookery.login_result");
  cfg.add_message_type<model_meta>("rookery.model_meta");
  cfg.add_message_type<model_import>("rookery.model_import");
  cfg.add_message_type<new_key>("rookery.new_key");
  cfg.add_message_type<train_submit>("rookery.train_submit");
  cfg.add_message_type<train_event>("rookery.train_event");
  cfg.add_message_type<artifact_reply>("rookery.artifact_reply");
  cfg.add_message_type<dataset_record>("rookery.dataset_record");
  cfg.add_message_type<std::vector<dataset_record>>("rookery.dataset_records");
  cfg.add_message_type<dataset_upload>("rookery.dataset_upload");
  cfg.add_message_type<std::vector<std::string>>("rookery.strings");
  cfg.add_message_type<std::vector<int64_t>>("rookery.int64s");
  cfg.add_message_type<std::vector<float>>("rookery.floats");
  cfg.add_message_type<replica_actor>("rookery.replica_actor");
  cfg.add_message_type<embed_service_actor>("rookery.embed_service_actor");
  cfg.add_message_type<model_registry_actor>("rookery.model_registry_actor");
  cfg.add_message_type<trainer_host_actor>("rookery.trainer_host_actor");
  cfg.add_message_type<train_run>("rookery.train_run");
  cfg.add_error_category(kCategory, [](uint8_t code, caf::atom_value, const caf::message& ctx) {
    std::string s = "rookery.";
    s += to_string(static_cast<errc>(code));
    if (ctx.size() == 1 && ctx.match_element<std::string>(0)) {
      s += ": ";
      s += ctx.get_as<std::string>(0);
    }
    return s;
  });
}

caf::error to_error(errc code, std::string message) {
  return caf::error{static_cast<uint8_t>(code), kCategory, caf::make_message(std::move(message))};
}

caf::error to_error(const failure& f) {
  return to_error(f.code, f.message);
}

failure to_failure(const caf::error& err) {
  if (err.category() == kCategory) {
    std::string msg;
    const auto& ctx = err.context();
    if (ctx.size() == 1 && ctx.match_element<std::string>(0))
      msg = ctx.get_as<std::string>(0);
    return failure{static_cast<errc>(err.code()), msg};
  }
  if (err.category() == caf::atom("system")) {
    switch (static_cast<caf::sec>(err.code())) {
      case caf::sec::request_timeout:
        return failure{errc::timeout, "the request took longer than its time budget"};
      case caf::sec::request_receiver_down:
        return failure{errc::unavailable, "the actor serving this request is gone"};
      default:
        break;
    }
  }
  return failure{errc::internal, "internal error"};
}

} // namespace rookery

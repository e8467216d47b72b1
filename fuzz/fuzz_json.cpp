// libFuzzer target: the JSON request DTOs. Bounded parsing first (as every
// route does), then the plain validators the routes and the job spec use:
// model options, image preprocessing options, training hyper-parameters, the
// model choice, and the time-series task blocks (against a classification
// and a forecasting data set) and an exported input block.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/json_limits.hpp"
#include "models/zoo/zoo.hpp"
#include "datasets/series.hpp"
#include "pipelines/image.hpp"
#include "trainers/blocks.hpp"
#include "trainers/spec.hpp"
#include "trainers/trainer.hpp"

// trainer.cpp's end-of-run callback draws loss curves (trainers/images.cpp,
// not linked here); the fuzzer never trains, so it never draws.
bool rookery::train::save_curves(const std::map<std::string, std::vector<std::pair<double, double>>>&,
                                 const std::string&, const std::string&) {
  return false;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::string error;
  auto j = rookery::jsonx::parse_bounded(text, &error);
  // Answers are written with dump(): it must never throw, whatever the input.
  (void)rookery::jsonx::dump(nlohmann::json(text));
  (void)rookery::jsonx::sanitize_utf8(text);
  if (!j)
    return 0;
  (void)rookery::jsonx::dump(*j);
  const std::string canonical = j->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  (void)rookery::zoo::parse_model_options(canonical);
  (void)rookery::parse_image_options(canonical);
  if (j->is_object()) {
    (void)rookery::train::parse_hyper(*j);
    if (auto h = j->find("hyper"); h != j->end())
      (void)rookery::train::parse_hyper(*h);
    std::string arch, pretrained;
    nlohmann::json options;
    (void)rookery::train::read_model_choice(*j, arch, options, pretrained);
    static const auto classification = rookery::data::builtin_series_info("synthetic-control").value();
    static const auto forecasting = [] {
      rookery::data::dataset_info d;
      d.name = "fc";
      d.kind = "series_forecasting";
      d.columns = {"a", "b"};
      d.item_shape = {2, 300};
      return d;
    }();
    (void)rookery::train::parse_series_task(*j, classification);
    (void)rookery::train::parse_series_task(*j, forecasting);
    if (auto in = j->find("input"); in != j->end())
      if (auto b = rookery::train::series_block::from_json(*in); b)
        (void)b->encode({{1.0, 2.0, 3.0}});
  }
  return 0;
}

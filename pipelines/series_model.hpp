// Where the `series_model` operator finds the series models that finished
// time-series jobs registered (<data>/series-models/<name>/: series_model.json
// and model.pt, as trainers/timeseries_trainer.cpp exports them). The node
// sets it once at start; torch-free.
#pragma once
#include <string>

namespace rookery::pipe {

void set_series_models_dir(const std::string& dir);
std::string series_models_dir(); // "" until set

/// The same for the `text_model` operator: <data>/text-models/<name>/
/// (text_model.json, spm.model, model.pt; trainers/text_trainer.cpp). A
/// name not registered there is looked up among the built-in models
/// (the shipped "text-lm").
void set_text_models_dir(const std::string& dir);
std::string text_models_dir();

} // namespace rookery::pipe

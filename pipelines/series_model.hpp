// Where the `series_model` operator finds the series models that finished
// time-series jobs registered (<data>/series-models/<name>/: series_model.json
// and model.pt, as trainers/timeseries_trainer.cpp exports them). The node
// sets it once at start; torch-free.
#pragma once
#include <string>

namespace rookery::pipe {

void set_series_models_dir(const std::string& dir);
std::string series_models_dir(); // "" until set

} // namespace rookery::pipe

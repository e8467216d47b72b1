// The time-series trainer (spec "trainer": "timeseries"): classification of
// series_classification data sets and forecasting of series_forecasting
// ones, with the blocks of trainers/blocks.hpp.
//
// Job spec:
//   {"trainer": "timeseries", "dataset": "synthetic-control",
//    "task": {"input": {"block": "timeseries", "length": 60, "standardize": "per_channel"},
//             "target": {"block": "label"}},
//    "model": "inception_time" | "lstm" | "gru" | "minirocket"
//             | {"arch": ..., "options": {...}},
//    "hyper": {...common keys...}}
//
// Models: InceptionTime (residual, optional ensemble) and stacked LSTM/GRU
// (models/series_nets.hpp), trained end to end; MiniRocket (univariate):
// the fixed-kernel PPV features of models/minirocket.hpp, fitted on the
// training split, standardised, then a logistic (classification) or linear
// (forecasting) head trained by the loop; minirocket.features sets the
// count (default 9,996, the paper's ~10,000).
//
// Forecasting: windows of task.input.length points predict the next
// task.target.horizon values of task.target.column; the last
// max(2 x horizon, 20%) points are held out. Validation reports val_mae,
// val_mase (MAE over the in-sample seasonal-naive MAE, Hyndman and Koehler
// 2006) and val_mase_naive (the seasonal-naive forecast's own MASE on the
// same windows), so a model is judged against the baseline in the same run.
// Metrics (classification): loss, acc; val_loss, val_acc.
// Export: <dir>/model.pt and series_model.json (arch, options, the fitted
// input block, the target, classes); serves a series embedding (the
// features before the head).
#pragma once
#include <memory>

#include <nlohmann/json_fwd.hpp>

#include "trainers/trainer.hpp"

namespace rookery::train {

/// Checks the spec (task blocks against the data set, model, hyper keys);
/// loads nothing. bad_request naming the field.
result<std::unique_ptr<Trainer>> make_timeseries_trainer(const nlohmann::json& spec,
                                                         const data::dataset_info& ds,
                                                         const data::dataset_paths& paths);

} // namespace rookery::train

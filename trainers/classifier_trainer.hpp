// ClassifierTrainer: trains or fine-tunes an image classifier -- a zoo model
// (any torchvision family, optionally starting from a repository model's
// weights) or Rookery's small_cnn -- on an image_classification data set, with
// flips and padded random crops as augmentation.
//
// Job spec:
//   {"trainer": "classifier", "dataset": "fashion-mnist",
//    "model": "small_cnn" | {"arch": "resnet18", "options": {...},
//                             "pretrained": "<model repository name>"},
//    "hyper": {...common keys..., "hflip": true, "crop_padding": 2,
//              "label_smoothing": 0}}
// Metrics: loss, acc (train); val_loss, val_acc (test split).
// Serving: exports the model with its options and the preprocessing it was
// trained with; its forward_features (penultimate layer) is the embedding.
#pragma once
#include <memory>

#include <nlohmann/json_fwd.hpp>

#include "trainers/trainer.hpp"

namespace rookery::train {

/// Checks the spec (model, hyper keys) and the data set kind without loading
/// data. bad_request naming the field.
result<std::unique_ptr<Trainer>> make_classifier_trainer(const nlohmann::json& spec,
                                                         const data::dataset_info& ds,
                                                         const data::dataset_paths& paths);

} // namespace rookery::train

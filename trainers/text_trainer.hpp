// The text trainer (spec "trainer": "text"): ULMFiT's steps on
// text_classification data sets (fortunes, wordnet, uploads), with the text
// block of trainers/blocks.hpp and the AWD-LSTM of models/text_nets.hpp.
//
// Job spec:
//   {"trainer": "text", "dataset": "fortunes",
//    "task": {"input": {"block": "text", "vocab": 4000, "max_len": 256},
//             "target": {"block": "lm"} | {"block": "label"}},
//    "model": "awd_lstm" | {"arch": "awd_lstm", "options": {emb, hidden, layers,
//              embed_p, input_p, weight_p, hidden_p, output_p},
//              "pretrained": "text-lm" | <a registered text model>},
//    "hyper": {...common keys..., "bptt": 70, "drop_mult": 1,
//              "unfreeze": "gradual" | "none", "lr_decay": 2.6}}
//
// target lm: a language model trained with truncated BPTT. Each epoch the
//   training texts (seeded order, each as bos + its tokens) form one token
//   stream, split into batch_size parallel streams; step i reads bptt tokens
//   of every stream. The LSTM state is carried from step to step (detached)
//   and is part of the checkpoint, so a resume continues bit for bit.
//   Validation: val_loss, val_perplexity (exp of the mean token loss) and
//   val_acc (next-token accuracy) over the test texts' stream.
// target label: a classifier (the pooling head) on at most max_len tokens
//   per text, in length-sorted batches of a seeded order (fastai's sortish
//   sampler: less padding). With a pretrained model: its tokenizer and
//   encoder weights, gradual unfreezing (epoch 1 trains the head, each
//   further epoch unfreezes one more layer group from the top: the last
//   LSTM, ..., the embedding) and discriminative learning rates (group k
//   from the top at lr / lr_decay^k). From scratch: a tokenizer trained on
//   the training split and everything trained from the start at lr.
// Without a pretrained model the tokenizer is trained on the training texts
// (byte-level BPE, deterministic, so a resume rebuilds the same one).
// Export: <dir>/text_model.json, tokenizer.bpe and model.pt (see text_nets.hpp);
// serves a text embedding ([max, mean] of every encoder layer's outputs).
#pragma once
#include <memory>

#include <nlohmann/json_fwd.hpp>

#include "trainers/trainer.hpp"

namespace rookery::train {

/// Where a text model named `name` lives: <data>/text-models/<name> when a
/// job registered one, else the built-in one (text::builtin_text_model_dir: the
/// shipped "text-lm"). not_found when neither holds a text model.
result<std::string> find_text_model_dir(const data::dataset_paths& paths, const std::string& name);

/// Checks the spec (task blocks against the data set, model, hyper keys);
/// loads nothing. bad_request naming the field.
result<std::unique_ptr<Trainer>> make_text_trainer(const nlohmann::json& spec,
                                                   const data::dataset_info& ds,
                                                   const data::dataset_paths& paths);

} // namespace rookery::train

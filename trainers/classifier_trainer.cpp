#include "trainers/classifier_trainer.hpp"

#include <cmath>
#include <filesystem>

#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "datasets/datasets.hpp"
#include "models/repository.hpp"
#include "models/state_dict.hpp"
#include "models/zoo/zoo.hpp"
#include "trainers/spec.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace rookery::train {

namespace {

struct model_choice {
  std::string arch = "small_cnn";
  json options = json::object();
  std::string pretrained; // model repository name
};

class ClassifierTrainer : public Trainer {
public:
  ClassifierTrainer(hyper_params h, const json& spec, data::dataset_info ds,
                    data::dataset_paths paths, model_choice mc)
    : Trainer(std::move(h), spec), ds_(std::move(ds)), paths_(std::move(paths)),
      mc_(std::move(mc)) {
    const auto& hj = hyper_json();
    hflip_ = hj.value("hflip", true);
    crop_padding_ = hj.value("crop_padding", int64_t{2});
    label_smoothing_ = hj.value("label_smoothing", 0.0);
  }

  std::string kind() const override { return "classifier"; }

  status setup() override {
    auto data = data::load_images(ds_, {hyper_.limit_train, hyper_.limit_test, hyper_.seed});
    if (!data)
      return data.error();
    train_ = std::move(data->train);
    test_ = std::move(data->test);
    if (train_.size() < 2)
      return fail(errc::bad_request, "dataset '" + ds_.name + "' has fewer than 2 training images");
    channels_ = train_.images.size(1);
    height_ = train_.images.size(2);
    width_ = train_.images.size(3);
    // Per-channel statistics of the training images: the normalisation the
    // model is trained with, and exported for serving.
    auto f = train_.images.to(torch::kFloat32).div(255);
    mean_ = f.mean({0, 2, 3});
    std_ = f.transpose(0, 1).reshape({channels_, -1}).std(1).clamp_min(1e-3);

    auto opts = zoo::parse_model_options(mc_.options.dump());
    if (!opts)
      return opts.error();
    options_ = *opts;
    options_.in_channels = channels_;
    options_.num_classes = static_cast<int64_t>(train_.classes.size());
    // Families built for one input size: the training images' (MaxViT says
    // which sizes would do when this one does not suit it).
    if ((mc_.arch.rfind("vit", 0) == 0 || mc_.arch.rfind("maxvit", 0) == 0)
        && options_.image_size == 0)
      options_.image_size = height_;
    auto m = zoo::create_model(mc_.arch, options_);
    if (!m)
      return m.error();
    model_ = *m;
    if (!mc_.pretrained.empty()) {
      auto installed = find_installed_model(paths_.data_dir, mc_.pretrained);
      if (!installed)
        return fail(errc::not_found, "model.pretrained: no model '" + mc_.pretrained
                                       + "' in the model repository");
      if (installed->arch != mc_.arch)
        return fail(errc::bad_request, "model.pretrained: '" + mc_.pretrained + "' is a "
                                         + installed->arch + ", not a " + mc_.arch);
      int64_t ckpt_classes = 1000;
      auto cfg = json::parse(installed->config_json, nullptr, false);
      if (cfg.is_object() && cfg.contains("options") && cfg["options"].is_object())
        ckpt_classes = cfg["options"].value("num_classes", int64_t{1000});
      if (auto s = zoo::load_pretrained(*model_, installed->weights, options_, ckpt_classes); !s)
        return s.error();
      pretrained_from_ = installed->name + " v" + std::to_string(installed->version);
    }
    model_->to(device());
    mean_ = mean_.to(device());
    std_ = std_.to(device());
    opt_ = make_optimizer(model_->parameters(), hyper_);
    params_ = model_->parameters();
    return {};
  }

  int64_t steps_per_epoch() const override {
    auto n = train_.size(), bs = hyper_.batch_size;
    return n / bs + (n % bs >= 2 ? 1 : 0); // a last batch of one would upset BatchNorm
  }

  void train_mode() override { model_->train(); }

  metrics train_step(int64_t epoch, int64_t index) override {
    if (epoch != perm_epoch_) {
      perm_ = epoch_permutation(train_.size(), epoch);
      perm_epoch_ = epoch;
    }
    auto bs = hyper_.batch_size;
    auto idx = perm_.slice(0, index * bs, std::min((index + 1) * bs, train_.size()));
    auto x = train_.images.index_select(0, idx).to(torch::kFloat32).div_(255);
    auto y = train_.labels.index_select(0, idx);
    x = normalize(augment(x, epoch, index).to(device()));
    y = y.to(device());
    opt_->zero_grad();
    auto logits = model_->forward(x);
    auto loss = torch::nn::functional::cross_entropy(
      logits, y, torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(label_smoothing_));
    loss.backward();
    double gn = clip_and_step(*opt_, params_);
    metrics m{{"loss", loss.item<double>()},
              {"acc", logits.argmax(1).eq(y).to(torch::kFloat64).mean().item<double>()}};
    if (hyper_.clip_grad_norm > 0)
      m["grad_norm"] = gn;
    return m;
  }

  metrics validate() override {
    model_->eval();
    double loss = 0, correct = 0;
    int64_t n = test_.size();
    if (n == 0)
      return {};
    const int64_t bs = 500;
    int64_t seen = 0;
    for (int64_t i = 0; i < n; i += bs) {
      if (cancel_requested())
        break;
      auto x = normalize(
        test_.images.slice(0, i, std::min(i + bs, n)).to(device(), torch::kFloat32).div_(255));
      auto y = test_.labels.slice(0, i, std::min(i + bs, n)).to(device());
      auto logits = model_->forward(x);
      loss += torch::nn::functional::cross_entropy(
                logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                .item<double>();
      correct += logits.argmax(1).eq(y).sum().item<double>();
      seen += y.size(0);
    }
    if (seen == 0)
      return {};
    return {{"val_loss", loss / static_cast<double>(seen)},
            {"val_acc", correct / static_cast<double>(seen)}};
  }

  std::map<std::string, std::shared_ptr<torch::nn::Module>> modules() override {
    return {{"model", model_}};
  }
  std::map<std::string, torch::optim::Optimizer*> optimizers() override {
    return {{"opt", opt_.get()}};
  }

  result<exported_model> export_model(const std::string& dir) override {
    exported_model e;
    e.arch = mc_.arch;
    e.weights_path = (fs::path(dir) / "model.pt").string();
    model_->eval();
    if (auto s = save_module_weights(*model_, e.weights_path); !s)
      return s.error();
    e.options_json = zoo::model_options_json(options_);
    auto mean_cpu = mean_.to(torch::kCPU).contiguous(), std_cpu = std_.to(torch::kCPU).contiguous();
    std::vector<double> mean(mean_cpu.data_ptr<float>(), mean_cpu.data_ptr<float>() + channels_);
    std::vector<double> stdv(std_cpu.data_ptr<float>(), std_cpu.data_ptr<float>() + channels_);
    e.preprocess_json = json{{"resize", height_}, {"crop", height_}, {"channels", channels_},
                             {"mean", mean}, {"std", stdv}, {"classes", train_.classes}}
                          .dump();
    e.dim = static_cast<uint32_t>(model_->num_features());
    return e;
  }

private:
  torch::Tensor normalize(const torch::Tensor& x) const {
    return (x - mean_.view({1, -1, 1, 1})) / std_.view({1, -1, 1, 1});
  }

  /// Flips and padded random crops, drawn from a generator of (seed, epoch,
  /// index) so the batch does not depend on anything else running.
  torch::Tensor augment(torch::Tensor x, int64_t epoch, int64_t index) const {
    if (!hflip_ && crop_padding_ <= 0)
      return x;
    auto gen = at::detail::createCPUGenerator(hyper_.seed * 7919ULL + static_cast<uint64_t>(epoch) * 1000003ULL
                                              + static_cast<uint64_t>(index) + 17);
    const int64_t b = x.size(0);
    if (hflip_) {
      auto flip = torch::rand({b}, gen).lt(0.5).view({b, 1, 1, 1});
      x = torch::where(flip, x.flip({3}), x);
    }
    if (crop_padding_ > 0) {
      const int64_t p = crop_padding_, h = x.size(2), w = x.size(3);
      auto padded = torch::constant_pad_nd(x, {p, p, p, p}, 0);
      auto offs = torch::randint(0, 2 * p + 1, {b, 2}, gen, torch::kLong);
      auto acc = offs.accessor<int64_t, 2>();
      std::vector<torch::Tensor> crops;
      crops.reserve(static_cast<size_t>(b));
      for (int64_t i = 0; i < b; ++i)
        crops.push_back(padded[i].slice(1, acc[i][0], acc[i][0] + h).slice(2, acc[i][1], acc[i][1] + w));
      x = torch::stack(crops);
    }
    return x;
  }

  data::dataset_info ds_;
  data::dataset_paths paths_;
  model_choice mc_;
  bool hflip_ = true;
  int64_t crop_padding_ = 2;
  double label_smoothing_ = 0;
  data::image_set train_, test_;
  int64_t channels_ = 1, height_ = 0, width_ = 0;
  torch::Tensor mean_, std_;
  zoo::model_options options_;
  std::shared_ptr<zoo::ZooModelImpl> model_;
  std::unique_ptr<torch::optim::Optimizer> opt_;
  std::vector<torch::Tensor> params_;
  torch::Tensor perm_;
  int64_t perm_epoch_ = -1;
  std::string pretrained_from_;
};

} // namespace

result<std::unique_ptr<Trainer>> make_classifier_trainer(const json& spec,
                                                         const data::dataset_info& ds,
                                                         const data::dataset_paths& paths) {
  if (ds.kind != "image_classification")
    return fail(errc::bad_request, "the classifier trainer needs an image_classification dataset; '"
                                     + ds.name + "' is " + ds.kind);
  auto h = parse_hyper(spec.value("hyper", json::object()));
  if (!h)
    return h.error();
  model_choice mc;
  if (auto st = read_model_choice(spec, mc.arch, mc.options, mc.pretrained); !st)
    return st.error();
  auto opts = zoo::parse_model_options(mc.options.dump());
  if (!opts)
    return opts.error();
  bool known = false;
  for (auto& e : zoo::list_models())
    known = known || e.name == mc.arch;
  known = known || mc.arch == "small_cnn";
  if (!known)
    return fail(errc::bad_request, "model: unknown architecture '" + mc.arch
                                     + "' (small_cnn or any zoo architecture)");
  bool hflip = true;
  int64_t crop_padding = 2;
  double label_smoothing = 0;
  const json hyper = spec.value("hyper", json::object()); // named: the reader keeps a reference
  spec_reader r(hyper, "hyper");
  r.boolean("hflip", hflip)
    .integer("crop_padding", crop_padding, 0, 16)
    .number("label_smoothing", label_smoothing, 0, 1, false, /*hi_open=*/true);
  if (auto st = r.done(); !st)
    return st.error();
  return std::unique_ptr<Trainer>(
    std::make_unique<ClassifierTrainer>(std::move(*h), spec, ds, paths, std::move(mc)));
}

} // namespace rookery::train

#include "common/metrics.hpp"

#include <cstdio>

namespace rookery {

namespace {

const std::vector<double> kLatencyBounds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                            0.25,  0.5,    1,     2.5,  5,     10};
const std::vector<double> kBatchBounds = {1, 2, 4, 8, 16, 32, 64};

std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

std::string escape(const std::string& s) {
  std::string r;
  for (char c : s) {
    if (c == '\\' || c == '"')
      r += '\\';
    if (c == '\n') {
      r += "\\n";
      continue;
    }
    r += c;
  }
  return r;
}

histogram& slot(std::map<std::string, histogram>& m, const std::string& labels,
                const std::vector<double>& bounds) {
  auto i = m.find(labels);
  if (i == m.end())
    i = m.emplace(labels, histogram{bounds}).first;
  return i->second;
}

void render_family(std::string& out, const std::string& name, const std::string& help,
                   const std::map<std::string, histogram>& m) {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " histogram\n";
  for (auto& [labels, h] : m)
    h.render(out, name, labels);
}

} // namespace

histogram::histogram(std::vector<double> bounds)
  : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void histogram::observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i])
    ++i;
  ++counts_[i];
  sum_ += v;
  ++count_;
}

void histogram::render(std::string& out, const std::string& name,
                       const std::string& labels) const {
  auto sep = labels.empty() ? "" : ",";
  uint64_t cum = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    out += name + "_bucket{" + labels + sep + "le=\"" + num(bounds_[i]) + "\"} "
           + std::to_string(cum) + "\n";
  }
  cum += counts_.back();
  out += name + "_bucket{" + labels + sep + "le=\"+Inf\"} " + std::to_string(cum) + "\n";
  auto braces = labels.empty() ? std::string{} : "{" + labels + "}";
  out += name + "_sum" + braces + " " + num(sum_) + "\n";
  out += name + "_count" + braces + " " + std::to_string(count_) + "\n";
}

metrics& metrics::instance() {
  static metrics m;
  return m;
}

void metrics::http_request(const std::string& method, const std::string& route, int status,
                           double seconds) {
  auto labels = "method=\"" + method + "\",route=\"" + escape(route) + "\"";
  std::lock_guard<std::mutex> g{mtx_};
  counters_["rookery_http_requests_total{" + labels + ",status=\"" + std::to_string(status)
            + "\"}"] += 1;
  slot(http_latency_, labels, kLatencyBounds).observe(seconds);
}

void metrics::model_item(const std::string& model, double queue_s, double compute_s,
                         uint32_t batch) {
  auto labels = "model=\"" + escape(model) + "\"";
  std::lock_guard<std::mutex> g{mtx_};
  slot(model_queue_, labels, kLatencyBounds).observe(queue_s);
  slot(model_compute_, labels, kLatencyBounds).observe(compute_s);
  slot(model_batch_, labels, kBatchBounds).observe(batch);
  counters_["rookery_model_items_total{" + labels + "}"] += 1;
}

void metrics::set_gauge(const std::string& name, const std::string& labels, double value) {
  std::lock_guard<std::mutex> g{mtx_};
  gauges_[labels.empty() ? name : name + "{" + labels + "}"] = value;
}

void metrics::add_counter(const std::string& name, const std::string& labels, double delta) {
  std::lock_guard<std::mutex> g{mtx_};
  counters_[labels.empty() ? name : name + "{" + labels + "}"] += delta;
}

std::string metrics::render() const {
  std::string out;
  std::lock_guard<std::mutex> g{mtx_};
  std::string last;
  auto family = [](const std::string& key) { return key.substr(0, key.find('{')); };
  for (auto& [key, v] : counters_) {
    if (family(key) != last) {
      last = family(key);
      out += "# TYPE " + last + " counter\n";
    }
    out += key + " " + num(v) + "\n";
  }
  for (auto& [key, v] : gauges_) {
    if (family(key) != last) {
      last = family(key);
      out += "# TYPE " + last + " gauge\n";
    }
    out += key + " " + num(v) + "\n";
  }
  render_family(out, "rookery_http_request_duration_seconds",
                "HTTP request latency by route.", http_latency_);
  render_family(out, "rookery_model_queue_seconds",
                "Time an item waited in a model replica's queue.", model_queue_);
  render_family(out, "rookery_model_compute_seconds",
                "Forward-pass time of the batch an item ran in.", model_compute_);
  render_family(out, "rookery_model_batch_size", "Dynamic batch sizes.", model_batch_);
  return out;
}

} // namespace rookery

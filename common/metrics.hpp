// Process-wide metrics in Prometheus' text format. Thread-safe: updated from
// HTTP threads and actors alike; cheap enough for every request.
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace rookery {

class histogram {
public:
  explicit histogram(std::vector<double> bounds);
  void observe(double v);
  // Appends `name{labels,le=...}` bucket, _sum and _count lines.
  void render(std::string& out, const std::string& name, const std::string& labels) const;

private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_; // one per bound, plus +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

class metrics {
public:
  static metrics& instance();

  /// One finished HTTP request.
  void http_request(const std::string& method, const std::string& route, int status,
                    double seconds);
  /// One item through a model replica: time queued, time of its batch's forward, batch size.
  void model_item(const std::string& model, double queue_s, double compute_s, uint32_t batch);
  void set_gauge(const std::string& name, const std::string& labels, double value);
  void add_counter(const std::string& name, const std::string& labels, double delta = 1);

  std::string render() const;

private:
  metrics() = default;
  mutable std::mutex mtx_;
  std::map<std::string, double> counters_; // "name{labels}" -> value
  std::map<std::string, double> gauges_;
  std::map<std::string, histogram> http_latency_; // labels -> histogram
  std::map<std::string, histogram> model_queue_;
  std::map<std::string, histogram> model_compute_;
  std::map<std::string, histogram> model_batch_;
};

} // namespace rookery

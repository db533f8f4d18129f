#pragma once
// Prometheus metrics of a trainer (prometheus-cpp), served as text on
// http://<metrics.bind_address>:<metrics.port>/metrics. Every name starts with tandem_ and
// follows Prometheus conventions (base units, _total for counters, _seconds, _bytes,
// _ratio); every series carries `role` (edge | cloud) and `edge` (the edge's name; on the
// cloud one set per session). scripts/grafana/tandem-dashboard.json plots them.
//
//   tandem_steps_total, tandem_samples_total                       training progress
//   tandem_epoch                                                   current epoch (1-based)
//   tandem_train_loss, tandem_train_accuracy_ratio                 running, this epoch
//   tandem_test_loss, tandem_test_accuracy_ratio                   after each epoch
//   tandem_link_bytes_total{direction}                             uplink | downlink
//   tandem_compression_ratio{direction}                            float32 bytes / encoded bytes
//   tandem_link_bandwidth_bytes_per_second{direction}              the edge's estimate
//   tandem_link_rtt_seconds                                        the edge's estimate
//   tandem_staleness (histogram)                                   edge updates between send and gradient
//   tandem_replay_buffer_depth                                     batches in flight
//   tandem_split_point, tandem_uplink_codec_info{codec}            the partition in force
//   tandem_repartitions_total, tandem_migration_seconds (histogram)
//   tandem_phase_seconds{phase} (histogram)                        edge_forward, edge_backward,
//                                                                  edge_replay_backward, cloud_step,
//                                                                  encode, decode
//   tandem_process_resident_memory_bytes
//   tandem_errors_total{kind}                                      rejected, timeout, reconnect, protocol
//   tandem_guard_events_total{event}                               divergence guard: non_finite, loss_spike
//                                                                  (steps that failed their check), rollback,
//                                                                  stopped (runs it ended)
//   tandem_limit_hits_total{limit}                                 a limits.* key refused or dropped something:
//                                                                  sessions, sessions_per_peer, pending_sessions,
//                                                                  session_memory, peer_rate, peer_queue; per
//                                                                  process: `role` but no `edge`
//   tandem_fleet_edges                                             shared fleet: sessions in it (the cloud; 0
//                                                                  elsewhere); per process
//   tandem_fleet_rounds_total                                      averaging rounds closed; per process
//   tandem_fleet_step_batches (histogram)                          edges' batches per cloud step (cross-edge
//                                                                  batching); per process
//   tandem_build_info{version,git_commit,compiler,build_type}      1; per process: `role` but no `edge`
//
// Unknown values are NaN, not 0 (the Prometheus convention for a gauge without a value):
// the train and test loss and accuracy until the first step and the first evaluation, the
// bandwidth and RTT until the edge has an estimate (the cloud never has one). Every series
// exists from the start, so queries and dashboards need not handle absent ones; PromQL
// aggregations such as max() skip NaN, and `x == x` filters it out.
//
// Histograms of seconds (phase and migration times) have exponential buckets from 10 µs
// to ~10.5 s, a factor of 2 apart (secondsBuckets()), so that the microsecond codec
// phases and the second-long migrations both spread over many buckets.
//
// Besides, the standard process metrics of the Prometheus client guidelines, read from
// /proc at each scrape, without labels: process_cpu_seconds_total,
// process_resident_memory_bytes, process_virtual_memory_bytes, process_open_fds,
// process_max_fds, process_start_time_seconds (since the Unix epoch), process_threads.
//
// Threading: prometheus-cpp metrics are thread-safe; the exposer serves from its own
// threads.

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "runtime/config/config.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>

namespace prometheus {
class Collectable;
class Exposer;
class Registry;
}  // namespace prometheus

namespace tandem::telemetry {

// The series of one (role, edge) pair.
struct TrainerMetrics {
  prometheus::Counter* steps;
  prometheus::Counter* samples;
  prometheus::Gauge* epoch;
  prometheus::Gauge* train_loss;
  prometheus::Gauge* train_accuracy;
  prometheus::Gauge* test_loss;
  prometheus::Gauge* test_accuracy;
  prometheus::Counter* bytes_uplink;
  prometheus::Counter* bytes_downlink;
  prometheus::Gauge* compression_uplink;
  prometheus::Gauge* compression_downlink;
  prometheus::Gauge* bandwidth_uplink;
  prometheus::Gauge* bandwidth_downlink;
  prometheus::Gauge* rtt;
  prometheus::Histogram* staleness;
  prometheus::Gauge* replay_depth;
  prometheus::Gauge* split_point;
  prometheus::Counter* repartitions;
  prometheus::Histogram* migration;
  prometheus::Histogram* edge_forward;
  prometheus::Histogram* edge_backward;  // standalone runs: backward and optimizer step
  prometheus::Histogram* edge_replay_backward;
  prometheus::Histogram* cloud_step;
  prometheus::Histogram* encode;
  prometheus::Histogram* decode;
  prometheus::Gauge* resident_memory;
  prometheus::Counter* errors_rejected;
  prometheus::Counter* errors_timeout;
  prometheus::Counter* errors_reconnect;
  prometheus::Counter* errors_protocol;
  prometheus::Counter* guard_non_finite;
  prometheus::Counter* guard_loss_spike;
  prometheus::Counter* guard_rollback;
  prometheus::Counter* guard_stopped;

  // tandem_uplink_codec_info: 1 for `codec`, 0 for the others seen before.
  void setCodec(const std::string& codec);
  // Adds what is new in a monotonically growing count (e.g. transport statistics).
  static void advance(prometheus::Counter* counter, double total);
  // Sets `gauge` to `value`, or to NaN when there is none (an estimate not made yet).
  static void setKnown(prometheus::Gauge* gauge, std::optional<double> value);

  std::function<prometheus::Gauge*(const std::string&)> codec_gauge;
  std::map<std::string, prometheus::Gauge*> codecs;
};

class Metrics {
 public:
  // Serves the registry when config.port > 0 (throws tandem::Error when the address is
  // taken); otherwise only collects (tests read text()).
  Metrics(std::string role, const config::MetricsConfig& config);
  ~Metrics();

  // The series for one edge, created on first use. After kMaxEdgeSeries edges, new names
  // share the series of edge "_other".
  TrainerMetrics& forEdge(const std::string& edge);
  static constexpr std::size_t kMaxEdgeSeries = 256;
  static constexpr const char* kLimits[] = {"sessions",       "sessions_per_peer", "pending_sessions",
                                            "session_memory", "peer_rate",         "peer_queue"};

  // tandem_limit_hits_total{limit}: a limit (limits.*) refused or dropped `count` things.
  // `limit` is one of kLimits.
  void limitHit(const std::string& limit, double count = 1.0);
  double limitHits(const std::string& limit) const;

  // A shared fleet (the cloud): its size, an averaging round closed, one cloud step over
  // `batches` edges' batches.
  void fleetEdges(double edges);
  void fleetRound();
  void fleetStep(double batches);

  // The current metrics in the Prometheus text format (the process_* families included).
  std::string text() const;
  // "http://127.0.0.1:9100/metrics", or "" when not serving.
  std::string url() const { return url_; }

 private:
  struct Families;
  std::string role_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<Families> families_;
  std::shared_ptr<prometheus::Collectable> process_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::string url_;
  mutable std::mutex mutex_;
  std::map<std::string, std::unique_ptr<TrainerMetrics>> edges_;
  std::map<std::string, prometheus::Counter*> limits_;
  prometheus::Gauge* fleet_edges_ = nullptr;
  prometheus::Counter* fleet_rounds_ = nullptr;
  prometheus::Histogram* fleet_step_batches_ = nullptr;
};

// Resident memory of this process into `m` (tandem_process_resident_memory_bytes).
void updateProcessMetrics(TrainerMetrics& m);

// The bucket bounds of the histograms of seconds: 1e-5 · 2^i for i = 0..20.
const std::vector<double>& secondsBuckets();

}  // namespace tandem::telemetry

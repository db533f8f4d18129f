#include "runtime/telemetry/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "runtime/common/error.h"
#include "runtime/telemetry/build_info.h"
#include "runtime/telemetry/memory.h"

namespace tandem::telemetry {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;
using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;

struct Metrics::Families {
  Family<Counter>& steps;
  Family<Counter>& samples;
  Family<Gauge>& epoch;
  Family<Gauge>& train_loss;
  Family<Gauge>& train_accuracy;
  Family<Gauge>& test_loss;
  Family<Gauge>& test_accuracy;
  Family<Counter>& bytes;
  Family<Gauge>& compression;
  Family<Gauge>& bandwidth;
  Family<Gauge>& rtt;
  Family<Histogram>& staleness;
  Family<Gauge>& replay_depth;
  Family<Gauge>& split_point;
  Family<Gauge>& codec;
  Family<Counter>& repartitions;
  Family<Histogram>& migration;
  Family<Histogram>& phase;
  Family<Gauge>& memory;
  Family<Counter>& errors;
  Family<Counter>& guard;
  Family<Counter>& limit_hits;
  Family<Gauge>& fleet_edges;
  Family<Counter>& fleet_rounds;
  Family<Histogram>& fleet_step_batches;
  Family<Gauge>& build_info;

  explicit Families(prometheus::Registry& r)
      : steps(BuildCounter().Name("tandem_steps_total").Help("Training steps completed").Register(r)),
        samples(BuildCounter().Name("tandem_samples_total").Help("Training samples processed").Register(r)),
        epoch(BuildGauge().Name("tandem_epoch").Help("Current epoch, 1-based").Register(r)),
        train_loss(BuildGauge().Name("tandem_train_loss").Help("Mean training loss so far this epoch").Register(r)),
        train_accuracy(BuildGauge()
                           .Name("tandem_train_accuracy_ratio")
                           .Help("Training accuracy so far this epoch, 0..1")
                           .Register(r)),
        test_loss(BuildGauge().Name("tandem_test_loss").Help("Test loss after the last epoch").Register(r)),
        test_accuracy(BuildGauge()
                          .Name("tandem_test_accuracy_ratio")
                          .Help("Test accuracy after the last epoch, 0..1")
                          .Register(r)),
        bytes(BuildCounter()
                  .Name("tandem_link_bytes_total")
                  .Help("Training traffic on the link (headers and payloads), by direction")
                  .Register(r)),
        compression(BuildGauge()
                        .Name("tandem_compression_ratio")
                        .Help("float32 bytes over encoded bytes of the last tensor sent, by direction")
                        .Register(r)),
        bandwidth(BuildGauge()
                      .Name("tandem_link_bandwidth_bytes_per_second")
                      .Help("Estimated link bandwidth, by direction")
                      .Register(r)),
        rtt(BuildGauge().Name("tandem_link_rtt_seconds").Help("Estimated round-trip time").Register(r)),
        staleness(BuildHistogram()
                      .Name("tandem_staleness")
                      .Help("Edge updates between sending a batch and applying its gradient")
                      .Register(r)),
        replay_depth(
            BuildGauge().Name("tandem_replay_buffer_depth").Help("Batches in flight (replay buffer)").Register(r)),
        split_point(BuildGauge().Name("tandem_split_point").Help("Stages on the edge").Register(r)),
        codec(BuildGauge().Name("tandem_uplink_codec_info").Help("1 for the uplink codec in use").Register(r)),
        repartitions(
            BuildCounter().Name("tandem_repartitions_total").Help("Live re-partitions carried out").Register(r)),
        migration(BuildHistogram().Name("tandem_migration_seconds").Help("Duration of re-partitions").Register(r)),
        phase(BuildHistogram().Name("tandem_phase_seconds").Help("Compute time per batch, by phase").Register(r)),
        memory(BuildGauge()
                   .Name("tandem_process_resident_memory_bytes")
                   .Help("Resident memory of the trainer process")
                   .Register(r)),
        errors(BuildCounter().Name("tandem_errors_total").Help("Errors by kind").Register(r)),
        guard(BuildCounter()
                  .Name("tandem_guard_events_total")
                  .Help("Divergence guard: training steps that failed their check (non_finite, loss_spike), "
                        "rollbacks, and runs it stopped")
                  .Register(r)),
        limit_hits(BuildCounter()
                       .Name("tandem_limit_hits_total")
                       .Help("Times a limit (limits.*) refused or dropped something, by limit")
                       .Register(r)),
        fleet_edges(BuildGauge().Name("tandem_fleet_edges").Help("Sessions in the shared fleet").Register(r)),
        fleet_rounds(BuildCounter()
                         .Name("tandem_fleet_rounds_total")
                         .Help("Averaging rounds of the shared fleet closed")
                         .Register(r)),
        fleet_step_batches(BuildHistogram()
                               .Name("tandem_fleet_step_batches")
                               .Help("Edges' batches in one cloud step of the shared fleet (cross-edge batching)")
                               .Register(r)),
        build_info(BuildGauge()
                       .Name("tandem_build_info")
                       .Help("1, labelled with the version, git commit, compiler and build type of the trainer")
                       .Register(r)) {}
};

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// The standard process_* families (Prometheus client guidelines), read from /proc at each
// collection; a value that cannot be read is left out rather than reported as 0.
class ProcessCollector final : public prometheus::Collectable {
 public:
  ProcessCollector() : ticks_per_second_(static_cast<double>(::sysconf(_SC_CLK_TCK))) {
    page_bytes_ = static_cast<double>(::sysconf(_SC_PAGESIZE));
    // Start time: boot time (btime in /proc/stat) plus the process's start in ticks
    // since boot (field 22 of /proc/self/stat); it does not change, so read it once.
    const auto stat = selfStat();
    std::ifstream system("/proc/stat");
    std::string key;
    double boot_time = 0;
    while (system >> key) {
      if (key == "btime") {
        system >> boot_time;
        break;
      }
      system.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
    }
    if (boot_time > 0 && stat.size() > 21 && ticks_per_second_ > 0) {
      start_time_ = boot_time + std::stod(stat[21]) / ticks_per_second_;
    }
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<prometheus::MetricFamily> out;
    const auto add = [&](const char* name, const char* help, prometheus::MetricType type, double value) {
      if (!std::isfinite(value)) return;
      prometheus::ClientMetric metric;
      if (type == prometheus::MetricType::Counter) {
        metric.counter.value = value;
      } else {
        metric.gauge.value = value;
      }
      out.push_back(prometheus::MetricFamily{name, help, type, {metric}});
    };
    using prometheus::MetricType;
    // /proc/self/stat after the command: field 14 utime, 15 stime (ticks), 20
    // num_threads, 23 vsize (bytes), 24 rss (pages); stat[i] is field i + 1.
    const auto stat = selfStat();
    const auto field = [&](std::size_t i) { return stat.size() > i ? std::stod(stat[i]) : kNaN; };
    add("process_cpu_seconds_total", "User and system CPU time of the process in seconds", MetricType::Counter,
        (field(13) + field(14)) / ticks_per_second_);
    add("process_resident_memory_bytes", "Resident memory size in bytes", MetricType::Gauge, field(23) * page_bytes_);
    add("process_virtual_memory_bytes", "Virtual memory size in bytes", MetricType::Gauge, field(22));
    add("process_threads", "Threads of the process", MetricType::Gauge, field(19));
    add("process_open_fds", "Open file descriptors", MetricType::Gauge, openFds());
    add("process_max_fds", "Maximum number of open file descriptors", MetricType::Gauge, maxFds());
    add("process_start_time_seconds", "Start time of the process since the Unix epoch in seconds", MetricType::Gauge,
        start_time_);
    return out;
  }

 private:
  // The fields of /proc/self/stat; the command (field 2) is in parentheses and may hold
  // spaces, so split after its closing one. Empty when unreadable.
  static std::vector<std::string> selfStat() {
    std::ifstream in("/proc/self/stat");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto close = text.rfind(')');
    if (close == std::string::npos) return {};
    std::vector<std::string> fields{text.substr(0, text.find(' ')), text.substr(0, close + 1)};
    std::istringstream rest(text.substr(close + 1));
    for (std::string f; rest >> f;) fields.push_back(f);
    return fields;
  }

  static double openFds() {
    std::error_code ec;
    double n = 0;
    for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end; it.increment(ec)) ++n;
    return ec ? kNaN : n - 1;  // not the descriptor of the directory being listed
  }

  static double maxFds() {
    std::ifstream in("/proc/self/limits");
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("Max open files", 0) == 0) {
        std::istringstream words(line.substr(std::string("Max open files").size()));
        std::string soft;
        words >> soft;
        return soft == "unlimited" ? kNaN : std::stod(soft);
      }
    }
    return kNaN;
  }

  double ticks_per_second_;
  double page_bytes_ = 0;
  double start_time_ = kNaN;
};

}  // namespace

const std::vector<double>& secondsBuckets() {
  static const std::vector<double> buckets = [] {
    std::vector<double> b;
    for (int i = 0; i <= 20; ++i) b.push_back(1e-5 * std::ldexp(1.0, i));
    return b;
  }();
  return buckets;
}

void TrainerMetrics::setCodec(const std::string& codec) {
  if (!codecs.count(codec)) codecs[codec] = codec_gauge(codec);
  for (auto& [name, gauge] : codecs) gauge->Set(name == codec ? 1.0 : 0.0);
}

void TrainerMetrics::setKnown(Gauge* gauge, std::optional<double> value) { gauge->Set(value.value_or(kNaN)); }

void TrainerMetrics::advance(Counter* counter, double total) {
  const double delta = total - counter->Value();
  if (delta > 0) counter->Increment(delta);
}

Metrics::Metrics(std::string role, const config::MetricsConfig& config)
    : role_(std::move(role)),
      registry_(std::make_shared<prometheus::Registry>()),
      families_(std::make_unique<Families>(*registry_)),
      process_(std::make_shared<ProcessCollector>()) {
  const auto& build = buildInfo();
  families_->build_info
      .Add({{"role", role_},
            {"version", build.version},
            {"git_commit", build.git_commit},
            {"compiler", build.compiler},
            {"build_type", build.build_type}})
      .Set(1.0);
  for (const char* limit : kLimits) limits_[limit] = &families_->limit_hits.Add({{"role", role_}, {"limit", limit}});
  fleet_edges_ = &families_->fleet_edges.Add({{"role", role_}});
  fleet_rounds_ = &families_->fleet_rounds.Add({{"role", role_}});
  fleet_step_batches_ = &families_->fleet_step_batches.Add(
      {{"role", role_}}, prometheus::Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32, 64, 128});
  if (config.port > 0) {
    const std::string address = config.bind_address + ":" + std::to_string(config.port);
    try {
      exposer_ = std::make_unique<prometheus::Exposer>(address);
    } catch (const std::exception& e) {
      throw Error("cannot serve metrics on " + address + ": " + e.what());
    }
    exposer_->RegisterCollectable(registry_);
    exposer_->RegisterCollectable(process_);
    url_ = "http://" + address + "/metrics";
  }
}

Metrics::~Metrics() {
  if (exposer_) {
    exposer_->RemoveCollectable(process_);
    exposer_->RemoveCollectable(registry_);
  }
}

void Metrics::limitHit(const std::string& limit, double count) {
  if (count <= 0) return;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = limits_.find(limit);
  if (it == limits_.end())
    it = limits_.emplace(limit, &families_->limit_hits.Add({{"role", role_}, {"limit", limit}})).first;
  it->second->Increment(count);
}

double Metrics::limitHits(const std::string& limit) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = limits_.find(limit);
  return it == limits_.end() ? 0.0 : it->second->Value();
}

void Metrics::fleetEdges(double edges) { fleet_edges_->Set(edges); }

void Metrics::fleetRound() { fleet_rounds_->Increment(); }

void Metrics::fleetStep(double batches) { fleet_step_batches_->Observe(batches); }

TrainerMetrics& Metrics::forEdge(const std::string& requested) {
  std::lock_guard<std::mutex> lock(mutex_);
  // Edges name themselves: past kMaxEdgeSeries names, series are shared, so that peers
  // cannot grow the registry without bound.
  const std::string edge = edges_.size() >= kMaxEdgeSeries && !edges_.count(requested) ? "_other" : requested;
  auto it = edges_.find(edge);
  if (it != edges_.end()) return *it->second;
  const prometheus::Labels labels{{"role", role_}, {"edge", edge}};
  const auto with = [&](const std::string& key, const std::string& value) {
    auto l = labels;
    l[key] = value;
    return l;
  };
  auto& f = *families_;
  const Histogram::BucketBoundaries& seconds = secondsBuckets();
  auto m = std::make_unique<TrainerMetrics>();
  m->steps = &f.steps.Add(labels);
  m->samples = &f.samples.Add(labels);
  m->epoch = &f.epoch.Add(labels);
  m->train_loss = &f.train_loss.Add(labels);
  m->train_accuracy = &f.train_accuracy.Add(labels);
  m->test_loss = &f.test_loss.Add(labels);
  m->test_accuracy = &f.test_accuracy.Add(labels);
  for (auto* unknown : {m->train_loss, m->train_accuracy, m->test_loss, m->test_accuracy}) unknown->Set(kNaN);
  m->bytes_uplink = &f.bytes.Add(with("direction", "uplink"));
  m->bytes_downlink = &f.bytes.Add(with("direction", "downlink"));
  m->compression_uplink = &f.compression.Add(with("direction", "uplink"));
  m->compression_downlink = &f.compression.Add(with("direction", "downlink"));
  m->compression_uplink->Set(1.0);  // raw until a codec says otherwise
  m->compression_downlink->Set(1.0);
  m->bandwidth_uplink = &f.bandwidth.Add(with("direction", "uplink"));
  m->bandwidth_downlink = &f.bandwidth.Add(with("direction", "downlink"));
  m->rtt = &f.rtt.Add(labels);
  for (auto* unknown : {m->bandwidth_uplink, m->bandwidth_downlink, m->rtt}) unknown->Set(kNaN);
  m->staleness = &f.staleness.Add(labels, Histogram::BucketBoundaries{0, 1, 2, 3, 4, 6, 8, 12, 16, 32, 64});
  m->replay_depth = &f.replay_depth.Add(labels);
  m->split_point = &f.split_point.Add(labels);
  m->repartitions = &f.repartitions.Add(labels);
  m->migration = &f.migration.Add(labels, seconds);
  m->edge_forward = &f.phase.Add(with("phase", "edge_forward"), seconds);
  m->edge_backward = &f.phase.Add(with("phase", "edge_backward"), seconds);
  m->edge_replay_backward = &f.phase.Add(with("phase", "edge_replay_backward"), seconds);
  m->cloud_step = &f.phase.Add(with("phase", "cloud_step"), seconds);
  m->encode = &f.phase.Add(with("phase", "encode"), seconds);
  m->decode = &f.phase.Add(with("phase", "decode"), seconds);
  m->resident_memory = &f.memory.Add(labels);
  m->resident_memory->Set(static_cast<double>(readMemory().rss_bytes));
  m->errors_rejected = &f.errors.Add(with("kind", "rejected"));
  m->errors_timeout = &f.errors.Add(with("kind", "timeout"));
  m->errors_reconnect = &f.errors.Add(with("kind", "reconnect"));
  m->errors_protocol = &f.errors.Add(with("kind", "protocol"));
  m->guard_non_finite = &f.guard.Add(with("event", "non_finite"));
  m->guard_loss_spike = &f.guard.Add(with("event", "loss_spike"));
  m->guard_rollback = &f.guard.Add(with("event", "rollback"));
  m->guard_stopped = &f.guard.Add(with("event", "stopped"));
  auto* codec_family = &f.codec;
  m->codec_gauge = [codec_family, labels](const std::string& codec) {
    auto l = labels;
    l["codec"] = codec;
    return &codec_family->Add(l);
  };
  auto& ref = *m;
  edges_[edge] = std::move(m);
  return ref;
}

std::string Metrics::text() const {
  prometheus::TextSerializer serializer;
  std::ostringstream out;
  auto families = registry_->Collect();
  for (auto& family : process_->Collect()) families.push_back(std::move(family));
  serializer.Serialize(out, families);
  return out.str();
}

void updateProcessMetrics(TrainerMetrics& m) {
  m.resident_memory->Set(static_cast<double>(readMemory().rss_bytes));
}

}  // namespace tandem::telemetry

#include "runtime/telemetry/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <sstream>

#include "runtime/common/error.h"
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
        phase(BuildHistogram()
                  .Name("tandem_phase_seconds")
                  .Help("Compute time per batch, by phase")
                  .Register(r)),
        memory(BuildGauge()
                   .Name("tandem_process_resident_memory_bytes")
                   .Help("Resident memory of the trainer process")
                   .Register(r)),
        errors(BuildCounter().Name("tandem_errors_total").Help("Errors by kind").Register(r)) {}
};

void TrainerMetrics::setCodec(const std::string& codec) {
  if (!codecs.count(codec)) codecs[codec] = codec_gauge(codec);
  for (auto& [name, gauge] : codecs) gauge->Set(name == codec ? 1.0 : 0.0);
}

void TrainerMetrics::advance(Counter* counter, double total) {
  const double delta = total - counter->Value();
  if (delta > 0) counter->Increment(delta);
}

Metrics::Metrics(std::string role, const config::MetricsConfig& config)
    : role_(std::move(role)),
      registry_(std::make_shared<prometheus::Registry>()),
      families_(std::make_unique<Families>(*registry_)) {
  if (config.port > 0) {
    const std::string address = config.bind_address + ":" + std::to_string(config.port);
    try {
      exposer_ = std::make_unique<prometheus::Exposer>(address);
    } catch (const std::exception& e) {
      throw Error("cannot serve metrics on " + address + ": " + e.what());
    }
    exposer_->RegisterCollectable(registry_);
    url_ = "http://" + address + "/metrics";
  }
}

Metrics::~Metrics() {
  if (exposer_) exposer_->RemoveCollectable(registry_);
}

TrainerMetrics& Metrics::forEdge(const std::string& edge) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = edges_.find(edge);
  if (it != edges_.end()) return *it->second;
  const prometheus::Labels labels{{"role", role_}, {"edge", edge}};
  const auto with = [&](const std::string& key, const std::string& value) {
    auto l = labels;
    l[key] = value;
    return l;
  };
  auto& f = *families_;
  const Histogram::BucketBoundaries seconds{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                            0.1,    0.25,  0.5,    1.0,   2.5,  5.0,   10.0};
  auto m = std::make_unique<TrainerMetrics>();
  m->steps = &f.steps.Add(labels);
  m->samples = &f.samples.Add(labels);
  m->epoch = &f.epoch.Add(labels);
  m->train_loss = &f.train_loss.Add(labels);
  m->train_accuracy = &f.train_accuracy.Add(labels);
  m->test_loss = &f.test_loss.Add(labels);
  m->test_accuracy = &f.test_accuracy.Add(labels);
  m->bytes_uplink = &f.bytes.Add(with("direction", "uplink"));
  m->bytes_downlink = &f.bytes.Add(with("direction", "downlink"));
  m->compression_uplink = &f.compression.Add(with("direction", "uplink"));
  m->compression_downlink = &f.compression.Add(with("direction", "downlink"));
  m->compression_uplink->Set(1.0);  // raw until a codec says otherwise
  m->compression_downlink->Set(1.0);
  m->bandwidth_uplink = &f.bandwidth.Add(with("direction", "uplink"));
  m->bandwidth_downlink = &f.bandwidth.Add(with("direction", "downlink"));
  m->rtt = &f.rtt.Add(labels);
  m->staleness = &f.staleness.Add(labels, Histogram::BucketBoundaries{0, 1, 2, 3, 4, 6, 8, 12, 16, 32, 64});
  m->replay_depth = &f.replay_depth.Add(labels);
  m->split_point = &f.split_point.Add(labels);
  m->repartitions = &f.repartitions.Add(labels);
  m->migration = &f.migration.Add(labels, seconds);
  m->edge_forward = &f.phase.Add(with("phase", "edge_forward"), seconds);
  m->edge_replay_backward = &f.phase.Add(with("phase", "edge_replay_backward"), seconds);
  m->cloud_step = &f.phase.Add(with("phase", "cloud_step"), seconds);
  m->encode = &f.phase.Add(with("phase", "encode"), seconds);
  m->decode = &f.phase.Add(with("phase", "decode"), seconds);
  m->resident_memory = &f.memory.Add(labels);
  m->errors_rejected = &f.errors.Add(with("kind", "rejected"));
  m->errors_timeout = &f.errors.Add(with("kind", "timeout"));
  m->errors_reconnect = &f.errors.Add(with("kind", "reconnect"));
  m->errors_protocol = &f.errors.Add(with("kind", "protocol"));
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
  serializer.Serialize(out, registry_->Collect());
  return out.str();
}

void updateProcessMetrics(TrainerMetrics& m) {
  m.resident_memory->Set(static_cast<double>(readMemory().rss_bytes));
}

}  // namespace tandem::telemetry

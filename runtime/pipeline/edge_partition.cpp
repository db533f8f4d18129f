// The edge's re-partitioning: setting up the scheduler from the handshake, probing the
// link, planning at the start, at epoch ends and when the bandwidth moves, and migrating
// stages (with their optimizer state) and the uplink codec. Members of EdgeTrainer.

#include <chrono>

#include "runtime/common/log.h"
#include "runtime/common/strings.h"
#include "runtime/pipeline/edge.h"
#include "runtime/pipeline/link.h"
#include "runtime/pipeline/migration.h"
#include "runtime/scheduler/profiler.h"

namespace tandem::pipeline {

using Clock = std::chrono::steady_clock;
using transport::Message;
using transport::MessageType;

void EdgeTrainer::setUpScheduler(const transport::Welcome& welcome, const std::atomic<bool>& stop) {
  if (!scheduling_) {
    probe(false);  // a few pings: RTT and clock offset for the link telemetry
    return;
  }
  auto profile = scheduler::describeModel(model_, config_.data.batch_size, config_.optimizer.name);
  profile.edge = edge_profile_;
  if (welcome.cloud_profile.empty()) {
    log_->warn("the cloud sent no stage profile (scheduler off in its config?): assuming it is as fast as the edge");
    profile.cloud = edge_profile_;
  } else {
    try {
      profile.cloud = scheduler::sideFromJson(welcome.cloud_profile);
    } catch (const std::exception& e) {
      throw ProtocolError(std::string("the cloud's stage profile is unusable: ") + e.what());
    }
    if (static_cast<int>(profile.cloud.forward_seconds.size()) != model_.numStages()) {
      throw ProtocolError("the cloud's stage profile has " + std::to_string(profile.cloud.forward_seconds.size()) +
                          " stages, the model " + std::to_string(model_.numStages()));
    }
  }
  scheduler_ = std::make_unique<EdgeScheduler>(config_, std::move(profile), link_);
  if (stop) return;
  probe(true);
  const auto e = scheduler_->estimate();
  log_->info("link: uplink {:.2f} Mbit/s, downlink {:.2f} Mbit/s, rtt {:.1f} ms", e.uplink_bps / 1e6,
             e.downlink_bps / 1e6, e.rtt_seconds * 1e3);
}

void EdgeTrainer::probe(bool bandwidth) {
  link_.resetSpacing();
  const auto exchange = [&](std::uint64_t up_bytes, std::uint64_t down_bytes) {
    Message m(MessageType::kProbe, transport::ProbeInfo{transport::steadySeconds(), 0, 0, down_bytes});
    if (up_bytes > 0)
      addFrame(m, transport::rawFrame(torch::zeros({static_cast<std::int64_t>(up_bytes)}, torch::kUInt8)));
    const auto wire = wireBytes(m);
    auto& info = std::get<transport::ProbeInfo>(m.body);
    info.t0 = transport::steadySeconds();
    const double t0 = info.t0;
    auto reply = session_->request(std::move(m), MessageType::kProbeReply, "a probe reply", std::chrono::seconds(120));
    const auto& r = std::get<transport::ProbeInfo>(reply.body);
    if (up_bytes == 0 && down_bytes == 0) link_.onPing(t0, r.t1, r.t2, reply.received_at);
    if (up_bytes > 0) link_.onUplink(wire, t0, r.t1);
    if (down_bytes > 0) link_.onDownlink(reply.wire_bytes, r.t2, reply.received_at);
    link_.resetSpacing();
    return reply.received_at - t0;
  };
  for (int i = 0; i < 5; ++i) exchange(0, 0);
  if (!bandwidth) return;
  // Grow the probe until it takes long enough to say something about the rate.
  for (std::uint64_t size = 16 * 1024;; size *= 4) {
    const double up = exchange(size, 0);
    const double down = exchange(0, size);
    const double rtt = link_.rttSeconds();
    if ((up - rtt > 0.05 && down - rtt > 0.05) ||
        size * 4 > static_cast<std::uint64_t>(config_.scheduler.probe_bytes)) {
      break;
    }
  }
}

void EdgeTrainer::migrate(int epoch, int to, const std::string& codec, const std::string& trigger,
                          telemetry::RunSummary& summary) {
  TANDEM_ENFORCE(replay_.empty(), "migration with batches in flight");
  const int from = split_;
  if (to == from && codec == uplink_codec_) return;
  const auto start = Clock::now();
  const auto bytes_before = session_->bytesUp() + session_->bytesDown();
  Message m(MessageType::kMigrate,
            transport::MigrateInfo{static_cast<std::uint32_t>(from), static_cast<std::uint32_t>(to), codec, {}});
  if (to < from) packStages(m, model_, *optimizer_, to, from);
  auto ack = session_->request(std::move(m), MessageType::kMigrateAck, "a migration acknowledgement");
  if (to > from) unpackStages(ack, model_, *optimizer_, from, to, codecs_);
  split_ = to;
  uplink_codec_ = codec;
  // Snapshots hold the old split's stages: start again from this point (the cloud does too).
  snapshots_.clear();
  if (current_) takeSnapshot(next_step_, current_->epoch, current_->sent, current_->stats);
  telemetry::Repartition r;
  r.epoch = epoch;
  r.step = static_cast<std::int64_t>(next_step_);
  r.from = from;
  r.to = to;
  r.codec = codec;
  r.trigger = trigger;
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  r.bytes = session_->bytesUp() + session_->bytesDown() - bytes_before;
  summary.repartitions.push_back(r);
  if (metrics_) {
    metrics_->repartitions->Increment();
    metrics_->migration->Observe(r.seconds);
    metrics_->split_point->Set(to);
    metrics_->setCodec(codec);
  }
  log_->info("re-partitioned ({}): split {} → {}, uplink {}, {} moved in {:.3f} s", trigger, from, to, codec,
             formatBytes(static_cast<double>(r.bytes)), r.seconds);
}

void EdgeTrainer::replan(int epoch, std::int64_t remaining, int staleness, const std::string& trigger,
                         telemetry::RunSummary& summary) {
  auto decision = scheduler_->plan(split_, uplink_codec_, staleness, remaining);
  const auto step = static_cast<std::int64_t>(next_step_);
  auto scheduled = config_.scheduler.split_schedule.find(epoch);
  if (trigger != "bandwidth" && scheduled != config_.scheduler.split_schedule.end()) {
    decision.split = scheduled->second;
    decision.codec = uplink_codec_;
    decision.changed = decision.split != split_;
    decision.reason = "scheduled";
    decision.predicted_epoch_seconds =
        scheduler_->predict(decision.split, decision.codec, staleness, remaining) +
        scheduler_->costModel().migrationSeconds(split_, decision.split, scheduler_->estimate());
    const double current = decision.predicted_epoch_seconds;
    migrate(epoch, decision.split, decision.codec, "scheduled", summary);
    scheduler_->begin(std::move(decision), "scheduled", epoch, step, true, current);
    return;
  }
  if (config_.split.automatic) {
    const auto to = decision.split;
    const auto codec = decision.codec;
    const double predicted = decision.predicted_epoch_seconds;
    if (decision.changed) log_->info("planner: {} → split {}, uplink {} ({})", trigger, to, codec, decision.reason);
    migrate(epoch, to, codec, trigger, summary);
    scheduler_->begin(std::move(decision), trigger, epoch, step, true, predicted);
  } else {
    // Advice only: log what the planner would do and what it predicts for the fixed pair.
    const double current = scheduler_->predict(split_, uplink_codec_, staleness, remaining);
    scheduler_->begin(std::move(decision), trigger, epoch, step, false, current);
  }
}

}  // namespace tandem::pipeline

#pragma once
// The edge side of split training (docs/design.md): runs stages [0, p) on local data,
// sends activations to the cloud, and applies the activation gradients that come back,
// up to K batches behind. The trainer computes and decides; the conversation with the
// cloud (exactly-once requests, recovery after link outages) is the EdgeSession's
// (runtime/session/), the in-flight batches are FeatureReplay's, re-partitioning advice
// is the EdgeScheduler's.
//
// Threads: the caller's thread computes; the transport owns the socket on its own thread;
// the data loader prepares batches on a third. The compute thread waits on the network
// only when K + 1 batches are in flight.

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <optional>

#include "runtime/checkpoint/checkpoint.h"
#include "runtime/config/config.h"
#include "runtime/data/loader.h"
#include "runtime/models/stage_model.h"
#include "runtime/optim/stage_optimizers.h"
#include "runtime/pipeline/divergence_guard.h"
#include "runtime/pipeline/edge_report.h"
#include "runtime/pipeline/edge_scheduler.h"
#include "runtime/pipeline/feature_replay.h"
#include "runtime/pipeline/run_state.h"
#include "runtime/pipeline/setup.h"
#include "runtime/session/edge_session.h"
#include "runtime/telemetry/link_estimator.h"
#include "runtime/telemetry/metrics.h"
#include "runtime/telemetry/summary.h"
#include "runtime/transport/tensor_frames.h"
#include "runtime/transport/transport.h"

namespace spdlog {
class logger;
}

namespace tandem::pipeline {

// Where the edge's current epoch stands, for checkpoints and the partial record of a stop.
struct EdgeEpoch {
  int epoch = 0;
  int staleness = 0;
  double learning_rate = 0.0;
  std::int64_t sent = 0;  // batches of the epoch sent so far
  RunningStats stats;
  double seconds_before = 0.0;          // training time before a resume
  std::optional<double> train_seconds;  // once training ended (evaluation not included)
  std::chrono::steady_clock::time_point start;
  double trainSeconds() const;
};

class EdgeTrainer {
 public:
  // `metrics` (optional) must outlive the trainer.
  // With `resume`, continues from the newest checkpoint both sides hold (negotiated in
  // the handshake); without a common one it starts afresh.
  EdgeTrainer(config::Config config, std::unique_ptr<transport::Transport> transport,
              telemetry::Metrics* metrics = nullptr, bool resume = false);
  ~EdgeTrainer();

  // Handshake, run.epochs epochs of training and evaluation, orderly shutdown; writes
  // summary-edge.json. Stops early (summary.interrupted) once `stop` is set, after applying
  // the gradients already in flight; the summary then reports the partial epoch. Once
  // `abort` (optional) is set as well, nothing more is awaited: the cloud is told the run
  // ended and the summary is written at once. Throws TransportError / ProtocolError when
  // the cloud is unreachable, refuses the handshake, goes silent, or reports an error.
  telemetry::RunSummary run(const std::atomic<bool>& stop, const std::atomic<bool>* abort = nullptr);

  models::StageModel& model() { return model_; }
  int splitPoint() const { return split_; }
  const std::string& uplinkCodec() const { return uplink_codec_; }
  const ReplayStats& replayStats() const { return replay_.stats(); }
  const std::vector<LinkSample>& linkHistory() const { return link_history_; }
  // Null unless the scheduler is active (scheduler.enabled, split.point: auto, or a split
  // schedule).
  const EdgeScheduler* scheduler() const { return scheduler_.get(); }

 private:
  void handshake(const std::atomic<bool>& stop);
  void installWelcome(transport::Message& welcome);
  void setUpScheduler(const transport::Welcome& welcome, const std::atomic<bool>& stop);
  void trainEpoch(EdgeEpoch& progress, telemetry::RunSummary& summary, const std::atomic<bool>& stop);
  // The replay buffer must be empty. Asks the cloud to checkpoint at the current step,
  // then writes the edge's own checkpoint.
  void checkpoint(int epoch, std::int64_t batch, const RunningStats& stats, double epoch_seconds,
                  const telemetry::RunSummary& summary);
  // Pings the cloud (RTT, clock offset) and, with `bandwidth`, sends probes of growing
  // size both ways. Only while nothing is in flight.
  void probe(bool bandwidth);
  // Plans (or applies the split schedule) and migrates when the choice differs.
  void replan(int epoch, std::int64_t remaining, int staleness, const std::string& trigger,
              telemetry::RunSummary& summary);
  // Moves the split to `to` and the uplink codec to `codec`; nothing may be in flight.
  void migrate(int epoch, int to, const std::string& codec, const std::string& trigger, telemetry::RunSummary& summary);
  RunningStats evaluateEpoch(int epoch, const std::atomic<bool>& stop);
  // Records the epoch under way (current_) in `summary`; `tested` with its evaluation.
  void recordEpoch(const RunningStats* test, telemetry::RunSummary& summary, std::uint64_t up_before,
                   std::uint64_t down_before);
  void sendTrainBatch(int epoch, const data::Batch& batch);
  // A training step that failed the divergence guard's check.
  struct Failure {
    std::uint64_t step = 0;
    std::string side;  // edge | cloud
    Verdict reason = Verdict::kNonFinite;
    double loss = 0.0;
  };
  // Applies the gradient of the oldest batch in flight, or returns why the guard refused it
  // (nothing applied then).
  std::optional<Failure> applyGradient(transport::Message& message, RunningStats& stats);
  // Where the run stands when `step` training steps are applied and epoch `epoch`
  // continues at `batch` (checkpoints and snapshots).
  RunPosition positionAt(std::uint64_t step, int epoch, std::int64_t batch, const RunningStats& stats) const;
  // Keeps an in-memory snapshot of the edge's stages and of where epoch `epoch` stands
  // (`batch`: its next batch to train) when `step` training steps have been applied.
  void takeSnapshot(std::uint64_t step, int epoch, std::int64_t batch, const RunningStats& stats);
  // The divergence guard's response to `failure` (docs/design.md): lands what is in flight
  // without applying it, rolls both sides back to a snapshot and trains on with a safer
  // setting, restarting the epoch's batches from the snapshot. Throws TrainingDiverged
  // past guard.max_rollbacks.
  void rollback(EdgeEpoch& e, const Failure& failure, telemetry::RunSummary& summary);
  // Shared fleet: lands what is in flight, sends the edge's stages to the cloud's
  // averaging round and installs the fleet's average that comes back (nothing to do at
  // split 0 or before any step since the last round).
  void averageWithFleet(int epoch);
  // K for `epoch`: the config's, capped by what the guard lowered it to.
  int stalenessFor(int epoch) const;
  // The K of this moment: `k` after split.staleness_warmup_steps, less before.
  int warmedUp(int k) const;
  void recordStep(const AppliedGradient& applied, const transport::Message& message, const RunningStats& stats,
                  double backward_seconds);
  void finishSummary(telemetry::RunSummary& summary, std::chrono::steady_clock::time_point start);
  transport::Message newMessage(transport::MessageType type, transport::Body body, int epoch = 0) const;

  config::Config config_;
  std::shared_ptr<spdlog::logger> log_;
  telemetry::TrainerMetrics* metrics_ = nullptr;
  std::unique_ptr<session::EdgeSession> session_;
  models::StageModel model_;
  int split_;
  std::shared_ptr<const data::Dataset> train_set_;
  std::shared_ptr<const data::Dataset> test_set_;
  std::unique_ptr<data::BatchLoader> train_loader_;
  std::unique_ptr<data::BatchLoader> test_loader_;
  std::unique_ptr<optim::StageOptimizers> optimizer_;
  transport::CodecCache codecs_;
  FeatureReplay replay_;
  std::string uplink_codec_;
  bool scheduling_ = false;
  scheduler::SideProfile edge_profile_;
  telemetry::LinkEstimator link_;  // before scheduler_, which reads it until destroyed
  std::unique_ptr<EdgeScheduler> scheduler_;
  std::vector<LinkSample> link_history_;
  PipelineSums pipeline_;  // over the whole run
  std::chrono::steady_clock::time_point started_;
  bool resume_requested_ = false;
  std::unique_ptr<checkpoint::CheckpointStore> checkpoints_;
  std::optional<RunPosition> resume_;  // where a resumed run continues
  std::optional<EdgeEpoch> current_;   // the epoch under way
  std::uint64_t next_step_ = 0;
  // The divergence guard's state: snapshots of this epoch and split, and the safer
  // setting it moved to (K cap, downlink codec, learning-rate scale).
  Snapshots snapshots_{3};
  std::optional<int> staleness_cap_;
  std::string downlink_codec_;
  double lr_scale_ = 1.0;
  int rollbacks_ = 0;
  // Shared fleet (from the Welcome): the averaging interval and where this edge stands.
  bool fleet_ = false;
  std::uint64_t average_every_ = 0;
  std::uint64_t rounds_ = 0;
  std::int64_t steps_since_round_ = 0;
  std::int64_t samples_since_round_ = 0;
};

}  // namespace tandem::pipeline

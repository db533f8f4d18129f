#pragma once
// The edge side of split training (shared/DESIGN.md): runs stages [0, p) on local data,
// sends activations to the cloud, and applies the activation gradients that come back,
// up to K batches behind (feature replay).
//
// Threads: the caller's thread computes; the transport owns the socket on its own thread;
// the data loader prepares batches on a third. The compute thread waits on the network
// only when K + 1 batches are in flight.

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <optional>

#include "compression/error_feedback.h"
#include "runtime/checkpoint/checkpoint.h"
#include "runtime/config/config.h"
#include "runtime/data/loader.h"
#include "runtime/models/stage_model.h"
#include "runtime/optim/stage_optimizers.h"
#include "runtime/pipeline/edge_scheduler.h"
#include "runtime/pipeline/replay_buffer.h"
#include "runtime/pipeline/setup.h"
#include "runtime/telemetry/link_estimator.h"
#include "runtime/telemetry/metrics.h"
#include "runtime/telemetry/summary.h"
#include "runtime/transport/tensor_frames.h"
#include "runtime/transport/transport.h"

namespace spdlog {
class logger;
}

namespace tandem::pipeline {

// One training step as the edge saw it: when its gradient was applied, under which split
// and codec, and the link estimate then (zeros when the scheduler is off). Written to
// <run.output_dir>/timeline-edge.csv at the end of the run.
struct LinkSample {
  std::int64_t step = 0;
  double seconds = 0.0;  // since the run started
  double uplink_bps = 0.0;
  double downlink_bps = 0.0;
  double rtt_seconds = 0.0;
  int epoch = 0;
  int split = 0;
  std::string codec;
  double loss = 0.0;
};

struct ReplayStats {
  std::size_t peak_buffer = 0;            // most entries ever held by the replay buffer
  int max_staleness = 0;                  // most edge updates between a send and its gradient
  std::map<int, std::int64_t> staleness;  // staleness → gradients applied with it
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
  // the gradients already in flight. Throws TransportError / ProtocolError when the cloud
  // is unreachable, refuses the handshake, goes silent, or reports an error.
  telemetry::RunSummary run(const std::atomic<bool>& stop);

  models::StageModel& model() { return model_; }
  int splitPoint() const { return split_; }
  const std::string& uplinkCodec() const { return uplink_codec_; }
  const ReplayStats& replayStats() const { return replay_stats_; }
  const std::vector<LinkSample>& linkHistory() const { return link_history_; }
  // Null unless the scheduler is active (scheduler.enabled, split.point: auto, or a split
  // schedule).
  const EdgeScheduler* scheduler() const { return scheduler_.get(); }

 private:
  void handshake(const std::atomic<bool>& stop);
  void trainEpoch(int epoch, int staleness, RunningStats& stats, telemetry::RunSummary& summary,
                  std::int64_t first_batch, double seconds_before, const std::atomic<bool>& stop);
  // Drains nothing itself: the replay buffer must be empty. Asks the cloud to checkpoint at
  // the current step, then writes the edge's own checkpoint.
  void checkpoint(int epoch, std::int64_t batch, const RunningStats& stats, double epoch_seconds,
                  const telemetry::RunSummary& summary);
  // Pings the cloud (RTT, clock offset) and, with `bandwidth`, sends probes of growing
  // size both ways. Only while nothing is in flight.
  void probe(bool bandwidth, const std::atomic<bool>& stop);
  // Plans (or applies the split schedule) and migrates when the choice differs.
  void replan(int epoch, std::int64_t remaining, int staleness, const std::string& trigger,
              telemetry::RunSummary& summary, const std::atomic<bool>& stop);
  // Moves the split to `to` and the uplink codec to `codec`; the replay buffer must be empty.
  void migrate(int epoch, int to, const std::string& codec, const std::string& trigger, telemetry::RunSummary& summary,
               const std::atomic<bool>& stop);
  bool useErrorFeedback() const;
  RunningStats evaluateEpoch(int epoch, const std::atomic<bool>& stop);
  void sendTrainBatch(int epoch, const data::Batch& batch);
  void applyGradient(transport::Message& message, RunningStats& stats);
  torch::Tensor forwardWithStash(const torch::Tensor& input, ReplayEntry& entry);
  // The next message from the cloud; throws on an Error message, on `timeout` (when
  // given), and on a message of another type than `expected`.
  transport::Message await(transport::MessageType expected, const char* waiting_for,
                           std::optional<std::chrono::milliseconds> timeout, const std::atomic<bool>& stop);
  // Sends `message` and awaits the reply; after a link outage the request is sent again.
  transport::Message request(transport::Message message, transport::MessageType expected, const char* waiting_for,
                             std::optional<std::chrono::milliseconds> timeout, const std::atomic<bool>& stop);
  // The next message that needs the caller, within `wait`: link trouble is handled here
  // (resynchronisation), duplicates are dropped, early gradients are held back until their
  // turn.
  std::optional<transport::Message> next(std::chrono::milliseconds wait, const std::atomic<bool>& stop);
  // After lost messages or a silent peer: asks the cloud where it stands and re-sends.
  void recover();
  void applyResync(const transport::ResyncInfo& info);
  static bool isControlReply(transport::MessageType type);
  bool answersOutstanding(const transport::Message& reply) const;
  transport::Message activationMessage(const ReplayEntry& entry, const torch::Tensor& activation);
  void sendEpochBegin();
  void shutdown(bool completed, const std::string& reason);
  // Sends and counts the bytes (training traffic: heartbeats are not counted).
  void send(transport::Message message);

  config::Config config_;
  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<transport::Transport> transport_;
  models::StageModel model_;
  int split_;
  std::shared_ptr<const data::Dataset> train_set_;
  std::shared_ptr<const data::Dataset> test_set_;
  std::unique_ptr<data::BatchLoader> train_loader_;
  std::unique_ptr<data::BatchLoader> test_loader_;
  std::unique_ptr<optim::StageOptimizers> optimizer_;
  transport::CodecCache codecs_;
  compression::ErrorFeedback error_feedback_;
  std::string uplink_codec_;
  bool scheduling_ = false;
  scheduler::SideProfile edge_profile_;
  telemetry::LinkEstimator link_;  // before scheduler_, which reads it until destroyed
  std::unique_ptr<EdgeScheduler> scheduler_;
  std::vector<LinkSample> link_history_;
  telemetry::TrainerMetrics* metrics_ = nullptr;
  telemetry::PipelineBound pipeline_;  // sums over steps until the end of the run
  std::int64_t pipeline_samples_ = 0;
  std::int64_t pipeline_steps_ = 0;
  std::chrono::steady_clock::time_point started_;
  bool resume_requested_ = false;
  std::unique_ptr<checkpoint::CheckpointStore> checkpoints_;
  // Where a resumed run continues.
  struct ResumePoint {
    int epoch = 0;
    std::int64_t batch = 0;
    RunningStats stats;
    double epoch_seconds = 0.0;
    std::vector<telemetry::EpochRecord> history;
  };
  std::optional<ResumePoint> resume_;

  // Link recovery.
  std::deque<transport::Message> deferred_;                  // received while resynchronising
  std::map<std::uint64_t, transport::Message> early_gradients_;  // ahead of the oldest in flight
  std::optional<transport::Message> outstanding_;            // the request awaiting its reply
  std::map<std::uint64_t, std::pair<torch::Tensor, torch::Tensor>> eval_in_flight_;  // step → inputs, labels
  int current_epoch_ = 0;
  int current_staleness_ = 0;
  bool epoch_open_ = false;
  std::uint64_t resync_requests_ = 0;

  std::uint64_t session_ = 0;
  std::uint64_t next_step_ = 0;
  std::uint64_t updates_ = 0;
  std::uint64_t bytes_up_ = 0;
  std::uint64_t bytes_down_ = 0;
  ReplayBuffer buffer_{1};
  ReplayStats replay_stats_;
};

}  // namespace tandem::pipeline

#pragma once
// The edge side of split training (shared/DESIGN.md): runs stages [0, p) on local data,
// sends activations to the cloud, and applies the activation gradients that come back,
// up to K batches behind (feature replay).
//
// Threads: the caller's thread computes; the transport owns the socket on its own thread;
// the data loader prepares batches on a third. The compute thread waits on the network
// only when K + 1 batches are in flight.

#include <atomic>
#include <map>
#include <memory>
#include <optional>

#include "compression/error_feedback.h"
#include "runtime/config/config.h"
#include "runtime/data/loader.h"
#include "runtime/models/stage_model.h"
#include "runtime/optim/stage_optimizers.h"
#include "runtime/pipeline/replay_buffer.h"
#include "runtime/pipeline/setup.h"
#include "runtime/telemetry/summary.h"
#include "runtime/transport/tensor_frames.h"
#include "runtime/transport/transport.h"

namespace spdlog {
class logger;
}

namespace tandem::pipeline {

struct ReplayStats {
  std::size_t peak_buffer = 0;            // most entries ever held by the replay buffer
  int max_staleness = 0;                  // most edge updates between a send and its gradient
  std::map<int, std::int64_t> staleness;  // staleness → gradients applied with it
};

class EdgeTrainer {
 public:
  EdgeTrainer(config::Config config, std::unique_ptr<transport::Transport> transport);
  ~EdgeTrainer();

  // Handshake, run.epochs epochs of training and evaluation, orderly shutdown; writes
  // summary-edge.json. Stops early (summary.interrupted) once `stop` is set, after applying
  // the gradients already in flight. Throws TransportError / ProtocolError when the cloud
  // is unreachable, refuses the handshake, goes silent, or reports an error.
  telemetry::RunSummary run(const std::atomic<bool>& stop);

  models::StageModel& model() { return model_; }
  int splitPoint() const { return split_; }
  const ReplayStats& replayStats() const { return replay_stats_; }

 private:
  void handshake(const std::atomic<bool>& stop);
  void trainEpoch(int epoch, int staleness, RunningStats& stats, const std::atomic<bool>& stop);
  RunningStats evaluateEpoch(int epoch, const std::atomic<bool>& stop);
  void sendTrainBatch(int epoch, const data::Batch& batch);
  void applyGradient(transport::Message& message, RunningStats& stats);
  torch::Tensor forwardWithStash(const torch::Tensor& input, ReplayEntry& entry);
  // The next message from the cloud; throws on an Error message, on `timeout` (when
  // given), and on a message of another type than `expected`.
  transport::Message await(transport::MessageType expected, const char* waiting_for,
                           std::optional<std::chrono::milliseconds> timeout, const std::atomic<bool>& stop);
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
  std::unique_ptr<compression::ErrorFeedback> error_feedback_;

  std::uint64_t session_ = 0;
  std::uint64_t next_step_ = 0;
  std::uint64_t updates_ = 0;
  std::uint64_t bytes_up_ = 0;
  std::uint64_t bytes_down_ = 0;
  ReplayBuffer buffer_{1};
  ReplayStats replay_stats_;
};

}  // namespace tandem::pipeline

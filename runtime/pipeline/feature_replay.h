#pragma once
// Feature replay on the edge (docs/design.md, "Feature replay"): the edge runs up to K
// batches ahead of the gradients. This unit owns everything about those batches between
// the forward of stages [0, p) and the update their gradient makes, and needs no network:
//   - the staleness gate: at most K + 1 batches in flight (ReplayBuffer);
//   - what is kept per batch: the input (recompute: the forward is re-run with the current
//     weights when the gradient comes) or the activation with its graph on a snapshot of
//     the weights (retain);
//   - BatchNorm: the replayed forward must not count a batch twice in the running
//     statistics, so they are restored after it;
//   - error feedback: the quantisation error of each in-flight activation, used to correct
//     its gradient;
//   - staleness compensation: a gradient s updates old is applied with a tempered step
//     (split.compensation).
//
// Threading: the edge's compute thread only. The model and optimizer are passed per call
// because a re-partition replaces the edge's stages (only while nothing is in flight).

#include <cstdint>
#include <map>
#include <string>

#include "compression/error_feedback.h"
#include "runtime/config/config.h"
#include "runtime/data/dataset.h"
#include "runtime/models/stage_model.h"
#include "runtime/optim/stage_optimizers.h"
#include "runtime/pipeline/replay_buffer.h"
#include "runtime/transport/tensor_frames.h"

namespace tandem::pipeline {

struct ReplayStats {
  std::size_t peak_buffer = 0;            // most entries ever held by the replay buffer
  int max_staleness = 0;                  // most edge updates between a send and its gradient
  std::map<int, std::int64_t> staleness;  // staleness → gradients applied with it
};

// What apply() did with one gradient.
struct AppliedGradient {
  ReplayEntry entry;  // the batch (its input, labels, send time and wire size)
  int staleness = 0;  // edge updates between the batch's send and this update
  // False when the divergence guard refused the step: the gradient from the cloud or the
  // edge stages' own gradients were not finite. Nothing was changed then.
  bool applied = true;
};

class FeatureReplay {
 public:
  FeatureReplay(const config::SplitConfig& split, const config::OptimizerConfig& optimizer, bool error_feedback);

  // K for the batches sent from now on; only while nothing is in flight.
  void setStaleness(int staleness);
  // Raises K while batches are in flight (the warm-up of split.staleness_warmup_steps).
  void raiseStaleness(int staleness);
  bool full() const { return buffer_.full(); }
  bool empty() const { return buffer_.empty(); }
  std::size_t inFlight() const { return buffer_.size(); }
  // The oldest batch in flight, which must be `step` (gradients come back in order);
  // throws ProtocolError otherwise.
  const ReplayEntry& oldest(std::uint64_t step) const;

  // Runs stages [0, split) of `model` on `batch` and records it as in flight under
  // `step`; returns the boundary activation to send (the input itself at split 0).
  // Throws InvariantError when the gate is closed (full()).
  torch::Tensor forward(models::StageModel& model, int split, const data::Batch& batch, std::uint64_t step, int epoch);

  // The frame that carries the activation of in-flight batch `step` under `codec_spec`
  // ("none": raw float32). With error feedback (and split > 0, a lossy codec) the
  // quantisation error is kept for the gradient.
  transport::TensorFrame encode(std::uint64_t step, const torch::Tensor& activation, const std::string& codec_spec,
                                int split, transport::CodecCache& codecs);
  // When and how big the newest batch went out (link telemetry).
  void markSent(double sent_at_seconds, std::uint64_t wire_bytes);

  // Applies the gradient of the oldest in-flight batch, `step` (`grad` is the boundary
  // gradient; undefined at split 0, where the edge has no stages): error-feedback
  // correction, replay or retained backward, then an optimizer step tempered by the
  // staleness. Throws ProtocolError when `step` is not the oldest in flight.
  // Before the optimizer step every gradient is checked (divergence guard); `poison`
  // (fault injection) makes the edge stages' gradients NaN first.
  AppliedGradient apply(std::uint64_t step, torch::Tensor grad, models::StageModel& model, int split,
                        optim::StageOptimizers& optimizer, bool poison = false);
  // Forgets the oldest in-flight batch, `step`, without any update (its step failed the
  // divergence guard, or comes after one that did).
  ReplayEntry discard(std::uint64_t step);

  // Edge optimizer steps so far (a resumed run continues the count).
  std::uint64_t updates() const { return updates_; }
  void setUpdates(std::uint64_t updates) { updates_ = updates; }
  const ReplayStats& stats() const;

  // True when activations at `split` under `codec_spec` carry error feedback.
  bool errorFeedbackFor(const std::string& codec_spec, int split) const;

 private:
  torch::Tensor forwardRetained(models::StageModel& model, int split, const torch::Tensor& input, ReplayEntry& entry);
  void backwardRetained(ReplayEntry& entry, const torch::Tensor& grad, models::StageModel& model, int split);
  void backwardRecomputed(const ReplayEntry& entry, const torch::Tensor& grad, models::StageModel& model, int split);
  void step(optim::StageOptimizers& optimizer, int staleness);

  enum class Compensation { kNone, kLearningRate, kMomentum };
  bool retain_ = false;
  Compensation compensation_ = Compensation::kMomentum;
  double momentum_ = 0.0;
  bool error_feedback_enabled_ = false;

  ReplayBuffer buffer_{1};
  compression::ErrorFeedback error_feedback_;
  std::uint64_t updates_ = 0;
  mutable ReplayStats stats_;
};

}  // namespace tandem::pipeline

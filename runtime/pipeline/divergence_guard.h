#pragma once
// The divergence guard (docs/design.md, "Divergence guard"): training never carries on
// from a non-finite or exploding loss. Both sides check every training step before its
// optimizer step — the cloud its loss and its stages' gradients, the edge the returned
// gradient and its own stages' gradients — and a step that fails is not applied. The edge
// then rolls both sides back to an in-memory snapshot taken at the same step on each side
// and continues with a safer setting (SaferSettings); past guard.max_rollbacks the run
// stops with TrainingDiverged (exit 1).
//
// This unit holds the pieces both sides share: the check of one step (LossWatch, the
// gradient test), the snapshots, and the policy of what "safer" means.

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "runtime/checkpoint/checkpoint.h"
#include "runtime/common/error.h"
#include "runtime/config/config.h"
#include "runtime/models/stage_model.h"

namespace tandem::pipeline {

// A run that diverged more often than guard.max_rollbacks allows, or could not roll back.
class TrainingDiverged : public Error {
 public:
  using Error::Error;
};

// What the check of one training step found. The values travel in StepResult::verdict.
enum class Verdict : std::uint8_t {
  kOk = 0,
  kNonFinite = 1,  // the loss or a gradient is NaN or infinite
  kSpike = 2,      // the loss is far above its recent level (guard.spike_factor)
};
const char* verdictName(Verdict verdict);
// True for a wire byte that spells a Verdict.
bool isKnownVerdict(std::uint8_t raw);

// The recent level of the training loss: the median of the last guard.window accepted
// losses. A loss is a spike when it is above spike_factor × that median and more than 2.0
// above it (so a loss near zero does not make an ordinary batch a spike); the check is
// off until the window is full and when spike_factor is 0.
class LossWatch {
 public:
  explicit LossWatch(const config::GuardConfig& guard);
  // kNonFinite, kSpike or kOk for a step whose loss is `loss`; changes nothing.
  Verdict check(double loss) const;
  // Records the loss of a step that was applied.
  void accept(double loss);
  // The median of the window (0 before any loss).
  double level() const;

 private:
  double spike_factor_;
  std::size_t window_;
  std::deque<double> recent_;
};

// True when every gradient of `parameters` that is defined is finite (one reduction per
// tensor, one synchronisation for all).
bool gradientsFinite(const std::vector<torch::Tensor>& parameters);

// Makes the defined gradients of `parameters` NaN (fault injection: guard.inject_nan_step).
void poisonGradients(const std::vector<torch::Tensor>& parameters);

// The last few snapshots of one side, oldest first, all of the current epoch and split.
class Snapshots {
 public:
  explicit Snapshots(std::size_t capacity) : capacity_(capacity) {}
  void clear() { kept_.clear(); }
  // Keeps `snapshot` (its step larger than every kept one), dropping the oldest past the
  // capacity.
  void add(checkpoint::Checkpoint snapshot);
  bool empty() const { return kept_.empty(); }
  // The steps held, ascending.
  std::vector<std::uint64_t> steps() const;
  // The snapshot of `step`; nullptr if not held.
  const checkpoint::Checkpoint* find(std::uint64_t step) const;
  // Drops every snapshot after `step` (they belong to the abandoned path).
  void dropAfter(std::uint64_t step);
  // Where to roll back to after a failure at step `failed`: the newest snapshot at least
  // `min_age` steps before it (the loss may already have been rising at a newer one), else
  // the oldest held. Throws TrainingDiverged when none is held.
  std::uint64_t target(std::uint64_t failed, std::uint64_t min_age) const;

 private:
  std::size_t capacity_;
  std::deque<checkpoint::Checkpoint> kept_;
};

// What a run trains with; the guard makes it safer one step at a time.
struct TrainingSetting {
  int staleness = 0;
  std::string uplink_codec = "none";
  std::string downlink_codec = "none";
  double lr_scale = 1.0;  // on top of the learning-rate schedule
};

// The policy (docs/design.md): the first that applies of
//   1. K > 0: halve K (4 → 2 → 1 → 0): stale gradients are the usual cause;
//   2. a lossy codec on either direction: use `none` there;
//   3. otherwise multiply the learning rate by guard.lr_factor.
// Returns the new setting; `action` gets a short description ("K 4 → 2").
TrainingSetting saferSetting(const TrainingSetting& current, const config::GuardConfig& guard, std::string& action);

// True when fault injection (guard.inject_nan_step, guard.inject_nan_on) makes the
// gradients of training step `step` NaN on `role`.
bool injectNanAt(const config::GuardConfig& guard, config::Role role, std::uint64_t step);

}  // namespace tandem::pipeline

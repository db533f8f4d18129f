#pragma once
// One LibTorch optimizer per model stage. Keeping the state per stage is what lets a
// re-partition move a stage's weights *and* its optimizer state (momentum, Adam moments)
// between edge and cloud, and lets a split run update each parameter exactly as a
// standalone run would.
//
// Threading: used by the one compute thread that owns the stages.

#include <torch/optim/optimizer.h>

#include <map>
#include <memory>
#include <vector>

#include "runtime/config/config.h"
#include "runtime/models/stage_model.h"

namespace tandem::optim {

class StageOptimizers {
 public:
  // Optimizers for stages [first, last) of `model` (which must outlive this object).
  StageOptimizers(const config::OptimizerConfig& config, models::StageModel& model, int first, int last);

  void zeroGrad();
  void step();
  // Steps only the optimizers of stages [first, last) (a fleet's cloud holds every stage,
  // and a step trains those at or above the lowest split in it).
  void step(int first, int last);
  // One step with the learning rate scaled by `lr_factor` and, for SGD, the momentum set
  // to `momentum` (negative: unchanged); both are restored afterwards. The edge uses it
  // to compensate stale gradients.
  void stepWith(double lr_factor, double momentum);
  void setLearningRate(double lr);
  double learningRate() const { return lr_; }

  // Adds or removes one stage's optimizer (re-partitioning).
  void addStage(int stage);
  void removeStage(int stage);
  bool hasStage(int stage) const { return optimizers_.count(stage) > 0; }

  // The optimizer state of one stage as plain tensors, one group per parameter in
  // StageModel::parameters() order. SGD: [momentum_buffer] (empty before the first step);
  // Adam: [step, exp_avg, exp_avg_sq]. importState() accepts exactly what exportState()
  // produced for the same architecture and optimizer, and throws InvariantError otherwise.
  std::vector<std::vector<torch::Tensor>> exportState(int stage) const;
  void importState(int stage, const std::vector<std::vector<torch::Tensor>>& state);

 private:
  std::unique_ptr<torch::optim::Optimizer> make(int stage) const;

  config::OptimizerConfig config_;
  models::StageModel& model_;
  double lr_;
  std::map<int, std::unique_ptr<torch::optim::Optimizer>> optimizers_;
};

}  // namespace tandem::optim

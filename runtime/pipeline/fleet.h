#pragma once
// A fleet's averaging (docs/design.md, "Fleets"): every stage of the model has replicas,
// one on each edge that runs it and the cloud's own copy, trained by the sessions whose
// split is at or below it. A round replaces each stage's replicas by their average
// weighted by the samples each saw since the last round (FedAvg), optimizer state
// included. No network: the cloud's trainer and the tests call these.

#include <cstdint>
#include <vector>

#include "runtime/config/config.h"
#include "runtime/models/stage_model.h"
#include "runtime/optim/stage_optimizers.h"
#include "runtime/transport/tensor_frames.h"
#include "runtime/transport/transport.h"

namespace tandem::pipeline {

// One holder's copy of one stage.
struct StageReplica {
  std::vector<torch::Tensor> state;                   // parameters then buffers (StageModel::state order)
  std::vector<std::vector<torch::Tensor>> optimizer;  // per parameter, as StageOptimizers::exportState
  double weight = 0.0;                                // training samples it saw since the last round
};

StageReplica captureStage(const models::StageModel& model, const optim::StageOptimizers& optimizer, int stage);
// Installs `replica` into `stage` (values copied; the optimizer must hold the stage).
void installStage(const StageReplica& replica, models::StageModel& model, optim::StageOptimizers& optimizer, int stage);

// The average of `replicas` of one stage, weighted by their weights (all must be > 0).
// Integer buffers (BatchNorm's batch counts, Adam's step) are rounded. A replica without
// optimizer state for a parameter counts as zeros there: that is SGD's momentum before
// its first step, and Adam's initial state (so averaging one that has not stepped with
// one that has is exact). The result's weight is the sum.
StageReplica averageReplicas(const std::vector<const StageReplica*>& replicas);

// Appends stages [0, stages) (state, then optimizer tensors; AverageInfo's layout filled)
// to `message`, whose body must be AverageInfo.
void addStages(transport::Message& message, const models::StageModel& model, const optim::StageOptimizers& optimizer,
               int stages);

// The replicas of stages [0, info.stages) in an Average or AverageReply, each checked
// against `model` before use: tensor count and layout, shapes and dtypes, optimizer tensor
// counts for `optimizer` (SGD 0 or 1, Adam 0 or 3), finite values. Throws
// WireError(kInvalidTensor) naming what is wrong. Consumes the payloads.
std::vector<StageReplica> stagesFromMessage(transport::Message& message, const models::StageModel& model,
                                            config::OptimizerKind optimizer, transport::CodecCache& codecs);

}  // namespace tandem::pipeline

#pragma once
// The state of a range of stages, and moving it between edge and cloud (live
// re-partitioning) or to disk (checkpoints). Both sides hold the whole architecture, so
// only values move: the stages' parameters and buffers (StageModel::state order), then
// their optimizer state with a layout (optimizer tensors per parameter: 0 before the first
// step, SGD 1, Adam 3). Callers drain in-flight batches first, so no update is lost or
// repeated.

#include <cstdint>
#include <vector>

#include "runtime/models/stage_model.h"
#include "runtime/optim/stage_optimizers.h"
#include "runtime/transport/tensor_frames.h"
#include "runtime/transport/transport.h"

namespace tandem::pipeline {

struct StageState {
  std::vector<torch::Tensor> tensors;  // weights and buffers, then optimizer tensors
  std::vector<std::uint32_t> optimizer_layout;
};

// Copies of stages [first, last): values and optimizer state (the optimizer keeps them).
StageState captureStages(const models::StageModel& model, const optim::StageOptimizers& optimizer, int first,
                         int last);

// Installs `state` into stages [first, last). With `add_to_optimizer` the stages are added
// to `optimizer` first (a migration); otherwise they must already be there (a checkpoint).
// Throws WireError(kInvalidTensor) on a tensor or layout that does not fit the
// architecture; nothing is changed then.
void restoreStages(const StageState& state, models::StageModel& model, optim::StageOptimizers& optimizer, int first,
                   int last, bool add_to_optimizer);

// Appends stages [first, last) to `message` (body: MigrateInfo; its optimizer_layout is
// filled) and removes them from `optimizer`.
void packStages(transport::Message& message, models::StageModel& model, optim::StageOptimizers& optimizer, int first,
                int last);

// Installs stages [first, last) from `message` and adds them to `optimizer`.
void unpackStages(transport::Message& message, models::StageModel& model, optim::StageOptimizers& optimizer, int first,
                  int last, transport::CodecCache& codecs);

}  // namespace tandem::pipeline

#pragma once
// Checkpointing a trainer's run, one helper for both sides: the position of the run (step,
// epoch, batch, split, the epoch's statistics so far, the finished epochs' records) and
// the state of the stages a side holds (weights, buffers, optimizer state).

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/checkpoint/checkpoint.h"
#include "runtime/models/stage_model.h"
#include "runtime/optim/stage_optimizers.h"
#include "runtime/pipeline/setup.h"
#include "runtime/telemetry/summary.h"

namespace tandem::pipeline {

struct RunPosition {
  std::uint64_t step = 0;  // training steps applied on both sides
  int epoch = 0;           // the epoch to continue (0-based)
  std::int64_t batch = 0;  // the first batch of `epoch` not yet trained
  int split = 0;
  int staleness = 0;
  std::string codec;                            // the uplink codec in force
  std::uint64_t updates = 0;                    // edge optimizer steps (edge only)
  RunningStats stats;                           // `epoch` so far
  double epoch_seconds = 0.0;                   // training time spent in `epoch` so far
  std::vector<telemetry::EpochRecord> history;  // the epochs finished before `epoch`
};

// A checkpoint of `position` and of stages [first, last) of `model` with their optimizer.
checkpoint::Checkpoint captureRun(const std::string& role, const std::string& run_name, const RunPosition& position,
                                  const models::StageModel& model, const optim::StageOptimizers& optimizer, int first,
                                  int last);

// Installs the checkpoint's stage state into [first, last) (already in `optimizer`) and
// returns the position it recorded. Throws WireError(kInvalidTensor) when the state does
// not fit the architecture.
RunPosition restoreRun(const checkpoint::Checkpoint& checkpoint, models::StageModel& model,
                       optim::StageOptimizers& optimizer, int first, int last);

// The position a checkpoint records, without touching any stage.
RunPosition positionOf(const checkpoint::Checkpoint& checkpoint);

}  // namespace tandem::pipeline

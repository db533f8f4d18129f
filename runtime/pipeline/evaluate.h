#pragma once
// Evaluation of a whole model on a loader's split (standalone and tests).

#include <atomic>

#include "runtime/data/loader.h"
#include "runtime/models/stage_model.h"
#include "runtime/pipeline/setup.h"

namespace tandem::pipeline {

// Mean loss and accuracy of `model` over one pass of `loader` (in eval mode, no grad;
// the model's training mode is restored). Stops early when `stop` is set.
RunningStats evaluate(models::StageModel& model, data::BatchLoader& loader, int epoch, const std::atomic<bool>& stop);

}  // namespace tandem::pipeline

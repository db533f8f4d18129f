#pragma once
// Measures what the cost model needs on this machine: per-stage forward and backward time
// with real batches, and the model's sizes. Profiles are cached in
// <scheduler.profile_dir>/<model>-b<batch>-<host>-<role>-<fingerprint>.json and reused.

#include <torch/types.h>

#include <string>

#include "runtime/config/config.h"
#include "runtime/models/stage_model.h"
#include "runtime/scheduler/profile.h"

namespace tandem::scheduler {

std::string hostName();

// Times every stage's forward and backward (median of `iterations`, after a warm-up) on
// `input` (a batch for stage 0). The model's weights, buffers and gradients are left as
// they were.
SideProfile measureStages(models::StageModel& model, const torch::Tensor& input, int iterations);

// Shapes and byte sizes of `model` for batches of `batch_size`.
ModelProfile describeModel(const models::StageModel& model, std::int64_t batch_size, config::OptimizerKind optimizer);

// The profile of this side, from the cache when present, measured (and cached) otherwise.
SideProfile sideProfile(const config::Config& config, models::StageModel& model, const torch::Tensor& input,
                        config::Role role);

}  // namespace tandem::scheduler

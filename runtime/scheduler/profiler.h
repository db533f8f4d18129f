#pragma once
// Measures what the cost model needs on this machine: per-stage forward and backward time
// with real batches, and the model's sizes. Profiles are cached in
// <scheduler.profile_dir>/<model>-b<batch>-<host>-<role>-<fingerprint>.json and reused.

#include <torch/types.h>

#include <map>
#include <string>
#include <vector>

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

// Encode + decode time per float32 input byte of each codec spec ("none" is skipped: the
// cost model charges it nothing), on a batch of `numel` normal floats shaped [64, numel/64],
// median of `iterations` after a warm-up. Throws compression::CodecError on a bad spec.
std::map<std::string, double> measureCodecs(const std::vector<std::string>& codecs, int iterations,
                                            std::int64_t numel = 1 << 18);

// The codecs this side's cost model may price: scheduler.codecs and both
// compression.uplink and compression.downlink, without "none".
std::vector<std::string> codecsToCalibrate(const config::Config& config);

// The profile of this side, from the cache when present, measured (and cached) otherwise.
// The codec costs are calibrated on this host too (measureCodecs for
// codecsToCalibrate(config)) and cached in the same file; a cached profile that lacks a
// codec has just that codec measured and the file rewritten.
SideProfile sideProfile(const config::Config& config, models::StageModel& model, const torch::Tensor& input,
                        config::Role role);

}  // namespace tandem::scheduler

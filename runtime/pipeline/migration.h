#pragma once
// Moving stages between edge and cloud (live re-partitioning). The sender packs the
// stages' parameters and buffers, then their optimizer state, into a Migrate or
// MigrateAck message and drops them from its optimizer; the receiver checks every tensor
// against its own copy of the architecture, copies the values in and takes the stages
// into its optimizer with that state. Both sides hold the whole architecture, so only
// values move. Callers drain in-flight batches first, so no update is lost or repeated.

#include "runtime/models/stage_model.h"
#include "runtime/optim/stage_optimizers.h"
#include "runtime/transport/tensor_frames.h"
#include "runtime/transport/transport.h"

namespace tandem::pipeline {

// Appends stages [first, last) to `message` (whose body must be a MigrateInfo; its
// optimizer_layout is filled) and removes them from `optimizer`.
void packStages(transport::Message& message, models::StageModel& model, optim::StageOptimizers& optimizer, int first,
                int last);

// Installs stages [first, last) from `message` and adds them to `optimizer`. Throws
// WireError(kInvalidTensor) when the tensors do not match the architecture (nothing is
// changed then).
void unpackStages(transport::Message& message, models::StageModel& model, optim::StageOptimizers& optimizer, int first,
                  int last, transport::CodecCache& codecs);

}  // namespace tandem::pipeline

#pragma once
// The cloud's compute on one batch, apart from the conversation: decoding and checking the
// edge's batch, the training step of stages [p, n) (forward, loss, backward, optimizer
// step) and the evaluation of a batch. No network: tests call these directly.

#include <cstdint>

#include "runtime/models/stage_model.h"
#include "runtime/optim/stage_optimizers.h"
#include "runtime/transport/tensor_frames.h"
#include "runtime/transport/transport.h"

namespace tandem::pipeline {

struct CloudBatch {
  torch::Tensor activation;  // [batch, boundary shape...] at the split
  torch::Tensor labels;      // [batch], int64 in [0, classes)
  std::int64_t size = 0;
  double decode_seconds = 0.0;
};

// The activation and labels of an Activations / EvalActivations message for `split`, each
// checked (count, dtype, shape, 1 <= batch <= max_batch, labels in range) before use.
// Throws WireError(kInvalidTensor) naming what is wrong. Consumes the payloads.
CloudBatch decodeBatch(transport::Message& message, const models::StageModel& model, int split, std::int64_t max_batch,
                       transport::CodecCache& codecs);

struct StepOutcome {
  double loss = 0.0;  // mean over the batch
  std::int64_t correct = 0;
  torch::Tensor boundary_gradient;  // d loss / d activation (training at split > 0 only)
  double compute_seconds = 0.0;
};

// One training step of stages [split, stages) on `batch`: forward, cross-entropy,
// backward, optimizer step.
StepOutcome trainStep(models::StageModel& model, optim::StageOptimizers& optimizer, int split, int stages,
                      CloudBatch& batch);

// Loss and correct predictions of stages [split, stages) on `batch`, in eval mode,
// changing nothing.
StepOutcome evaluateStep(models::StageModel& model, int split, int stages, const CloudBatch& batch);

}  // namespace tandem::pipeline

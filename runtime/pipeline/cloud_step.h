#pragma once
// The cloud's compute on one batch, apart from the conversation: decoding and checking the
// edge's batch, the training step of stages [p, n) (forward, loss, backward, optimizer
// step) and the evaluation of a batch. No network: tests call these directly.

#include <cstdint>

#include "runtime/data/dataset.h"
#include "runtime/models/stage_model.h"
#include "runtime/optim/stage_optimizers.h"
#include "runtime/pipeline/divergence_guard.h"
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
// At split 0 the input may come as the dataset's uint8 pixels (`data`.uint8_pixels): they
// are normalised here as on the edge. Throws WireError(kInvalidTensor) naming what is
// wrong. Consumes the payloads.
CloudBatch decodeBatch(transport::Message& message, const models::StageModel& model, int split, std::int64_t max_batch,
                       transport::CodecCache& codecs, const data::DatasetInfo& data);

struct StepOutcome {
  double loss = 0.0;  // mean over the batch
  std::int64_t correct = 0;
  torch::Tensor boundary_gradient;  // d loss / d activation (training at split > 0 only)
  double compute_seconds = 0.0;
  Verdict verdict = Verdict::kOk;  // not kOk: the step was not applied, boundary_gradient is zeros
};

// The divergence guard's part in a cloud step.
struct StepGuard {
  LossWatch* watch = nullptr;  // the session's recent losses; takes the loss of an applied step
  bool poison = false;         // fault injection: make this step's gradients NaN
};

// One training step of stages [split, stages) on `batch`: forward, cross-entropy,
// backward, optimizer step. With `guard`, the step is checked before its optimizer step
// (a non-finite or spiking loss, a non-finite gradient) and not applied when it fails.
StepOutcome trainStep(models::StageModel& model, optim::StageOptimizers& optimizer, int split, int stages,
                      CloudBatch& batch, const StepGuard& guard = {});

// One part of a cross-edge step: an edge's batch, entering the model at its split.
struct StepPart {
  CloudBatch* batch = nullptr;
  int split = 0;
};

// One training step over the batches of several edges of a fleet, as one batch: each part
// runs the stages from its own split, where parts meet they are concatenated, and the loss
// is the mean over every sample. So the cloud's stages take exactly the step a single
// batch of all the samples would give. Each part's boundary gradient is that of its own
// batch's mean loss (the joint gradient × total / part size), which is what the edge would
// have got alone: averaged over the edges by samples, their updates are the joint batch's.
// Only stages [lowest split, stages) are stepped. The guard checks the joint loss; a
// failed check applies nothing for any part. `compute_seconds` is the whole step's.
std::vector<StepOutcome> trainJointStep(models::StageModel& model, optim::StageOptimizers& optimizer,
                                        std::vector<StepPart>& parts, int stages, const StepGuard& guard = {});

// Loss and correct predictions of stages [split, stages) on `batch`, in eval mode,
// changing nothing.
StepOutcome evaluateStep(models::StageModel& model, int split, int stages, const CloudBatch& batch);

}  // namespace tandem::pipeline

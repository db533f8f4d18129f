#include "runtime/pipeline/cloud_step.h"

#include <torch/nn/functional/loss.h>
#include <torch/utils.h>

#include <chrono>

#include "runtime/pipeline/link.h"

namespace tandem::pipeline {

using Clock = std::chrono::steady_clock;
using transport::ErrorCode;
using transport::WireError;

CloudBatch decodeBatch(transport::Message& message, const models::StageModel& model, int split, std::int64_t max_batch,
                       transport::CodecCache& codecs, const data::DatasetInfo& data) {
  expectTensorCount(message, 2);
  const auto& boundary = model.boundaryShapes()[static_cast<std::size_t>(split)];
  const bool pixels = split == 0 && data.uint8_pixels && message.header.tensors[0].dtype == transport::DType::kUInt8;
  const auto batch = expectBatchTensor(message, 0, pixels ? transport::DType::kUInt8 : transport::DType::kFloat32,
                                       boundary, max_batch, "activation");
  const auto labels_batch = expectBatchTensor(message, 1, transport::DType::kInt64, {}, max_batch, "labels");
  if (labels_batch != batch) {
    throw WireError(ErrorCode::kInvalidTensor,
                    "labels for " + std::to_string(labels_batch) + " samples, activation for " + std::to_string(batch));
  }
  CloudBatch out;
  out.size = batch;
  const auto decode_start = Clock::now();
  out.activation = transport::frameToTensor(message.header.tensors[0], std::move(message.payloads[0]), codecs);
  if (pixels) out.activation = data::normalizePixels(out.activation, data);
  out.decode_seconds = std::chrono::duration<double>(Clock::now() - decode_start).count();
  out.labels = transport::frameToTensor(message.header.tensors[1], std::move(message.payloads[1]), codecs);
  const auto classes = model.spec().num_classes;
  if (out.labels.min().item<std::int64_t>() < 0 || out.labels.max().item<std::int64_t>() >= classes) {
    throw WireError(ErrorCode::kInvalidTensor, "labels outside 0.." + std::to_string(classes - 1));
  }
  return out;
}

StepOutcome trainStep(models::StageModel& model, optim::StageOptimizers& optimizer, int split, int stages,
                      CloudBatch& batch, const StepGuard& guard) {
  const auto start = Clock::now();
  model.train(true);
  optimizer.zeroGrad();
  auto activation = batch.activation;
  if (split > 0) activation = activation.detach().requires_grad_(true);
  const auto logits = model.forward(activation, split, stages);
  const auto loss = torch::nn::functional::cross_entropy(logits, batch.labels);
  StepOutcome out;
  out.loss = loss.item<double>();
  out.correct = logits.detach().argmax(1).eq(batch.labels).sum().item<std::int64_t>();
  out.verdict = guard.watch ? guard.watch->check(out.loss) : Verdict::kOk;
  if (out.verdict == Verdict::kOk) {
    loss.backward();
    const auto parameters = model.parameters(split, stages);
    if (guard.poison) poisonGradients(parameters);
    if (guard.watch && !gradientsFinite(parameters)) out.verdict = Verdict::kNonFinite;
  }
  if (out.verdict == Verdict::kOk) {
    optimizer.step();
    if (guard.watch) guard.watch->accept(out.loss);
    if (split > 0) out.boundary_gradient = activation.grad();
  } else {
    optimizer.zeroGrad();
    if (split > 0) out.boundary_gradient = torch::zeros_like(batch.activation);
  }
  out.compute_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return out;
}

StepOutcome evaluateStep(models::StageModel& model, int split, int stages, const CloudBatch& batch) {
  const auto start = Clock::now();
  torch::NoGradGuard no_grad;
  model.train(false);
  const auto logits = model.forward(batch.activation, split, stages);
  StepOutcome out;
  out.loss = torch::nn::functional::cross_entropy(logits, batch.labels).item<double>();
  out.correct = logits.argmax(1).eq(batch.labels).sum().item<std::int64_t>();
  model.train(true);
  out.compute_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return out;
}

}  // namespace tandem::pipeline

#include "runtime/pipeline/cloud_step.h"

#include <torch/nn/functional/loss.h>
#include <torch/utils.h>

#include <algorithm>
#include <chrono>
#include <vector>

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

std::vector<StepOutcome> trainJointStep(models::StageModel& model, optim::StageOptimizers& optimizer,
                                        std::vector<StepPart>& parts, int stages, const StepGuard& guard) {
  TANDEM_ENFORCE(!parts.empty(), "a step over no batches");
  const auto start = Clock::now();
  model.train(true);
  optimizer.zeroGrad();
  // Parts in split order (stable: equal splits keep their arrival order).
  std::vector<std::size_t> order(parts.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](auto a, auto b) { return parts[a].split < parts[b].split; });
  const int lowest = parts[order.front()].split;
  std::vector<torch::Tensor> inputs(parts.size());
  std::int64_t total = 0;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    inputs[i] = parts[i].batch->activation;
    if (parts[i].split > 0) inputs[i] = inputs[i].detach().requires_grad_(true);
    total += parts[i].batch->size;
  }
  // h holds the parts that have entered so far, in `order`; a stage runs once on all of them.
  torch::Tensor h;
  std::size_t next = 0;
  for (int stage = lowest; stage <= stages; ++stage) {
    std::vector<torch::Tensor> joining;
    if (h.defined()) joining.push_back(h);
    while (next < order.size() && parts[order[next]].split == stage) joining.push_back(inputs[order[next++]]);
    h = joining.size() == 1 ? joining.front() : torch::cat(joining);
    if (stage < stages) h = model.forward(h, stage, stage + 1);
  }
  TANDEM_ENFORCE_EQ(next, order.size(), "parts entering the joint step");
  std::vector<torch::Tensor> labels;
  for (auto i : order) labels.push_back(parts[i].batch->labels);
  const auto all_labels = torch::cat(labels);
  const auto loss = torch::nn::functional::cross_entropy(h, all_labels);
  std::vector<StepOutcome> out(parts.size());
  const double joint_loss = loss.item<double>();
  Verdict verdict = guard.watch ? guard.watch->check(joint_loss) : Verdict::kOk;
  {
    // Each part's own loss and correct predictions, for its edge's statistics.
    torch::NoGradGuard no_grad;
    const auto per_sample = torch::nn::functional::cross_entropy(
        h.detach(), all_labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
    const auto hits = h.detach().argmax(1).eq(all_labels);
    std::int64_t offset = 0;
    for (auto i : order) {
      const auto n = parts[i].batch->size;
      out[i].loss = per_sample.narrow(0, offset, n).mean().item<double>();
      out[i].correct = hits.narrow(0, offset, n).sum().item<std::int64_t>();
      offset += n;
    }
  }
  if (verdict == Verdict::kOk) {
    loss.backward();
    const auto parameters = model.parameters(lowest, stages);
    if (guard.poison) poisonGradients(parameters);
    if (guard.watch && !gradientsFinite(parameters)) verdict = Verdict::kNonFinite;
  }
  if (verdict == Verdict::kOk) {
    optimizer.step(lowest, stages);
    if (guard.watch) guard.watch->accept(joint_loss);
  } else {
    optimizer.zeroGrad();
  }
  for (std::size_t i = 0; i < parts.size(); ++i) {
    out[i].verdict = verdict;
    if (parts[i].split == 0) continue;
    if (verdict == Verdict::kOk) {
      out[i].boundary_gradient =
          inputs[i].grad() * (static_cast<double>(total) / static_cast<double>(parts[i].batch->size));
    } else {
      out[i].boundary_gradient = torch::zeros_like(parts[i].batch->activation);
    }
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  for (auto& o : out) o.compute_seconds = seconds;
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

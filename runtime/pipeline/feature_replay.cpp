#include "runtime/pipeline/feature_replay.h"

#include <torch/utils.h>

#include <algorithm>
#include <cmath>

#include "runtime/common/error.h"
#include "runtime/pipeline/divergence_guard.h"
#include "runtime/pipeline/link.h"

namespace tandem::pipeline {

FeatureReplay::FeatureReplay(const config::SplitConfig& split, const config::OptimizerConfig& optimizer,
                             bool error_feedback)
    : retain_(split.replay == config::Replay::kRetain),
      momentum_(optimizer.momentum),
      error_feedback_enabled_(error_feedback) {
  // Momentum compensation is defined for SGD's momentum only; other optimizers temper the
  // learning rate instead.
  if (split.compensation == config::Compensation::kNone) {
    compensation_ = Compensation::kNone;
  } else if (split.compensation == config::Compensation::kLr || optimizer.name != config::OptimizerKind::kSgd) {
    compensation_ = Compensation::kLearningRate;
  } else {
    compensation_ = Compensation::kMomentum;
  }
  setStaleness(split.staleness);
}

void FeatureReplay::setStaleness(int staleness) {
  TANDEM_ENFORCE(staleness >= 0, "staleness ", staleness);
  stats_.peak_buffer = std::max(stats_.peak_buffer, buffer_.peakSize());
  buffer_.setCapacity(static_cast<std::size_t>(staleness) + 1);
}

void FeatureReplay::raiseStaleness(int staleness) {
  TANDEM_ENFORCE(staleness >= 0, "staleness ", staleness);
  buffer_.raiseCapacity(static_cast<std::size_t>(staleness) + 1);
}

const ReplayStats& FeatureReplay::stats() const {
  stats_.peak_buffer = std::max(stats_.peak_buffer, buffer_.peakSize());
  return stats_;
}

const ReplayEntry& FeatureReplay::oldest(std::uint64_t step) const { return buffer_.oldest(step); }

bool FeatureReplay::errorFeedbackFor(const std::string& codec_spec, int split) const {
  return error_feedback_enabled_ && codec_spec != "none" && split > 0;
}

torch::Tensor FeatureReplay::forward(models::StageModel& model, int split, const data::Batch& batch, std::uint64_t step,
                                     int epoch) {
  TANDEM_ENFORCE(!buffer_.full(), "the staleness gate is closed (", buffer_.size(), " batches in flight)");
  ReplayEntry entry;
  entry.step = step;
  entry.epoch = epoch;
  entry.batch = batch.index;
  entry.samples = batch.size();
  entry.labels = batch.labels;
  entry.updates_at_send = updates_;
  torch::Tensor activation;
  if (split == 0) {
    activation = batch.inputs;
  } else if (retain_) {
    activation = forwardRetained(model, split, batch.inputs, entry);
    entry.activation = activation;
  } else {
    torch::NoGradGuard no_grad;
    activation = model.forward(batch.inputs, 0, split);
    entry.input = batch.inputs;
  }
  buffer_.push(std::move(entry));
  return activation;
}

torch::Tensor FeatureReplay::forwardRetained(models::StageModel& model, int split, const torch::Tensor& input,
                                             ReplayEntry& entry) {
  // Run the forward on a deep copy of the edge's stages so the graph's leaves are the
  // weights of this moment; later optimizer steps change the originals, not them.
  torch::Tensor x = input;
  for (int i = 0; i < split; ++i) {
    auto copy = std::dynamic_pointer_cast<models::StageImpl>(model.stage(i)->clone());
    TANDEM_ENFORCE(copy != nullptr, "stage ", i, " did not clone into a Stage");
    x = copy->forward(x);
    entry.stash.push_back(copy);
  }
  // The copies updated their BatchNorm statistics: carry them over to the real stages.
  torch::NoGradGuard no_grad;
  auto originals = model.buffers(0, split);
  std::size_t k = 0;
  for (const auto& stage : entry.stash) {
    for (const auto& b : stage->buffers()) originals[k++].copy_(b);
  }
  return x;
}

transport::TensorFrame FeatureReplay::encode(std::uint64_t step, const torch::Tensor& activation,
                                             const std::string& codec_spec, int split, transport::CodecCache& codecs) {
  if (errorFeedbackFor(codec_spec, split)) {
    const auto values = activation.detach().contiguous();
    const auto& codec = codecs.get(codec_spec);
    auto bytes = error_feedback_.encode(codec, step, values.data_ptr<float>(), values.sizes().vec());
    return transport::payloadFrame(values, codec.spec(), std::move(bytes));
  }
  if (codec_spec == "none" || activation.scalar_type() != torch::kFloat32) return transport::rawFrame(activation);
  return transport::encodedFrame(activation, codecs.get(codec_spec));
}

void FeatureReplay::markSent(double sent_at_seconds, std::uint64_t wire_bytes) {
  TANDEM_ENFORCE(!buffer_.empty());
  auto& newest = buffer_.newest();
  newest.sent_at = sent_at_seconds;
  newest.wire_bytes = wire_bytes;
}

void FeatureReplay::backwardRetained(ReplayEntry& entry, const torch::Tensor& grad, models::StageModel& model,
                                     int split) {
  entry.activation.backward(grad);
  auto params = model.parameters(0, split);
  std::size_t k = 0;
  for (const auto& stage : entry.stash) {
    for (const auto& p : stage->parameters()) params[k++].mutable_grad() = p.grad();
  }
}

void FeatureReplay::backwardRecomputed(const ReplayEntry& entry, const torch::Tensor& grad, models::StageModel& model,
                                       int split) {
  // Replay the forward with the current weights. BatchNorm statistics were updated by the
  // first forward; restore them (after backward, which checks they are unchanged) so the
  // replay does not count the batch twice.
  std::vector<torch::Tensor> saved;
  auto buffers = model.buffers(0, split);
  for (const auto& b : buffers) saved.push_back(b.clone());
  model.forward(entry.input, 0, split).backward(grad);
  torch::NoGradGuard no_grad;
  for (std::size_t i = 0; i < buffers.size(); ++i) buffers[i].copy_(saved[i]);
}

void FeatureReplay::step(optim::StageOptimizers& optimizer, int staleness) {
  if (staleness == 0 || compensation_ == Compensation::kNone) {
    optimizer.step();
  } else if (compensation_ == Compensation::kLearningRate) {
    optimizer.stepWith(1.0 / (1.0 + staleness), -1.0);
  } else {
    // Asynchrony adds about s/(s+1) of implicit momentum: take that much off SGD's.
    const double implicit = static_cast<double>(staleness) / (staleness + 1.0);
    optimizer.stepWith(1.0, std::max(0.0, momentum_ - implicit));
  }
}

AppliedGradient FeatureReplay::apply(std::uint64_t step_number, torch::Tensor grad, models::StageModel& model,
                                     int split, optim::StageOptimizers& optimizer, bool poison) {
  AppliedGradient applied;
  applied.entry = buffer_.pop(step_number);
  auto& entry = applied.entry;
  applied.staleness = static_cast<int>(updates_ - entry.updates_at_send);
  if (split > 0) {
    TANDEM_ENFORCE(grad.defined(), "a gradient is needed at split ", split);
    grad = grad.contiguous();
    if (!std::isfinite(grad.sum().item<double>())) {
      error_feedback_.forget(entry.step);
      applied.applied = false;
      return applied;
    }
    // Correct with the stored quantisation error, if this batch was sent with one.
    error_feedback_.correct(entry.step, grad.data_ptr<float>(), static_cast<std::size_t>(grad.numel()));
    optimizer.zeroGrad();
    if (retain_) {
      backwardRetained(entry, grad, model, split);
    } else {
      backwardRecomputed(entry, grad, model, split);
    }
    const auto parameters = model.parameters(0, split);
    if (poison) poisonGradients(parameters);
    if (!gradientsFinite(parameters)) {
      optimizer.zeroGrad();
      applied.applied = false;
      return applied;
    }
    step(optimizer, applied.staleness);
  }
  stats_.max_staleness = std::max(stats_.max_staleness, applied.staleness);
  ++stats_.staleness[applied.staleness];
  ++updates_;
  return applied;
}

ReplayEntry FeatureReplay::discard(std::uint64_t step_number) {
  auto entry = buffer_.pop(step_number);
  error_feedback_.forget(entry.step);
  return entry;
}

}  // namespace tandem::pipeline

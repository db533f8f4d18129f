#include "runtime/pipeline/divergence_guard.h"

#include <torch/utils.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "compression/registry.h"

namespace tandem::pipeline {

namespace {
// A spike must also be this far above the median: near-zero losses make single bad batches
// several times the median (measured: a synthetic run at median 0.05 had batches of 1.2).
constexpr double kSpikeMargin = 2.0;
}  // namespace

const char* verdictName(Verdict verdict) {
  switch (verdict) {
    case Verdict::kOk: return "ok";
    case Verdict::kNonFinite: return "non_finite";
    case Verdict::kSpike: return "loss_spike";
  }
  return "?";
}

bool isKnownVerdict(std::uint8_t raw) { return raw <= static_cast<std::uint8_t>(Verdict::kSpike); }

LossWatch::LossWatch(const config::GuardConfig& guard)
    : spike_factor_(guard.spike_factor), window_(static_cast<std::size_t>(std::max(1, guard.window))) {}

Verdict LossWatch::check(double loss) const {
  if (!std::isfinite(loss)) return Verdict::kNonFinite;
  if (spike_factor_ <= 0 || recent_.size() < window_) return Verdict::kOk;
  const double median = level();
  return loss > spike_factor_ * median && loss > median + kSpikeMargin ? Verdict::kSpike : Verdict::kOk;
}

void LossWatch::accept(double loss) {
  if (!std::isfinite(loss)) return;
  recent_.push_back(loss);
  while (recent_.size() > window_) recent_.pop_front();
}

double LossWatch::level() const {
  if (recent_.empty()) return 0.0;
  std::vector<double> sorted(recent_.begin(), recent_.end());
  const auto mid = sorted.begin() + static_cast<std::ptrdiff_t>(sorted.size() / 2);
  std::nth_element(sorted.begin(), mid, sorted.end());
  return *mid;
}

bool gradientsFinite(const std::vector<torch::Tensor>& parameters) {
  // A sum is non-finite as soon as one element is (NaN propagates, +inf and -inf give
  // NaN); one float per tensor, then one synchronisation for all of them.
  std::vector<torch::Tensor> sums;
  for (const auto& p : parameters) {
    if (p.grad().defined()) sums.push_back(p.grad().sum().to(torch::kFloat64));
  }
  if (sums.empty()) return true;
  return std::isfinite(torch::stack(sums).sum().item<double>());
}

void poisonGradients(const std::vector<torch::Tensor>& parameters) {
  torch::NoGradGuard no_grad;
  for (const auto& p : parameters) {
    if (p.grad().defined()) p.grad().fill_(std::numeric_limits<float>::quiet_NaN());
  }
}

void Snapshots::add(checkpoint::Checkpoint snapshot) {
  TANDEM_ENFORCE(kept_.empty() || kept_.back().step < snapshot.step, "snapshot at step ", snapshot.step,
                 " is not after the newest");
  kept_.push_back(std::move(snapshot));
  while (kept_.size() > capacity_) kept_.pop_front();
}

std::vector<std::uint64_t> Snapshots::steps() const {
  std::vector<std::uint64_t> out;
  for (const auto& s : kept_) out.push_back(s.step);
  return out;
}

const checkpoint::Checkpoint* Snapshots::find(std::uint64_t step) const {
  for (const auto& s : kept_) {
    if (s.step == step) return &s;
  }
  return nullptr;
}

void Snapshots::dropAfter(std::uint64_t step) {
  while (!kept_.empty() && kept_.back().step > step) kept_.pop_back();
}

std::uint64_t Snapshots::target(std::uint64_t failed, std::uint64_t min_age) const {
  if (kept_.empty()) throw TrainingDiverged("no snapshot to roll back to");
  for (auto it = kept_.rbegin(); it != kept_.rend(); ++it) {
    if (it->step <= failed && failed - it->step >= min_age) return it->step;
  }
  return kept_.front().step;
}

TrainingSetting saferSetting(const TrainingSetting& current, const config::GuardConfig& guard, std::string& action) {
  TrainingSetting next = current;
  if (current.staleness > 0) {
    next.staleness = current.staleness / 2;
    action = "K " + std::to_string(current.staleness) + " -> " + std::to_string(next.staleness);
    return next;
  }
  const auto lossy = [](const std::string& spec) { return !compression::makeCodec(spec)->lossless(); };
  if (lossy(current.uplink_codec) || lossy(current.downlink_codec)) {
    if (lossy(current.uplink_codec)) next.uplink_codec = "none";
    if (lossy(current.downlink_codec)) next.downlink_codec = "none";
    action = "codec " + current.uplink_codec + "/" + current.downlink_codec + " -> " + next.uplink_codec + "/" +
             next.downlink_codec;
    return next;
  }
  next.lr_scale = current.lr_scale * guard.lr_factor;
  char text[96];
  std::snprintf(text, sizeof text, "learning rate x%.3g -> x%.3g", current.lr_scale, next.lr_scale);
  action = text;
  return next;
}

bool injectNanAt(const config::GuardConfig& guard, config::Role role, std::uint64_t step) {
  if (guard.inject_nan_step < 0) return false;
  const bool side = (role == config::Role::kEdge && guard.inject_nan_on == config::FaultSide::kEdge) ||
                    (role == config::Role::kCloud && guard.inject_nan_on == config::FaultSide::kCloud);
  return side && step == static_cast<std::uint64_t>(guard.inject_nan_step);
}

}  // namespace tandem::pipeline

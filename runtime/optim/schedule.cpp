#include "runtime/optim/schedule.h"

#include <cmath>

namespace tandem::optim {

double learningRate(const config::OptimizerConfig& o, int epoch, int total_epochs) {
  const auto& s = o.schedule;
  if (epoch < s.warmup_epochs) {
    return o.lr * static_cast<double>(epoch + 1) / static_cast<double>(s.warmup_epochs + 1);
  }
  const int e = epoch - s.warmup_epochs;
  if (s.name == config::LrSchedule::kStep) {
    return o.lr * std::pow(s.gamma, e / s.step_size);
  }
  if (s.name == config::LrSchedule::kMultistep) {
    int passed = 0;
    for (int m : s.milestones) {
      if (e >= m) ++passed;
    }
    return o.lr * std::pow(s.gamma, passed);
  }
  if (s.name == config::LrSchedule::kCosine) {
    const int span = total_epochs - s.warmup_epochs;
    if (span <= 1) return o.lr;
    const double progress = static_cast<double>(e) / static_cast<double>(span);
    return s.min_lr + (o.lr - s.min_lr) * 0.5 * (1.0 + std::cos(M_PI * progress));
  }
  return o.lr;
}

}  // namespace tandem::optim

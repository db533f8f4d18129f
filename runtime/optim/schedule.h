#pragma once
// Learning-rate schedules, as a pure function of the epoch so the edge and the cloud (and
// a resumed run) agree on the rate without exchanging it.

#include "runtime/config/config.h"

namespace tandem::optim {

// The learning rate for 0-based `epoch` of `total_epochs`: linear warm-up over
// schedule.warmup_epochs, then none | step | multistep | cosine (counted from the end
// of the warm-up).
double learningRate(const config::OptimizerConfig& optimizer, int epoch, int total_epochs);

}  // namespace tandem::optim

#pragma once
// Standalone training: the whole model in one process, no network. This is the baseline
// every split result is compared against (split point n).

#include <atomic>

#include <memory>

#include "runtime/config/config.h"
#include "runtime/models/stage_model.h"
#include "runtime/telemetry/summary.h"

namespace tandem::pipeline {

class StandaloneTrainer {
 public:
  explicit StandaloneTrainer(config::Config config);

  // Trains for run.epochs, evaluating on the test split after each epoch, and writes
  // summary-edge.json. Returns early (summary.interrupted) once `stop` becomes true; the
  // epoch in progress is then not recorded.
  telemetry::RunSummary run(const std::atomic<bool>& stop);

  models::StageModel& model() { return model_; }

 private:
  config::Config config_;
  models::StageModel model_;
};

// StandaloneTrainer(config).run(stop).
telemetry::RunSummary runStandalone(const config::Config& config, const std::atomic<bool>& stop);

}  // namespace tandem::pipeline

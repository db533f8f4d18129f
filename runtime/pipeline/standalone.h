#pragma once
// Standalone training: the whole model in one process, no network. This is the baseline
// every split result is compared against (split point n).

#include <atomic>
#include <memory>

#include "runtime/config/config.h"
#include "runtime/models/stage_model.h"
#include "runtime/telemetry/metrics.h"
#include "runtime/telemetry/summary.h"

namespace tandem::pipeline {

class StandaloneTrainer {
 public:
  // `metrics` (optional, must outlive the trainer) receives the edge series of edge
  // `run.name`, as a split run's edge reports them: steps, samples, running train loss and
  // accuracy, epoch, test loss and accuracy, split point (all stages), phase times
  // (edge_forward; edge_backward: backward and optimizer step) and process memory.
  explicit StandaloneTrainer(config::Config config, telemetry::Metrics* metrics = nullptr);

  // Trains for run.epochs, evaluating on the test split after each epoch, and writes
  // summary-edge.json. Returns early (summary.interrupted) once `stop` becomes true; the
  // epoch in progress is then not recorded. One thread calls it.
  telemetry::RunSummary run(const std::atomic<bool>& stop);

  models::StageModel& model() { return model_; }

 private:
  config::Config config_;
  models::StageModel model_;
  telemetry::TrainerMetrics* metrics_ = nullptr;
};

// StandaloneTrainer(config, metrics).run(stop).
telemetry::RunSummary runStandalone(const config::Config& config, const std::atomic<bool>& stop,
                                    telemetry::Metrics* metrics = nullptr);

}  // namespace tandem::pipeline

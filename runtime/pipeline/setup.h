#pragma once
// Building what both trainers need from a validated config: the model spec, the model,
// the datasets and loaders. Errors that belong to a config key (unknown model name, too
// few classes) are reported as ConfigError pointing at that key.

#include <memory>
#include <string>

#include "runtime/config/config.h"
#include "runtime/data/dataset.h"
#include "runtime/data/loader.h"
#include "runtime/models/stage_model.h"
#include "runtime/telemetry/summary.h"

namespace tandem::pipeline {

models::ModelSpec modelSpec(const config::Config& config);
models::StageModel buildModel(const config::Config& config);

// The split point in force at start-up; ConfigError when it is beyond the model.
int initialSplitPoint(const config::Config& config, const models::StageModel& model);

std::shared_ptr<const data::Dataset> loadDataset(const config::Config& config, data::Split split);
std::unique_ptr<data::BatchLoader> makeLoader(const config::Config& config,
                                              std::shared_ptr<const data::Dataset> dataset, data::Split split);

// Loss and accuracy accumulated over the batches of an epoch.
struct RunningStats {
  double loss_sum = 0.0;  // sum of per-batch mean loss × batch size
  std::int64_t correct = 0;
  std::int64_t samples = 0;
  std::int64_t steps = 0;

  void add(double mean_loss, std::int64_t batch_correct, std::int64_t batch_size) {
    loss_sum += mean_loss * static_cast<double>(batch_size);
    correct += batch_correct;
    samples += batch_size;
    ++steps;
  }
  double loss() const { return samples ? loss_sum / static_cast<double>(samples) : 0.0; }
  double accuracy() const { return samples ? static_cast<double>(correct) / static_cast<double>(samples) : 0.0; }
};

// A run summary with the fields every trainer fills in the same way.
telemetry::RunSummary newRunSummary(config::Role role, const char* mode, const std::string& run_name,
                                    const std::string& model, const std::string& dataset, int epochs_planned);

// The record of a finished epoch (bytes are left to the caller).
telemetry::EpochRecord epochRecord(int epoch, double learning_rate, const RunningStats& train, const RunningStats& test,
                                   double train_seconds, double epoch_seconds, int split_point, int staleness);

// The one line every trainer prints per epoch: "epoch 2/3: train loss … acc … | test loss
// … acc … | N samples/s | T s".
std::string epochLine(const telemetry::EpochRecord& record, int epochs);

}  // namespace tandem::pipeline

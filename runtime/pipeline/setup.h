#pragma once
// Building what both trainers need from a validated config: the model spec, the model,
// the datasets and loaders. Errors that belong to a config key (unknown model name, too
// few classes) are reported as ConfigError pointing at that key.

#include <memory>
#include <string>

#include "runtime/common/log.h"
#include "runtime/config/config.h"
#include "runtime/data/dataset.h"
#include "runtime/data/loader.h"
#include "runtime/models/stage_model.h"
#include "runtime/telemetry/summary.h"
#include "runtime/transport/protocol.h"

namespace tandem::pipeline {

models::ModelSpec modelSpec(const config::Config& config);
models::StageModel buildModel(const config::Config& config);

// The split point in force at start-up; ConfigError when it is beyond the model.
int initialSplitPoint(const config::Config& config, const models::StageModel& model);

// The Hello an edge with `config` and `model`, starting at `split`, sends (no resume).
transport::Hello helloFor(const config::Config& config, const models::StageModel& model, int split,
                          std::string edge_name);

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
// … acc … | N samples/s | T s" (record.epoch is 0-based, the line 1-based).
std::string epochLine(const telemetry::EpochRecord& record, int epochs);

// What a trainer adds to its epoch line: text around epochLine() and fields of its own.
struct EpochLogExtra {
  std::string prefix;  // before the line, e.g. "session 00ab… "
  std::string suffix;  // after it, e.g. " | lr 0.02"
  log::Fields fields;  // more JSON fields, e.g. {"session", "00ab…"}
};

// Logs the epoch line at info as an "epoch" event: the text format prints prefix +
// epochLine() + suffix; the json format adds the record as fields: epoch (1-based),
// epochs, learning_rate, train_loss, train_accuracy, test_loss, test_accuracy (0..1),
// train_samples, steps, samples_per_second, train_seconds, epoch_seconds, split_point,
// staleness, bytes_uplink, bytes_downlink, then extra.fields.
void logEpoch(spdlog::logger& logger, const telemetry::EpochRecord& record, int epochs,
              const EpochLogExtra& extra = {});

}  // namespace tandem::pipeline

#include "runtime/pipeline/standalone.h"

#include <torch/nn/functional/loss.h>
#include <torch/utils.h>

#include <chrono>
#include <cstdio>

#include "runtime/common/log.h"
#include "runtime/optim/schedule.h"
#include "runtime/optim/stage_optimizers.h"
#include "runtime/pipeline/evaluate.h"
#include "runtime/pipeline/setup.h"
#include "runtime/telemetry/progress.h"

namespace tandem::pipeline {

using Clock = std::chrono::steady_clock;

StandaloneTrainer::StandaloneTrainer(config::Config config) : config_(std::move(config)), model_(buildModel(config_)) {}

telemetry::RunSummary runStandalone(const config::Config& config, const std::atomic<bool>& stop) {
  return StandaloneTrainer(config).run(stop);
}

telemetry::RunSummary StandaloneTrainer::run(const std::atomic<bool>& stop) {
  const config::Config& config = config_;
  auto& model = model_;
  auto log = log::get("edge.standalone");
  const auto start = Clock::now();
  const int n = model.numStages();
  auto train_set = loadDataset(config, data::Split::kTrain);
  auto test_set = loadDataset(config, data::Split::kTest);
  auto train_loader = makeLoader(config, train_set, data::Split::kTrain);
  auto test_loader = makeLoader(config, test_set, data::Split::kTest);
  optim::StageOptimizers optimizer(config.optimizer, model, 0, n);
  log->info("standalone: model {} ({} stages), dataset {} ({} train / {} test samples, {} batches of {})",
            config.model.name, n, config.data.dataset, train_set->size(), test_set->size(),
            train_loader->batchesPerEpoch(), config.data.batch_size);

  auto summary = newRunSummary(config::Role::kEdge, "standalone", config.run.name, config.model.name, config.data.dataset,
                               config.run.epochs);
  const bool interactive = telemetry::Progress::stderrIsInteractive();

  for (int epoch = 0; epoch < config.run.epochs && !stop; ++epoch) {
    const auto epoch_start = Clock::now();
    const double lr = optim::learningRate(config.optimizer, epoch, config.run.epochs);
    optimizer.setLearningRate(lr);
    model.train(true);
    train_loader->startEpoch(epoch);
    RunningStats stats;
    char label[64];
    std::snprintf(label, sizeof label, "epoch %d/%d", epoch + 1, config.run.epochs);
    telemetry::Progress progress(label, train_loader->batchesPerEpoch(), interactive);
    while (auto batch = train_loader->next()) {
      if (stop) break;
      optimizer.zeroGrad();
      auto logits = model.forward(batch->inputs, 0, n);
      auto loss = torch::nn::functional::cross_entropy(logits, batch->labels);
      loss.backward();
      optimizer.step();
      const auto correct = logits.detach().argmax(1).eq(batch->labels).sum().item<std::int64_t>();
      stats.add(loss.item<double>(), correct, batch->size());
      char status[64];
      std::snprintf(status, sizeof status, "loss %.4f acc %.2f%%", stats.loss(), stats.accuracy() * 100);
      progress.update(stats.steps, stats.samples, status);
    }
    progress.finish();
    if (stop) break;
    const double train_seconds = std::chrono::duration<double>(Clock::now() - epoch_start).count();
    const auto test = evaluate(model, *test_loader, epoch, stop);
    if (stop) break;

    const auto record = epochRecord(epoch, lr, stats, test, train_seconds,
                                    std::chrono::duration<double>(Clock::now() - epoch_start).count(), n, 0);
    summary.history.push_back(record);
    log->info("{} | lr {:.4g}", epochLine(record, config.run.epochs), lr);
  }
  train_loader->stop();
  test_loader->stop();
  summary.interrupted = stop.load();
  summary.wall_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const auto path = telemetry::writeSummary(config.run.output_dir, summary);
  log->info("{}summary written to {}", summary.interrupted ? "interrupted; " : "", path);
  return summary;
}

}  // namespace tandem::pipeline

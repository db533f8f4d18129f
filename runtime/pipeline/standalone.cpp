#include "runtime/pipeline/standalone.h"

#include <torch/nn/functional/loss.h>
#include <torch/utils.h>

#include <fmt/format.h>

#include <chrono>

#include "runtime/common/log.h"
#include "runtime/optim/schedule.h"
#include "runtime/optim/stage_optimizers.h"
#include "runtime/pipeline/evaluate.h"
#include "runtime/pipeline/setup.h"
#include "runtime/telemetry/progress.h"

namespace tandem::pipeline {

using Clock = std::chrono::steady_clock;

StandaloneTrainer::StandaloneTrainer(config::Config config, telemetry::Metrics* metrics)
    : config_(std::move(config)),
      model_(buildModel(config_)),
      metrics_(metrics ? &metrics->forEdge(config_.run.name) : nullptr) {}

telemetry::RunSummary runStandalone(const config::Config& config, const std::atomic<bool>& stop,
                                    telemetry::Metrics* metrics) {
  return StandaloneTrainer(config, metrics).run(stop);
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

  auto summary = newRunSummary(config::Role::kEdge, "standalone", config.run.name, config.model.name,
                               config.data.dataset, config.run.epochs);
  if (metrics_) {
    metrics_->split_point->Set(n);
    metrics_->setCodec("none");
    telemetry::updateProcessMetrics(*metrics_);
  }

  for (int epoch = 0; epoch < config.run.epochs && !stop; ++epoch) {
    const auto epoch_start = Clock::now();
    const double lr = optim::learningRate(config.optimizer, epoch, config.run.epochs);
    optimizer.setLearningRate(lr);
    model.train(true);
    train_loader->startEpoch(epoch);
    RunningStats stats;
    if (metrics_) metrics_->epoch->Set(epoch + 1);
    telemetry::Progress progress("edge.standalone", epoch + 1, config.run.epochs, train_loader->batchesPerEpoch());
    while (auto batch = train_loader->next()) {
      if (stop) break;
      const auto forward_start = Clock::now();
      optimizer.zeroGrad();
      auto logits = model.forward(batch->inputs, 0, n);
      auto loss = torch::nn::functional::cross_entropy(logits, batch->labels);
      const auto backward_start = Clock::now();
      loss.backward();
      optimizer.step();
      const auto correct = logits.detach().argmax(1).eq(batch->labels).sum().item<std::int64_t>();
      stats.add(loss.item<double>(), correct, batch->size());
      const auto step_end = Clock::now();
      if (metrics_) {
        auto& m = *metrics_;
        m.edge_forward->Observe(std::chrono::duration<double>(backward_start - forward_start).count());
        m.edge_backward->Observe(std::chrono::duration<double>(step_end - backward_start).count());
        m.steps->Increment();
        m.samples->Increment(static_cast<double>(batch->size()));
        m.train_loss->Set(stats.loss());
        m.train_accuracy->Set(stats.accuracy());
        if (stats.steps % 16 == 1) telemetry::updateProcessMetrics(m);
      }
      progress.update(stats.steps, stats.samples, stats.loss(), stats.accuracy());
    }
    progress.finish();
    if (stop) break;
    const double train_seconds = std::chrono::duration<double>(Clock::now() - epoch_start).count();
    const auto test = evaluate(model, *test_loader, epoch, stop);
    if (stop) break;

    const auto record = epochRecord(epoch, lr, stats, test, train_seconds,
                                    std::chrono::duration<double>(Clock::now() - epoch_start).count(), n, 0);
    summary.history.push_back(record);
    if (metrics_) {
      metrics_->test_loss->Set(record.test_loss);
      metrics_->test_accuracy->Set(record.test_accuracy);
    }
    logEpoch(*log, record, config.run.epochs, {"", fmt::format(" | lr {:.4g}", lr), {}});
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

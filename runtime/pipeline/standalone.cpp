#include "runtime/pipeline/standalone.h"

#include <torch/nn/functional/loss.h>
#include <torch/utils.h>

#include <fmt/format.h>

#include <chrono>

#include "runtime/common/log.h"
#include "runtime/optim/schedule.h"
#include "runtime/optim/stage_optimizers.h"
#include "runtime/pipeline/divergence_guard.h"
#include "runtime/pipeline/evaluate.h"
#include "runtime/pipeline/run_state.h"
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

  // The divergence guard (docs/design.md): every step is checked before its optimizer
  // step; a failed one rolls back to the newest snapshot at least half a snapshot interval
  // old and continues with the learning rate × guard.lr_factor.
  LossWatch watch(config.guard);
  Snapshots snapshots(3);
  double lr_scale = 1.0;
  int rollbacks = 0;
  std::uint64_t step = 0;  // over the run
  const auto every = static_cast<std::uint64_t>(config.guard.snapshot_every_steps);
  for (int epoch = 0; epoch < config.run.epochs && !stop; ++epoch) {
    const auto epoch_start = Clock::now();
    double lr = optim::learningRate(config.optimizer, epoch, config.run.epochs) * lr_scale;
    optimizer.setLearningRate(lr);
    model.train(true);
    train_loader->startEpoch(epoch);
    RunningStats stats;
    if (metrics_) metrics_->epoch->Set(epoch + 1);
    telemetry::Progress progress("edge.standalone", epoch + 1, config.run.epochs, train_loader->batchesPerEpoch());
    const auto snapshot = [&](std::int64_t next_batch) {
      RunPosition position;
      position.step = step;
      position.epoch = epoch;
      position.batch = next_batch;
      position.stats = stats;
      snapshots.add(captureRun("edge", config.run.name, position, model, optimizer, 0, n));
    };
    snapshots.clear();
    snapshot(0);
    while (auto batch = train_loader->next()) {
      if (stop) break;
      const auto forward_start = Clock::now();
      optimizer.zeroGrad();
      auto logits = model.forward(batch->inputs, 0, n);
      auto loss = torch::nn::functional::cross_entropy(logits, batch->labels);
      const double loss_value = loss.item<double>();
      const auto backward_start = Clock::now();
      auto verdict = watch.check(loss_value);
      if (verdict == Verdict::kOk) {
        loss.backward();
        const auto parameters = model.parameters(0, n);
        if (injectNanAt(config.guard, config::Role::kEdge, step)) poisonGradients(parameters);
        if (!gradientsFinite(parameters)) verdict = Verdict::kNonFinite;
      }
      if (verdict != Verdict::kOk) {
        telemetry::Intervention record;
        record.epoch = epoch;
        record.step = static_cast<std::int64_t>(step);
        record.side = "edge";
        record.reason = verdictName(verdict);
        record.loss = loss_value;
        if (metrics_)
          (verdict == Verdict::kSpike ? metrics_->guard_loss_spike : metrics_->guard_non_finite)->Increment();
        if (rollbacks >= config.guard.max_rollbacks) {
          record.action = "stopped: guard.max_rollbacks reached";
          summary.interventions.push_back(record);
          summary.diverged = summary.interrupted = true;
          if (metrics_) metrics_->guard_stopped->Increment();
          telemetry::writeSummary(config.run.output_dir, summary);
          throw TrainingDiverged(
              fmt::format("training diverged at step {} (epoch {}): {} (loss {:.4g}); {} rollback(s) already made, "
                          "guard.max_rollbacks = {}",
                          step, epoch + 1, verdictName(verdict), loss_value, rollbacks, config.guard.max_rollbacks));
        }
        ++rollbacks;
        const auto target = snapshots.target(step, every / 2);
        const auto position = restoreRun(*snapshots.find(target), model, optimizer, 0, n);
        snapshots.dropAfter(target);
        std::string action;
        lr_scale = saferSetting(TrainingSetting{0, "none", "none", lr_scale}, config.guard, action).lr_scale;
        lr = optim::learningRate(config.optimizer, epoch, config.run.epochs) * lr_scale;
        optimizer.setLearningRate(lr);
        stats = position.stats;
        record.rolled_back_to = static_cast<std::int64_t>(target);
        record.action = action;
        summary.interventions.push_back(record);
        if (metrics_) metrics_->guard_rollback->Increment();
        log->warn(
            "divergence guard: step {} failed ({}, loss {:.4g}); rolled back to step {} (batch {}), {} ({} of {} "
            "rollbacks)",
            step, verdictName(verdict), loss_value, target, position.batch, action, rollbacks,
            config.guard.max_rollbacks);
        ++step;
        train_loader->startEpoch(epoch, position.batch);
        continue;
      }
      optimizer.step();
      watch.accept(loss_value);
      ++step;
      const auto correct = logits.detach().argmax(1).eq(batch->labels).sum().item<std::int64_t>();
      stats.add(loss_value, correct, batch->size());
      if (step % every == 0) snapshot(batch->index + 1);
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

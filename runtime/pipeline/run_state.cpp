#include "runtime/pipeline/run_state.h"

#include "runtime/pipeline/migration.h"

namespace tandem::pipeline {

checkpoint::Checkpoint captureRun(const std::string& role, const std::string& run_name, const RunPosition& position,
                                  const models::StageModel& model, const optim::StageOptimizers& optimizer, int first,
                                  int last) {
  const auto state = captureStages(model, optimizer, first, last);
  checkpoint::Checkpoint c;
  c.role = role;
  c.run_name = run_name;
  c.step = position.step;
  c.epoch = position.epoch;
  c.batch = position.batch;
  c.split = position.split;
  c.staleness = position.staleness;
  c.codec = position.codec;
  c.updates = position.updates;
  c.loss_sum = position.stats.loss_sum;
  c.correct = position.stats.correct;
  c.samples = position.stats.samples;
  c.steps = position.stats.steps;
  c.epoch_seconds = position.epoch_seconds;
  c.history = position.history;
  c.optimizer_layout = state.optimizer_layout;
  c.tensors = state.tensors;
  return c;
}

RunPosition positionOf(const checkpoint::Checkpoint& c) {
  RunPosition p;
  p.step = c.step;
  p.epoch = c.epoch;
  p.batch = c.batch;
  p.split = c.split;
  p.staleness = c.staleness;
  p.codec = c.codec;
  p.updates = c.updates;
  p.stats.loss_sum = c.loss_sum;
  p.stats.correct = c.correct;
  p.stats.samples = c.samples;
  p.stats.steps = c.steps;
  p.epoch_seconds = c.epoch_seconds;
  p.history = c.history;
  return p;
}

RunPosition restoreRun(const checkpoint::Checkpoint& c, models::StageModel& model, optim::StageOptimizers& optimizer,
                       int first, int last) {
  restoreStages(StageState{c.tensors, c.optimizer_layout}, model, optimizer, first, last, false);
  return positionOf(c);
}

}  // namespace tandem::pipeline

#include "runtime/pipeline/evaluate.h"

#include <torch/nn/functional/loss.h>
#include <torch/utils.h>

namespace tandem::pipeline {

RunningStats evaluate(models::StageModel& model, data::BatchLoader& loader, int epoch, const std::atomic<bool>& stop) {
  torch::NoGradGuard no_grad;
  model.train(false);
  RunningStats stats;
  loader.startEpoch(epoch);
  while (auto batch = loader.next()) {
    if (stop) break;
    auto logits = model.forward(batch->inputs, 0, model.numStages());
    auto loss = torch::nn::functional::cross_entropy(logits, batch->labels);
    stats.add(loss.item<double>(), logits.argmax(1).eq(batch->labels).sum().item<std::int64_t>(), batch->size());
  }
  loader.stop();
  model.train(true);
  return stats;
}

}  // namespace tandem::pipeline

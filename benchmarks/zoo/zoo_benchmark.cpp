// Training throughput of every zoo model on this machine: one SGD step (forward, loss,
// backward, update) on a batch of Fashion-MNIST-shaped inputs (1×28×28, 10 classes).
// items_per_second is samples per second.
//
//   build/benchmarks/zoo/zoo_benchmark [--batch=64]
#include <benchmark/benchmark.h>
#include <torch/nn/functional/loss.h>

#include <cstring>
#include <string>

#include "runtime/config/config.h"
#include "runtime/models/stage_model.h"
#include "runtime/optim/stage_optimizers.h"

namespace {

std::int64_t g_batch = 64;

void trainStep(benchmark::State& state, const std::string& name) {
  using namespace tandem;
  auto model = models::makeModel(models::ModelSpec{name, 1, 28, 28, 10}, 1);
  config::OptimizerConfig o;
  optim::StageOptimizers optimizer(o, model, 0, model.numStages());
  const auto x = torch::randn({g_batch, 1, 28, 28});
  const auto y = torch::randint(10, {g_batch}, torch::kInt64);
  for (auto _ : state) {
    optimizer.zeroGrad();
    auto loss = torch::nn::functional::cross_entropy(model.forward(x, 0, model.numStages()), y);
    loss.backward();
    optimizer.step();
    benchmark::DoNotOptimize(loss.item<float>());
  }
  state.SetItemsProcessed(state.iterations() * g_batch);
  state.counters["parameters_MB"] = [&] {
    double bytes = 0;
    for (int s = 0; s < model.numStages(); ++s) bytes += static_cast<double>(model.parameterBytes(s));
    return bytes / 1e6;
  }();
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--batch=", 8) == 0) g_batch = std::stoll(argv[i] + 8);
  }
  for (const auto& name : tandem::models::modelNames()) {
    benchmark::RegisterBenchmark(("train_step/" + name).c_str(), trainStep, name)
        ->Unit(benchmark::kMillisecond)
        ->MinTime(2.0)
        ->UseRealTime();
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

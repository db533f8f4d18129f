// Feature replay without a network: the staleness gate, the order of gradients, what
// recompute and retain compute, BatchNorm statistics, staleness compensation and error
// feedback, each checked against a direct computation on a copy of the model.
#include <gtest/gtest.h>
#include <torch/utils.h>

#include "runtime/common/error.h"
#include "runtime/pipeline/feature_replay.h"

namespace tandem::pipeline {
namespace {

models::StageModel mlp() { return models::makeModel(models::ModelSpec{"mlp", 1, 4, 4, 3}, 9); }
// Stage 0 of mobilenetv2 is a convolution with BatchNorm.
models::StageModel withBatchNorm() { return models::makeModel(models::ModelSpec{"mobilenetv2", 1, 8, 8, 3}, 9); }

config::SplitConfig splitConfig(int staleness, config::Replay replay = config::Replay::kRecompute,
                                config::Compensation compensation = config::Compensation::kMomentum) {
  config::SplitConfig c;
  c.staleness = staleness;
  c.replay = replay;
  c.compensation = compensation;
  return c;
}

config::OptimizerConfig sgd(double lr = 0.1, double momentum = 0.0) {
  config::OptimizerConfig o;
  o.lr = lr;
  o.momentum = momentum;
  return o;
}

data::Batch batch(const models::StageModel& model, int seed) {
  torch::manual_seed(seed);
  const auto& in = model.boundaryShapes().front();
  std::vector<std::int64_t> shape{4};
  shape.insert(shape.end(), in.begin(), in.end());
  return data::Batch{torch::randn(shape), torch::tensor({0, 1, 2, 0}, torch::kInt64), 0, {}};
}

// A stand-in for the cloud's gradient of the boundary activation.
torch::Tensor cloudGradient(const torch::Tensor& activation, int seed) {
  torch::manual_seed(1000 + seed);
  return torch::randn(activation.sizes());
}

double largestDifference(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  double worst = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, (a[i] - b[i]).abs().max().item<double>());
  return worst;
}

std::vector<torch::Tensor> copies(const std::vector<torch::Tensor>& tensors) {
  std::vector<torch::Tensor> out;
  for (const auto& t : tensors) out.push_back(t.detach().clone());
  return out;
}

TEST(FeatureReplay, GateAdmitsKPlusOneBatches) {
  auto model = mlp();
  optim::StageOptimizers optimizer(sgd(), model, 0, 1);
  FeatureReplay replay(splitConfig(2), sgd(), false);
  for (std::uint64_t step = 0; step < 3; ++step) {
    EXPECT_FALSE(replay.full());
    replay.forward(model, 1, batch(model, static_cast<int>(step)), step, 0);
  }
  EXPECT_TRUE(replay.full());
  EXPECT_THROW(replay.forward(model, 1, batch(model, 3), 3, 0), InvariantError);
  // K changes only when nothing is in flight.
  EXPECT_THROW(replay.setStaleness(4), InvariantError);
  for (std::uint64_t step = 0; step < 3; ++step) {
    const auto activation = model.forward(batch(model, static_cast<int>(step)).inputs, 0, 1).detach();
    replay.apply(step, cloudGradient(activation, 0), model, 1, optimizer);
  }
  EXPECT_TRUE(replay.empty());
  replay.setStaleness(4);
  EXPECT_EQ(replay.stats().peak_buffer, 3u);
}

TEST(FeatureReplay, GradientsMustComeBackInOrder) {
  auto model = mlp();
  optim::StageOptimizers optimizer(sgd(), model, 0, 1);
  FeatureReplay replay(splitConfig(1), sgd(), false);
  const auto a0 = replay.forward(model, 1, batch(model, 0), 0, 0);
  replay.forward(model, 1, batch(model, 1), 1, 0);
  const auto before = copies(model.parameters(0, 1));
  EXPECT_THROW(replay.apply(1, cloudGradient(a0, 1), model, 1, optimizer), ProtocolError);
  EXPECT_THROW(replay.oldest(7), ProtocolError);
  EXPECT_EQ(replay.inFlight(), 2u);
  EXPECT_EQ(largestDifference(before, model.parameters(0, 1)), 0.0);  // nothing changed
}

// At K = 0 both replay modes make exactly the update of back-propagating the cloud's
// gradient through the edge's stages at once.
TEST(FeatureReplay, BothModesMatchADirectBackwardAtKZero) {
  for (const auto mode : {config::Replay::kRecompute, config::Replay::kRetain}) {
    auto model = mlp();
    auto reference = mlp();
    optim::StageOptimizers optimizer(sgd(), model, 0, 2);
    optim::StageOptimizers reference_optimizer(sgd(), reference, 0, 2);
    FeatureReplay replay(splitConfig(0, mode), sgd(), false);
    for (int step = 0; step < 3; ++step) {
      const auto b = batch(model, step);
      const auto activation = replay.forward(model, 2, b, static_cast<std::uint64_t>(step), 0);
      const auto grad = cloudGradient(activation, step);
      replay.apply(static_cast<std::uint64_t>(step), grad, model, 2, optimizer);

      reference_optimizer.zeroGrad();
      reference.forward(b.inputs, 0, 2).backward(grad);
      reference_optimizer.step();
    }
    EXPECT_LT(largestDifference(model.parameters(0, 2), reference.parameters(0, 2)), 1e-6) << config::toString(mode);
    EXPECT_EQ(replay.updates(), 3u);
  }
}

// The replayed forward must not count a batch twice in the BatchNorm running statistics.
TEST(FeatureReplay, BatchNormSeesEachBatchOnce) {
  for (const auto mode : {config::Replay::kRecompute, config::Replay::kRetain}) {
    auto model = withBatchNorm();
    auto reference = withBatchNorm();
    model.train(true);
    reference.train(true);
    optim::StageOptimizers optimizer(sgd(), model, 0, 1);
    FeatureReplay replay(splitConfig(0, mode), sgd(), false);
    const auto b = batch(model, 0);
    const auto activation = replay.forward(model, 1, b, 0, 0);
    replay.apply(0, cloudGradient(activation, 0), model, 1, optimizer);
    {
      torch::NoGradGuard no_grad;
      reference.forward(b.inputs, 0, 1);  // one forward in train mode
    }
    ASSERT_FALSE(model.buffers(0, 1).empty());
    EXPECT_LT(largestDifference(model.buffers(0, 1), reference.buffers(0, 1)), 1e-6) << config::toString(mode);
  }
}

// Stale gradients are counted, and `lr` compensation halves the step of a gradient one
// update old.
TEST(FeatureReplay, StaleGradientIsTemperedByItsStaleness) {
  auto model = mlp();
  optim::StageOptimizers optimizer(sgd(0.1), model, 0, 1);
  FeatureReplay replay(splitConfig(1, config::Replay::kRecompute, config::Compensation::kLr), sgd(0.1), false);
  const auto b0 = batch(model, 0);
  const auto b1 = batch(model, 1);
  const auto a0 = replay.forward(model, 1, b0, 0, 0);
  const auto a1 = replay.forward(model, 1, b1, 1, 0);
  replay.apply(0, cloudGradient(a0, 0), model, 1, optimizer);
  // The gradient of batch 1 at the weights of this moment (recompute replays with them).
  const auto after_first = copies(model.parameters(0, 1));
  auto probe = mlp();
  {
    torch::NoGradGuard no_grad;
    for (std::size_t i = 0; i < after_first.size(); ++i) probe.parameters(0, 1)[i].copy_(after_first[i]);
  }
  probe.forward(b1.inputs, 0, 1).backward(cloudGradient(a1, 1));
  const auto applied = replay.apply(1, cloudGradient(a1, 1), model, 1, optimizer);
  EXPECT_EQ(applied.staleness, 1);
  std::vector<torch::Tensor> expected;
  const auto probe_params = probe.parameters(0, 1);
  for (std::size_t i = 0; i < after_first.size(); ++i)
    expected.push_back(after_first[i] - 0.05 * probe_params[i].grad());
  EXPECT_LT(largestDifference(model.parameters(0, 1), expected), 1e-6);
  EXPECT_EQ(replay.stats().max_staleness, 1);
  EXPECT_EQ(replay.stats().staleness.at(0), 1);
  EXPECT_EQ(replay.stats().staleness.at(1), 1);
}

TEST(FeatureReplay, ErrorFeedbackAppliesOnlyToLossyActivationsOnTheEdge) {
  FeatureReplay replay(splitConfig(0), sgd(), true);
  EXPECT_TRUE(replay.errorFeedbackFor("int8", 1));
  EXPECT_FALSE(replay.errorFeedbackFor("none", 1));
  EXPECT_FALSE(replay.errorFeedbackFor("int8", 0));
  EXPECT_FALSE(FeatureReplay(splitConfig(0), sgd(), false).errorFeedbackFor("int8", 1));
}

// With error feedback the gradient of an int4-coded batch is corrected by the stored
// quantisation error, so the update differs from the uncorrected one.
TEST(FeatureReplay, ErrorFeedbackCorrectsTheGradient) {
  std::vector<std::vector<torch::Tensor>> results;
  for (const bool feedback : {false, true}) {
    auto model = mlp();
    optim::StageOptimizers optimizer(sgd(), model, 0, 1);
    FeatureReplay replay(splitConfig(0), sgd(), feedback);
    transport::CodecCache codecs;
    const auto activation = replay.forward(model, 1, batch(model, 0), 0, 0);
    const auto frame = replay.encode(0, activation, "int4", 1, codecs);
    EXPECT_EQ(frame.meta.codec, "int4");
    replay.apply(0, cloudGradient(activation, 0) * 10, model, 1, optimizer);
    results.push_back(copies(model.parameters(0, 1)));
  }
  EXPECT_GT(largestDifference(results[0], results[1]), 0.0);
}

TEST(FeatureReplay, SplitZeroSendsTheInputAndUpdatesNothing) {
  auto model = mlp();
  optim::StageOptimizers optimizer(sgd(), model, 0, 0);
  FeatureReplay replay(splitConfig(0), sgd(), false);
  const auto b = batch(model, 0);
  const auto activation = replay.forward(model, 0, b, 0, 0);
  EXPECT_TRUE(activation.equal(b.inputs));
  const auto before = copies(model.parameters(0, model.numStages()));
  replay.apply(0, torch::Tensor(), model, 0, optimizer);
  EXPECT_EQ(largestDifference(before, model.parameters(0, model.numStages())), 0.0);
  EXPECT_EQ(replay.updates(), 1u);
}

}  // namespace
}  // namespace tandem::pipeline

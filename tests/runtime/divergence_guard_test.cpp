// The divergence guard's pieces without a network: the check of one step (LossWatch, the
// gradient test), the snapshots and the choice of the one to roll back to, the policy of
// safer settings, fault injection, and the feature replay refusing a poisoned step.
#include <gtest/gtest.h>
#include <torch/utils.h>

#include <cmath>
#include <limits>

#include "runtime/pipeline/divergence_guard.h"
#include "runtime/pipeline/feature_replay.h"

namespace tandem::pipeline {
namespace {

config::GuardConfig guard(double spike_factor = 4.0, int window = 5) {
  config::GuardConfig g;
  g.spike_factor = spike_factor;
  g.window = window;
  return g;
}

TEST(LossWatch, NonFiniteIsAlwaysCaughtEvenBeforeTheWindowFills) {
  LossWatch watch(guard());
  EXPECT_EQ(watch.check(std::numeric_limits<double>::quiet_NaN()), Verdict::kNonFinite);
  EXPECT_EQ(watch.check(std::numeric_limits<double>::infinity()), Verdict::kNonFinite);
  EXPECT_EQ(watch.check(-std::numeric_limits<double>::infinity()), Verdict::kNonFinite);
  EXPECT_EQ(watch.check(50.0), Verdict::kOk);  // no level yet: a large first loss is not a spike
}

TEST(LossWatch, ASpikeIsFarAboveTheMedianInBothRatioAndAbsoluteTerms) {
  LossWatch watch(guard(4.0, 5));
  for (double loss : {0.5, 0.6, 0.4, 0.5, 0.55}) watch.accept(loss);
  EXPECT_DOUBLE_EQ(watch.level(), 0.5);
  EXPECT_EQ(watch.check(1.9), Verdict::kOk);     // under 4 × 0.5
  EXPECT_EQ(watch.check(2.4), Verdict::kOk);     // over 4 × 0.5, under 0.5 + 2
  EXPECT_EQ(watch.check(2.6), Verdict::kSpike);  // over both
  // Near zero the ratio alone would flag ordinary batches: the absolute margin holds.
  LossWatch low(guard(4.0, 3));
  for (double loss : {0.01, 0.02, 0.01}) low.accept(loss);
  EXPECT_EQ(low.check(1.2), Verdict::kOk);
  EXPECT_EQ(low.check(2.1), Verdict::kSpike);
}

TEST(LossWatch, TheMedianIgnoresOneOutlierAndFollowsTheLastWindow) {
  LossWatch watch(guard(4.0, 3));
  for (double loss : {2.0, 2.0, 100.0}) watch.accept(loss);
  EXPECT_DOUBLE_EQ(watch.level(), 2.0);
  for (double loss : {1.0, 1.0}) watch.accept(loss);
  EXPECT_DOUBLE_EQ(watch.level(), 1.0);
  watch.accept(std::numeric_limits<double>::quiet_NaN());  // never enters the level
  EXPECT_DOUBLE_EQ(watch.level(), 1.0);
}

TEST(LossWatch, ZeroFactorTurnsSpikeDetectionOff) {
  LossWatch watch(guard(0.0, 2));
  watch.accept(0.1);
  watch.accept(0.1);
  EXPECT_EQ(watch.check(1000.0), Verdict::kOk);
  EXPECT_EQ(watch.check(std::numeric_limits<double>::quiet_NaN()), Verdict::kNonFinite);
}

TEST(GradientCheck, FindsOneNonFiniteElementAnywhere) {
  auto a = torch::zeros({3, 3}, torch::requires_grad());
  auto b = torch::zeros({4}, torch::requires_grad());
  (a.sum() + b.sum()).backward();
  EXPECT_TRUE(gradientsFinite({a, b}));
  {
    torch::NoGradGuard no_grad;
    b.grad()[2] = std::numeric_limits<float>::infinity();
  }
  EXPECT_FALSE(gradientsFinite({a, b}));
  auto c = torch::zeros({2}, torch::requires_grad());  // no gradient: ignored
  EXPECT_TRUE(gradientsFinite({c, a}));
  poisonGradients({a});
  EXPECT_TRUE(a.grad().isnan().all().item<bool>());
  EXPECT_FALSE(gradientsFinite({a}));
}

checkpoint::Checkpoint at(std::uint64_t step) {
  checkpoint::Checkpoint c;
  c.step = step;
  return c;
}

TEST(Snapshots, RollBackToTheNewestThatIsOldEnoughElseTheOldest) {
  Snapshots snapshots(3);
  EXPECT_THROW(snapshots.target(10, 5), TrainingDiverged);
  for (std::uint64_t step : {0, 10, 20, 30}) snapshots.add(at(step));
  EXPECT_EQ(snapshots.steps(), (std::vector<std::uint64_t>{10, 20, 30}));  // capacity 3
  EXPECT_EQ(snapshots.target(33, 5), 20u);                                 // 30 is only 3 steps old
  EXPECT_EQ(snapshots.target(35, 5), 30u);
  EXPECT_EQ(snapshots.target(12, 5), 10u);  // none old enough: the oldest
  EXPECT_THROW(snapshots.add(at(30)), Error);
  snapshots.dropAfter(20);
  EXPECT_EQ(snapshots.steps(), (std::vector<std::uint64_t>{10, 20}));
  EXPECT_NE(snapshots.find(20), nullptr);
  EXPECT_EQ(snapshots.find(30), nullptr);
}

TEST(SaferSetting, HalvesKThenDropsLossyCodecsThenLowersTheLearningRate) {
  const auto g = guard();
  TrainingSetting s{4, "int8", "fp16", 1.0};
  std::string action;
  s = saferSetting(s, g, action);
  EXPECT_EQ(s.staleness, 2);
  EXPECT_EQ(action, "K 4 -> 2");
  s = saferSetting(s, g, action);
  s = saferSetting(s, g, action);
  EXPECT_EQ(s.staleness, 0);
  EXPECT_EQ(s.uplink_codec, "int8");
  s = saferSetting(s, g, action);
  EXPECT_EQ(s.uplink_codec, "none");
  EXPECT_EQ(s.downlink_codec, "none");
  EXPECT_DOUBLE_EQ(s.lr_scale, 1.0);
  s = saferSetting(s, g, action);
  EXPECT_DOUBLE_EQ(s.lr_scale, 0.5);
  EXPECT_EQ(action, "learning rate x1 -> x0.5");
  // A lossless codec is kept.
  s = saferSetting(TrainingSetting{0, "none+zstd", "none", 1.0}, g, action);
  EXPECT_EQ(s.uplink_codec, "none+zstd");
  EXPECT_DOUBLE_EQ(s.lr_scale, 0.5);
}

TEST(FaultInjection, OnlyTheNamedStepOnTheNamedSide) {
  config::GuardConfig g;
  EXPECT_FALSE(injectNanAt(g, config::Role::kCloud, 0));
  g.inject_nan_step = 7;
  g.inject_nan_on = config::FaultSide::kCloud;
  EXPECT_TRUE(injectNanAt(g, config::Role::kCloud, 7));
  EXPECT_FALSE(injectNanAt(g, config::Role::kCloud, 8));
  EXPECT_FALSE(injectNanAt(g, config::Role::kEdge, 7));
}

TEST(FeatureReplayGuard, APoisonedOrNonFiniteGradientChangesNothing) {
  auto model = models::makeModel(models::ModelSpec{"mlp", 1, 4, 4, 3}, 9);
  config::OptimizerConfig o;
  o.lr = 0.1;
  optim::StageOptimizers optimizer(o, model, 0, 1);
  config::SplitConfig split;
  split.staleness = 1;
  FeatureReplay replay(split, o, false);
  torch::manual_seed(1);
  data::Batch b{torch::randn({4, 1, 4, 4}), torch::tensor({0, 1, 2, 0}, torch::kInt64), 0, {}};
  const auto before = model.state(0, 1);
  std::vector<torch::Tensor> copy;
  for (const auto& t : before) copy.push_back(t.clone());
  const auto activation = replay.forward(model, 1, b, 0, 0);
  auto nan_grad = torch::full_like(activation, std::numeric_limits<float>::quiet_NaN());
  EXPECT_FALSE(replay.apply(0, nan_grad, model, 1, optimizer).applied);
  replay.forward(model, 1, b, 1, 0);
  EXPECT_FALSE(replay.apply(1, torch::ones_like(activation), model, 1, optimizer, /*poison=*/true).applied);
  for (std::size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(torch::equal(before[i], copy[i])) << i;
  EXPECT_EQ(replay.updates(), 0u);
  EXPECT_TRUE(replay.empty());
  replay.forward(model, 1, b, 2, 0);
  EXPECT_TRUE(replay.apply(2, torch::ones_like(activation), model, 1, optimizer).applied);
  EXPECT_EQ(replay.updates(), 1u);
  replay.forward(model, 1, b, 3, 0);
  EXPECT_EQ(replay.discard(3).step, 3u);
  EXPECT_TRUE(replay.empty());
}

}  // namespace
}  // namespace tandem::pipeline

#include <gtest/gtest.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/sgd.h>

#include "runtime/common/error.h"
#include "runtime/models/stage_model.h"
#include "runtime/optim/schedule.h"
#include "runtime/optim/stage_optimizers.h"

namespace tandem::optim {
namespace {

config::OptimizerConfig base(double lr = 0.1) {
  config::OptimizerConfig o;
  o.lr = lr;
  return o;
}

TEST(Schedule, None) { EXPECT_DOUBLE_EQ(learningRate(base(), 7, 10), 0.1); }

TEST(Schedule, Step) {
  auto o = base();
  o.schedule.name = config::LrSchedule::kStep;
  o.schedule.step_size = 2;
  o.schedule.gamma = 0.5;
  EXPECT_DOUBLE_EQ(learningRate(o, 0, 10), 0.1);
  EXPECT_DOUBLE_EQ(learningRate(o, 1, 10), 0.1);
  EXPECT_DOUBLE_EQ(learningRate(o, 2, 10), 0.05);
  EXPECT_DOUBLE_EQ(learningRate(o, 5, 10), 0.025);
}

TEST(Schedule, Multistep) {
  auto o = base();
  o.schedule.name = config::LrSchedule::kMultistep;
  o.schedule.milestones = {3, 6};
  o.schedule.gamma = 0.1;
  EXPECT_DOUBLE_EQ(learningRate(o, 2, 10), 0.1);
  EXPECT_NEAR(learningRate(o, 3, 10), 0.01, 1e-15);
  EXPECT_NEAR(learningRate(o, 9, 10), 0.001, 1e-15);
}

TEST(Schedule, CosineWithWarmup) {
  auto o = base();
  o.schedule.name = config::LrSchedule::kCosine;
  o.schedule.min_lr = 0.0;
  o.schedule.warmup_epochs = 1;
  EXPECT_DOUBLE_EQ(learningRate(o, 0, 5), 0.05);  // warm-up: lr · 1/2
  EXPECT_DOUBLE_EQ(learningRate(o, 1, 5), 0.1);   // cosine starts at lr
  EXPECT_NEAR(learningRate(o, 3, 5), 0.05, 1e-12);  // half-way through the 4 cosine epochs
  EXPECT_LT(learningRate(o, 4, 5), learningRate(o, 3, 5));
}

models::StageModel smallModel() { return models::makeModel(models::ModelSpec{"mlp", 1, 4, 4, 3}, 9); }

void trainSteps(models::StageModel& model, StageOptimizers& optimizer, int steps) {
  for (int s = 0; s < steps; ++s) {
    optimizer.zeroGrad();
    auto x = torch::ones({4, 1, 4, 4}) * (s + 1) * 0.1;
    auto loss = torch::nn::functional::cross_entropy(model.forward(x, 0, model.numStages()),
                                                     torch::tensor({0, 1, 2, 0}, torch::kInt64));
    loss.backward();
    optimizer.step();
  }
}

TEST(StageOptimizers, MatchesOneOptimizerOverTheWholeModel) {
  for (bool nesterov : {false, true}) {
    auto o = base(0.05);
    o.momentum = 0.9;
    o.nesterov = nesterov;
    o.weight_decay = 1e-3;
    auto a = smallModel();
    auto b = smallModel();
    StageOptimizers per_stage(o, a, 0, a.numStages());
    torch::optim::SGD whole(b.parameters(0, b.numStages()),
                            torch::optim::SGDOptions(0.05).momentum(0.9).nesterov(nesterov).weight_decay(1e-3));
    for (int s = 0; s < 5; ++s) {
      per_stage.zeroGrad();
      whole.zero_grad();
      auto x = torch::randn({4, 1, 4, 4});
      auto y = torch::tensor({0, 1, 2, 0}, torch::kInt64);
      torch::nn::functional::cross_entropy(a.forward(x, 0, a.numStages()), y).backward();
      torch::nn::functional::cross_entropy(b.forward(x, 0, b.numStages()), y).backward();
      per_stage.step();
      whole.step();
    }
    const auto pa = a.parameters(0, a.numStages());
    const auto pb = b.parameters(0, b.numStages());
    for (std::size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(pa[i].equal(pb[i]));
  }
}

TEST(StageOptimizers, StateMovesBetweenInstances) {
  for (const auto name : {config::OptimizerKind::kSgd, config::OptimizerKind::kAdam}) {
    SCOPED_TRACE(config::toString(name));
    auto o = base(0.01);
    o.name = name;
    auto a = smallModel();
    auto b = smallModel();
    StageOptimizers oa(o, a, 0, a.numStages());
    trainSteps(a, oa, 3);
    // Move stage 1 (weights and optimizer state) from a's optimizers into a second set
    // that owns only that stage, continue both, and compare with uninterrupted training.
    auto reference = smallModel();
    StageOptimizers oref(o, reference, 0, reference.numStages());
    trainSteps(reference, oref, 3);

    const auto state = oa.exportState(1);
    oa.removeStage(1);
    StageOptimizers moved(o, a, 1, 2);
    moved.importState(1, state);
    for (int s = 0; s < 2; ++s) {
      oa.zeroGrad();
      moved.zeroGrad();
      oref.zeroGrad();
      auto x = torch::ones({4, 1, 4, 4}) * 0.3;
      auto y = torch::tensor({0, 1, 2, 0}, torch::kInt64);
      torch::nn::functional::cross_entropy(a.forward(x, 0, a.numStages()), y).backward();
      torch::nn::functional::cross_entropy(reference.forward(x, 0, reference.numStages()), y).backward();
      oa.step();
      moved.step();
      oref.step();
    }
    const auto pa = a.parameters(0, a.numStages());
    const auto pr = reference.parameters(0, reference.numStages());
    for (std::size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(pa[i].equal(pr[i])) << "parameter " << i;
    (void)b;
  }
}

TEST(StageOptimizers, ImportRejectsMismatchedState) {
  auto o = base();
  auto a = smallModel();
  StageOptimizers oa(o, a, 0, a.numStages());
  EXPECT_THROW(oa.importState(0, {}), InvariantError);
  EXPECT_THROW(oa.importState(0, {{torch::zeros({1})}, {}}), InvariantError);
}

TEST(StageOptimizers, LearningRateReachesEveryStage) {
  auto o = base(0.1);
  o.momentum = 0;
  auto a = smallModel();
  StageOptimizers oa(o, a, 0, a.numStages());
  oa.setLearningRate(0.0);
  const auto before = a.state(0, a.numStages());
  std::vector<torch::Tensor> copies;
  for (const auto& t : before) copies.push_back(t.clone());
  trainSteps(a, oa, 1);
  const auto after = a.state(0, a.numStages());
  for (std::size_t i = 0; i < after.size(); ++i) EXPECT_TRUE(after[i].equal(copies[i]));
}

}  // namespace
}  // namespace tandem::optim

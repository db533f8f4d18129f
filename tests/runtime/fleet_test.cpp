// A fleet's averaging and its cross-edge cloud step, without a network.
#include <gtest/gtest.h>
#include <torch/nn/functional/loss.h>

#include "runtime/pipeline/cloud_step.h"
#include "runtime/pipeline/fleet.h"
#include "runtime/pipeline/setup.h"
#include "runtime/session/handshake.h"
#include "tests/runtime/tensor_compare.h"

namespace tandem::pipeline {
namespace {

config::Config mlpConfig(const std::string& optimizer = "sgd") {
  return config::parseConfig(R"(
run: {seed: 5}
data:
  dataset: synthetic
  batch_size: 8
  synthetic: {train_size: 64, test_size: 16, height: 6, width: 6, num_classes: 4}
model: {name: mlp}
optimizer: {name: )" + optimizer +
                                 R"(, lr: 0.1, momentum: 0.9, weight_decay: 0.01}
security: {mode: plaintext}
)",
                             "fleet_test.yaml");
}

using test_util::maxDifference;

// One SGD step of stages [0, n) on random data, so the optimizer holds momentum.
void trainOnce(models::StageModel& model, optim::StageOptimizers& optimizer, std::uint64_t seed) {
  torch::manual_seed(seed);
  const auto x = torch::randn({8, 1, 6, 6});
  const auto y = torch::randint(0, 4, {8}, torch::kInt64);
  optimizer.zeroGrad();
  torch::nn::functional::cross_entropy(model.forward(x, 0, model.numStages()), y).backward();
  optimizer.step();
}

TEST(FleetAverage, IsTheSampleWeightedMeanOfWeightsAndMomentum) {
  const auto config = mlpConfig();
  auto a = buildModel(config);
  auto b = buildModel(config);
  optim::StageOptimizers oa(config.optimizer, a, 0, a.numStages());
  optim::StageOptimizers ob(config.optimizer, b, 0, b.numStages());
  trainOnce(a, oa, 1);
  trainOnce(b, ob, 2);
  auto ra = captureStage(a, oa, 0);
  auto rb = captureStage(b, ob, 0);
  ra.weight = 30;
  rb.weight = 10;
  const auto avg = averageReplicas({&ra, &rb});
  EXPECT_DOUBLE_EQ(avg.weight, 40);
  ASSERT_EQ(avg.state.size(), ra.state.size());
  for (std::size_t i = 0; i < avg.state.size(); ++i) {
    const auto expected = ra.state[i] * 0.75 + rb.state[i] * 0.25;
    EXPECT_LT((avg.state[i] - expected).abs().max().item<double>(), 1e-6) << "tensor " << i;
  }
  ASSERT_EQ(avg.optimizer.size(), ra.optimizer.size());
  ASSERT_EQ(avg.optimizer[0].size(), 1u);  // the SGD momentum buffer
  const auto expected = ra.optimizer[0][0] * 0.75 + rb.optimizer[0][0] * 0.25;
  EXPECT_LT((avg.optimizer[0][0] - expected).abs().max().item<double>(), 1e-6);
}

TEST(FleetAverage, MissingOptimizerStateCountsAsZerosAndIntegersRound) {
  const auto config = mlpConfig("adam");
  auto a = buildModel(config);
  auto b = buildModel(config);
  optim::StageOptimizers oa(config.optimizer, a, 0, a.numStages());
  optim::StageOptimizers ob(config.optimizer, b, 0, b.numStages());
  trainOnce(a, oa, 1);
  auto ra = captureStage(a, oa, 1);
  auto rb = captureStage(b, ob, 1);  // never stepped: no Adam state at all
  ASSERT_TRUE(rb.optimizer[0].empty());
  ra.weight = 1;
  rb.weight = 2;
  const auto avg = averageReplicas({&rb, &ra});
  ASSERT_EQ(avg.optimizer[0].size(), 3u);
  EXPECT_EQ(avg.optimizer[0][0].scalar_type(), torch::kInt64);
  EXPECT_EQ(avg.optimizer[0][0].item<std::int64_t>(), 0);  // round(1/3 × 1)
  EXPECT_LT((avg.optimizer[0][1] - ra.optimizer[0][1] / 3).abs().max().item<double>(), 1e-7);
  // Installed into a model, the average is what the model and its optimizer then hold.
  installStage(avg, b, ob, 1);
  const auto back = captureStage(b, ob, 1);
  EXPECT_EQ(maxDifference(back.state, avg.state), 0.0);
  EXPECT_EQ(maxDifference(back.optimizer[0], avg.optimizer[0]), 0.0);
}

TEST(FleetAverage, StagesTravelIntactAndAreCheckedBeforeUse) {
  const auto config = mlpConfig();
  auto model = buildModel(config);
  optim::StageOptimizers optimizer(config.optimizer, model, 0, model.numStages());
  trainOnce(model, optimizer, 3);
  transport::CodecCache codecs;
  const auto make = [&] {
    transport::Message m(transport::MessageType::kAverage, transport::AverageInfo{4, 100, 0, {}});
    addStages(m, model, optimizer, 2);
    return m;
  };
  auto message = make();
  EXPECT_EQ(std::get<transport::AverageInfo>(message.body).stages, 2u);
  const auto stages = stagesFromMessage(message, model, config::OptimizerKind::kSgd, codecs);
  ASSERT_EQ(stages.size(), 2u);
  for (int s = 0; s < 2; ++s) {
    const auto own = captureStage(model, optimizer, s);
    EXPECT_EQ(maxDifference(stages[s].state, own.state), 0.0);
    EXPECT_EQ(maxDifference(stages[s].optimizer[0], own.optimizer[0]), 0.0);
  }

  const auto rejected = [&](auto spoil, const std::string& what) {
    auto m = make();
    spoil(m);
    try {
      stagesFromMessage(m, model, config::OptimizerKind::kSgd, codecs);
      ADD_FAILURE() << what << ": accepted";
    } catch (const transport::WireError& e) {
      EXPECT_EQ(e.code(), transport::ErrorCode::kInvalidTensor) << what;
    }
  };
  rejected([](auto& m) { std::get<transport::AverageInfo>(m.body).stages = 9; }, "more stages than the model");
  rejected([](auto& m) { std::get<transport::AverageInfo>(m.body).optimizer_layout[0] = 3; }, "Adam layout for SGD");
  rejected([](auto& m) { std::get<transport::AverageInfo>(m.body).optimizer_layout.push_back(1); }, "layout too long");
  rejected([](auto& m) { m.header.tensors[0].shape[0] += 1; }, "wrong shape");
  rejected(
      [](auto& m) {
        m.header.tensors.pop_back();
        m.payloads.pop_back();
      },
      "a tensor missing");
  rejected(
      [](auto& m) {
        auto* f = reinterpret_cast<float*>(m.payloads[0].data());
        f[0] = std::numeric_limits<float>::quiet_NaN();
      },
      "a NaN weight");
}

TEST(FleetJointStep, EqualsOneStepOnTheConcatenatedBatchAndEachEdgeGetsItsOwnGradient) {
  const auto config = mlpConfig();
  const int split = 2;
  auto joint = buildModel(config);
  auto single = buildModel(config);
  const int n = joint.numStages();
  optim::StageOptimizers joint_opt(config.optimizer, joint, 0, n);
  optim::StageOptimizers single_opt(config.optimizer, single, split, n);
  torch::manual_seed(7);
  const auto shape = joint.boundaryShapes()[split];
  std::vector<std::int64_t> dims_a{5};
  std::vector<std::int64_t> dims_b{3};
  dims_a.insert(dims_a.end(), shape.begin(), shape.end());
  dims_b.insert(dims_b.end(), shape.begin(), shape.end());
  CloudBatch a{torch::randn(dims_a), torch::randint(0, 4, {5}, torch::kInt64), 5, 0};
  CloudBatch b{torch::randn(dims_b), torch::randint(0, 4, {3}, torch::kInt64), 3, 0};
  // Each edge's own gradient, from the weights before the step.
  const auto alone = [&](CloudBatch& batch) {
    auto probe = buildModel(config);
    optim::StageOptimizers o(config.optimizer, probe, split, n);
    return trainStep(probe, o, split, n, batch).boundary_gradient;
  };
  const auto grad_a = alone(a);
  const auto grad_b = alone(b);
  std::vector<StepPart> parts{{&a, split}, {&b, split}};
  const auto outcomes = trainJointStep(joint, joint_opt, parts, n);
  CloudBatch both{torch::cat({a.activation, b.activation}), torch::cat({a.labels, b.labels}), 8, 0};
  trainStep(single, single_opt, split, n, both);
  EXPECT_LT(maxDifference(joint.state(split, n), single.state(split, n)), 1e-6);
  // Stages below the split were not stepped.
  EXPECT_EQ(maxDifference(joint.state(0, split), buildModel(config).state(0, split)), 0.0);
  ASSERT_EQ(outcomes.size(), 2u);
  EXPECT_LT((outcomes[0].boundary_gradient - grad_a).abs().max().item<double>(), 1e-6);
  EXPECT_LT((outcomes[1].boundary_gradient - grad_b).abs().max().item<double>(), 1e-6);
  EXPECT_EQ(outcomes[0].verdict, Verdict::kOk);
}

TEST(FleetJointStep, PartsAtDifferentSplitsMeetWhereTheyCan) {
  const auto config = mlpConfig();
  auto model = buildModel(config);
  const int n = model.numStages();
  optim::StageOptimizers optimizer(config.optimizer, model, 0, n);
  torch::manual_seed(8);
  const auto dims = [&](int split, std::int64_t batch) {
    std::vector<std::int64_t> d{batch};
    const auto& s = model.boundaryShapes()[split];
    d.insert(d.end(), s.begin(), s.end());
    return d;
  };
  CloudBatch low{torch::randn(dims(1, 4)), torch::randint(0, 4, {4}, torch::kInt64), 4, 0};
  CloudBatch high{torch::randn(dims(3, 2)), torch::randint(0, 4, {2}, torch::kInt64), 2, 0};
  std::vector<StepPart> parts{{&high, 3}, {&low, 1}};
  const auto outcomes = trainJointStep(model, optimizer, parts, n);
  ASSERT_EQ(outcomes.size(), 2u);
  EXPECT_EQ(outcomes[0].boundary_gradient.sizes(), high.activation.sizes());
  EXPECT_EQ(outcomes[1].boundary_gradient.sizes(), low.activation.sizes());
  // Stage 0 is below both splits: untouched; stages 1.. were trained.
  EXPECT_EQ(maxDifference(model.state(0, 1), buildModel(config).state(0, 1)), 0.0);
  EXPECT_GT(maxDifference(model.state(1, 2), buildModel(config).state(1, 2)), 0.0);
  EXPECT_GT(maxDifference(model.state(3, 4), buildModel(config).state(3, 4)), 0.0);
  for (const auto& o : outcomes) {
    EXPECT_TRUE(std::isfinite(o.loss));
    EXPECT_GE(o.correct, 0);
  }
}

// Edges name the directories of their summaries and checkpoints on the cloud.
TEST(FleetSummaries, RunNamesBecomeDirectoryNamesThatCannotClimbOut) {
  EXPECT_EQ(session::directoryName("edge-3_a.b"), "edge-3_a.b");
  EXPECT_EQ(session::directoryName("../../etc/passwd"), ".._.._etc_passwd");
  EXPECT_EQ(session::directoryName(".."), "__");
  EXPECT_EQ(session::directoryName("."), "_");
  EXPECT_EQ(session::directoryName(""), "_");
  EXPECT_EQ(session::directoryName("a/b\\c d"), "a_b_c_d");
}

}  // namespace
}  // namespace tandem::pipeline

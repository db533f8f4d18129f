// The divergence guard in split training, edge and cloud in one process over loopback:
// a NaN gradient injected on either side rolls both back to the same snapshot and the run
// ends with finite parameters and the intervention in both summaries; a run past
// guard.max_rollbacks stops with TrainingDiverged on the edge and kDiverged on the cloud;
// the standalone trainer guards itself the same way.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "runtime/pipeline/divergence_guard.h"
#include "runtime/pipeline/setup.h"
#include "runtime/pipeline/standalone.h"
#include "tests/runtime/split_test_util.h"

namespace tandem::pipeline {
namespace {

namespace fs = std::filesystem;

std::string outputDir(const std::string& name) {
  return (fs::temp_directory_path() / ("tandem_guard_" + std::to_string(::getpid()) + "_" + name)).string();
}

config::Config guardConfig(const std::string& name, const std::string& extra) {
  return config::parseConfig(R"(
run: {name: guard_test, epochs: 1, seed: 3}
data:
  dataset: synthetic
  batch_size: 16
  max_train_batches: 16
  max_test_batches: 2
  synthetic: {train_size: 512, test_size: 64, height: 8, width: 8, num_classes: 4, noise: 1.0}
model: {name: mlp}
optimizer: {name: sgd, lr: 0.05, momentum: 0.9}
split: {point: 1, staleness: 2, staleness_warmup_steps: 0}
guard: {snapshot_every_steps: 4}
link: {heartbeat_interval_s: 0.5, peer_timeout_s: 10, connect_timeout_s: 10}
security: {mode: plaintext}
)" + extra,
                             "guard_test.yaml", {"run.output_dir=" + outputDir(name)});
}

bool allFinite(const std::vector<torch::Tensor>& tensors) {
  for (const auto& t : tensors) {
    if (!torch::isfinite(t).all().item<bool>()) return false;
  }
  return true;
}

nlohmann::json readJson(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

class GuardRollsBack : public ::testing::TestWithParam<std::string> {};

TEST_P(GuardRollsBack, ANanGradientOnEitherSideIsNeverApplied) {
  const std::string side = GetParam();
  auto config = guardConfig(side, "");
  config.guard.inject_nan_step = 6;
  config.guard.inject_nan_on = side == "edge" ? config::FaultSide::kEdge : config::FaultSide::kCloud;
  testing::CloudThread cloud(config);
  auto edge = testing::makeEdge(config, cloud.endpoint);
  std::atomic<bool> stop{false};
  const auto summary = edge->run(stop);
  cloud.join();
  EXPECT_EQ(cloud.outcome, CloudOutcome::kCompleted);
  ASSERT_EQ(summary.interventions.size(), 1u);
  const auto& i = summary.interventions[0];
  EXPECT_EQ(i.step, 6);
  EXPECT_EQ(i.side, side);
  EXPECT_EQ(i.reason, "non_finite");
  // Snapshots at steps 0, 4, 8, ...: step 4 is half an interval before step 6.
  EXPECT_EQ(i.rolled_back_to, 4);
  EXPECT_EQ(i.action, "K 2 -> 1");
  EXPECT_FALSE(summary.diverged);
  EXPECT_FALSE(summary.interrupted);
  // The epoch still trains each of its batches once (those after the snapshot again).
  ASSERT_EQ(summary.history.size(), 1u);
  EXPECT_EQ(summary.history[0].steps, 16);
  EXPECT_TRUE(std::isfinite(summary.history[0].train_loss));
  EXPECT_TRUE(std::isfinite(summary.history[0].test_loss));
  EXPECT_TRUE(allFinite(edge->model().state(0, edge->splitPoint())));
  auto* cloud_model = cloud.cloud->lastModel();
  ASSERT_NE(cloud_model, nullptr);
  EXPECT_TRUE(allFinite(cloud_model->state(edge->splitPoint(), cloud_model->numStages())));
  const auto& cs = cloud.cloud->lastSummary();
  ASSERT_EQ(cs.interventions.size(), 1u);
  EXPECT_EQ(cs.interventions[0].rolled_back_to, 4);
  EXPECT_EQ(cs.history[0].steps, 16);
  EXPECT_EQ(cs.staleness(), std::vector<int>{1});  // the epoch ends with the safer K
  const auto json = readJson(config.run.output_dir + "/summary-edge.json");
  ASSERT_EQ(json["interventions"].size(), 1u);
  EXPECT_EQ(json["interventions"][0]["side"], side);
  EXPECT_EQ(json["interventions"][0]["rolled_back_to"], 4);
  EXPECT_EQ(json["diverged"], false);
  fs::remove_all(config.run.output_dir);
}

INSTANTIATE_TEST_SUITE_P(Sides, GuardRollsBack, ::testing::Values("edge", "cloud"));

TEST(Guard, PastMaxRollbacksTheRunStopsOnBothSides) {
  auto config = guardConfig("stop", "");
  config.guard.max_rollbacks = 0;
  config.guard.inject_nan_step = 5;
  config.guard.inject_nan_on = config::FaultSide::kCloud;
  testing::CloudThread cloud(config);
  auto edge = testing::makeEdge(config, cloud.endpoint);
  std::atomic<bool> stop{false};
  EXPECT_THROW(edge->run(stop), TrainingDiverged);
  cloud.join();
  EXPECT_EQ(cloud.outcome, CloudOutcome::kDiverged);
  const auto json = readJson(config.run.output_dir + "/summary-edge.json");
  EXPECT_EQ(json["diverged"], true);
  EXPECT_EQ(json["interrupted"], true);
  ASSERT_EQ(json["interventions"].size(), 1u);
  EXPECT_TRUE(json["interventions"][0]["rolled_back_to"].is_null());
  EXPECT_EQ(cloud.cloud->lastSummary().diverged, true);
  fs::remove_all(config.run.output_dir);
}

TEST(Guard, StandaloneRollsBackAndLowersTheLearningRate) {
  auto config = guardConfig("standalone", "");
  config.guard.inject_nan_step = 9;
  config.guard.inject_nan_on = config::FaultSide::kEdge;
  StandaloneTrainer trainer(config);
  std::atomic<bool> stop{false};
  const auto summary = trainer.run(stop);
  ASSERT_EQ(summary.interventions.size(), 1u);
  EXPECT_EQ(summary.interventions[0].step, 9);
  EXPECT_EQ(summary.interventions[0].rolled_back_to, 4);  // 8 is only one step old
  EXPECT_EQ(summary.interventions[0].action, "learning rate x1 -> x0.5");
  ASSERT_EQ(summary.history.size(), 1u);
  EXPECT_EQ(summary.history[0].steps, 16);
  EXPECT_DOUBLE_EQ(summary.history[0].learning_rate, 0.025);
  EXPECT_TRUE(allFinite(trainer.model().state(0, trainer.model().numStages())));
  fs::remove_all(config.run.output_dir);
}

TEST(Guard, StandaloneStopsWhenItCannotRecover) {
  auto config = guardConfig("standalone_stop", "");
  config.guard.max_rollbacks = 0;
  config.guard.inject_nan_step = 3;
  config.guard.inject_nan_on = config::FaultSide::kEdge;
  StandaloneTrainer trainer(config);
  std::atomic<bool> stop{false};
  EXPECT_THROW(trainer.run(stop), TrainingDiverged);
  const auto json = readJson(config.run.output_dir + "/summary-edge.json");
  EXPECT_EQ(json["diverged"], true);
  fs::remove_all(config.run.output_dir);
}

}  // namespace
}  // namespace tandem::pipeline

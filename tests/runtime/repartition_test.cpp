// Live re-partitioning and link telemetry, with an edge and a cloud in one process.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/runtime/split_test_util.h"
#include "tests/runtime/tensor_compare.h"

namespace tandem::pipeline {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

std::string tempDir(const std::string& name) {
  const auto dir = fs::temp_directory_path() / ("tandem_repart_" + std::to_string(::getpid()) + "_" + name);
  fs::create_directories(dir);
  return dir.string();
}

config::Config baseConfig(const std::string& name, const std::string& extra = "") {
  const auto dir = tempDir(name);
  return config::parseConfig(R"(
run: {name: repartition, epochs: 3, seed: 9}
data:
  dataset: synthetic
  batch_size: 16
  max_train_batches: 10
  max_test_batches: 2
  synthetic: {train_size: 512, test_size: 64, height: 8, width: 8, num_classes: 4, noise: 1.0}
model: {name: cnn}
optimizer: {name: sgd, lr: 0.05, momentum: 0.9, weight_decay: 0.001}
split: {point: 2, staleness: 0}
link: {heartbeat_interval_s: 0.5, peer_timeout_s: 20}
scheduler: {profile_iterations: 1}
security: {mode: plaintext}
)" + extra,
                             "repartition.yaml", {"run.output_dir=" + dir, "scheduler.profile_dir=" + dir + "/profiles"});
}

struct Result {
  telemetry::RunSummary summary;
  std::vector<torch::Tensor> state;  // the whole model: edge part then cloud part
  std::vector<LinkSample> link;
};

Result train(const config::Config& config) {
  testing::CloudThread cloud(config);
  auto edge = testing::makeEdge(config, cloud.endpoint);
  std::atomic<bool> stop{false};
  Result r;
  r.summary = edge->run(stop);
  cloud.join();
  EXPECT_EQ(cloud.outcome, CloudOutcome::kCompleted);
  const int p = edge->splitPoint();
  const int n = edge->model().numStages();
  r.state = edge->model().state(0, p);
  const auto c = cloud.cloud->lastModel()->state(p, n);
  r.state.insert(r.state.end(), c.begin(), c.end());
  r.link = edge->linkHistory();
  return r;
}

using test_util::maxDifference;

class MigrationEquivalence : public ::testing::TestWithParam<std::string> {};

// K = 0, raw transfer, fixed seed: moving the split 2 → 4 → 2 during training (weights and
// optimizer state travel) ends with the same parameters as never moving.
TEST_P(MigrationEquivalence, MovingTheSplitLosesNoUpdate) {
  const std::string optimizer = "optimizer: {name: " + GetParam() + ", lr: 0.01, momentum: 0.9}\n";
  auto fixed = baseConfig("fixed_" + GetParam());
  fixed.optimizer.name = *config::parseEnum<config::OptimizerKind>(GetParam());
  auto moving = baseConfig("moving_" + GetParam(), "");
  moving.optimizer.name = *config::parseEnum<config::OptimizerKind>(GetParam());
  moving.scheduler.split_schedule = {{1, 4}, {2, 2}};
  const auto a = train(fixed);
  const auto b = train(moving);
  EXPECT_EQ(a.summary.splitPoints(), std::vector<int>({2, 2, 2}));
  EXPECT_EQ(b.summary.splitPoints(), std::vector<int>({2, 4, 2}));
  ASSERT_EQ(b.summary.repartitions.size(), 2u);
  EXPECT_EQ(b.summary.repartitions[0].from, 2);
  EXPECT_EQ(b.summary.repartitions[0].to, 4);
  EXPECT_GT(b.summary.repartitions[0].bytes, 0u);
  EXPECT_LE(maxDifference(a.state, b.state), 1e-6);
  // The decisions log has one line per epoch with predicted and measured times.
  std::ifstream in(moving.run.output_dir + "/decisions.jsonl");
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    EXPECT_TRUE(j.contains("predicted_epoch_s"));
    EXPECT_GT(j["measured_s"].get<double>(), 0.0);
    EXPECT_EQ(j["trigger"], lines == 0 ? "start" : "scheduled");
    ++lines;
  }
  EXPECT_EQ(lines, 3);
}

INSTANTIATE_TEST_SUITE_P(Optimizers, MigrationEquivalence, ::testing::Values("sgd", "adam"));

TEST(Telemetry, TracksAnEmulatedLinkInSteadyState) {
  auto config = baseConfig("steady");
  config.link.emulate.uplink_mbps = 20;
  config.link.emulate.downlink_mbps = 50;
  config.link.emulate.rtt_ms = 20;
  config.run.epochs = 1;
  config.data.max_train_batches = 40;
  config.split.staleness = 2;
  config.scheduler.enabled = true;
  const auto r = train(config);
  ASSERT_GE(r.link.size(), 30u);
  // Steady state: the median estimate over the last ten steps (one late wake-up of a
  // starved socket thread on a loaded 2-core machine should not decide the test).
  const auto median = [&](double LinkSample::*field) {
    std::vector<double> v;
    for (std::size_t i = r.link.size() - 10; i < r.link.size(); ++i) v.push_back(r.link[i].*field);
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  // Bandwidth estimates can come out low under load (a starved thread's delay counts as
  // transfer time), never far high.
  EXPECT_GE(median(&LinkSample::uplink_bps), 20e6 * 0.75);
  EXPECT_LE(median(&LinkSample::uplink_bps), 20e6 * 1.15);
  EXPECT_GE(median(&LinkSample::downlink_bps), 50e6 * 0.75);
  EXPECT_LE(median(&LinkSample::downlink_bps), 50e6 * 1.15);
  // The RTT estimate includes the time a loaded machine takes to schedule the threads that
  // timestamp a message: it can only come out above the emulated 20 ms, by a few ms under
  // load (23.4 ms measured with the whole suite running on 2 cores), never far below.
  const double rtt = median(&LinkSample::rtt_seconds);
  EXPECT_GE(rtt, 0.020 * 0.85);
  EXPECT_LE(rtt, 0.020 * 1.5);
}

TEST(Telemetry, FollowsAStepDropWithinAFewSteps) {
  const auto dir = tempDir("trace");
  const auto trace = dir + "/drop.csv";
  std::ofstream(trace) << "time_s,uplink_mbps,downlink_mbps\n0,40,100\n2,8,100\n";
  auto config = baseConfig("drop");
  config.link.emulate.trace = trace;
  config.link.emulate.rtt_ms = 10;
  config.run.epochs = 1;
  config.data.max_train_batches = 0;
  // 16×16 inputs: 128 KiB activations, 26 ms a batch at 40 Mbit/s and 130 ms at 8.
  config.data.synthetic.height = 16;
  config.data.synthetic.width = 16;
  config.data.synthetic.train_size = 16 * 100;
  config.split.staleness = 2;
  config.scheduler.enabled = true;
  const auto r = train(config);
  // Find the first step whose estimate is within 15% of the new rate, and check that the
  // estimate holds there afterwards; count steps from the first one after the drop.
  std::size_t after_drop = 0;
  while (after_drop < r.link.size() && r.link[after_drop].uplink_bps > 30e6) ++after_drop;
  std::size_t first_drop_sample = 0;
  while (first_drop_sample < r.link.size() && r.link[first_drop_sample].seconds < 2.0) ++first_drop_sample;
  ASSERT_LT(after_drop, r.link.size()) << "estimate never dropped";
  std::size_t tracked = after_drop;
  while (tracked < r.link.size() && std::abs(r.link[tracked].uplink_bps - 8e6) > 8e6 * 0.15) ++tracked;
  ASSERT_LT(tracked, r.link.size()) << "never within 15% of 8 Mbit/s";
  // Before the drop the estimate was right too. Under load it comes out low, never high: a
  // starved sender thread's delay counts as transfer time (33 Mbit/s measured with the whole
  // suite running on 2 cores).
  const double before = r.link[after_drop > 5 ? after_drop - 3 : 0].uplink_bps;
  EXPECT_GE(before, 40e6 * 0.75);
  EXPECT_LE(before, 40e6 * 1.15);
  // The trace is timed from the edge transport's creation, a little before the run clock
  // starts; allow for that and count the steps the estimate needed once the drop showed.
  EXPECT_LE(tracked - after_drop, 5u);
  EXPECT_GE(tracked, first_drop_sample > 10 ? first_drop_sample - 10 : 0);
}

}  // namespace
}  // namespace tandem::pipeline

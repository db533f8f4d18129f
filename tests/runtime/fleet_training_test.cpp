// A shared fleet end to end: one cloud and several edges in threads over loopback TCP.
#include <gtest/gtest.h>
#include <torch/nn/functional/loss.h>

#include <filesystem>
#include <thread>

#include "runtime/optim/stage_optimizers.h"
#include "runtime/pipeline/setup.h"
#include "tests/runtime/receive_util.h"
#include "tests/runtime/split_test_util.h"
#include "tests/runtime/tensor_compare.h"

namespace tandem::pipeline {
namespace {

namespace fs = std::filesystem;

std::string outputDir(const std::string& name) {
  return (fs::temp_directory_path() / ("tandem_fleet_" + std::to_string(::getpid()) + "_" + name)).string();
}

// The cloud's and every edge's config: the same file, with the edge's shard.
config::Config fleetConfig(const std::string& name, int edges, int index, const std::string& extra = "",
                           const std::string& mode = "shared") {
  return config::parseConfig(
      R"(
run: {name: fleet_test, epochs: 1, seed: 3}
data:
  dataset: synthetic
  batch_size: 8
  max_train_batches: 6
  max_test_batches: 2
  synthetic: {train_size: 240, test_size: 64, height: 6, width: 6, num_classes: 4, noise: 1.0}
model: {name: mlp}
optimizer: {name: sgd, lr: 0.05, momentum: 0.9, weight_decay: 0.001}
split: {point: 2, staleness: 0}
checkpoint: {enabled: false}
link: {heartbeat_interval_s: 0.5, peer_timeout_s: 20, connect_timeout_s: 30}
security: {mode: plaintext}
)" + extra,
      "fleet_test.yaml",
      {"run.output_dir=" + outputDir(name + "_" + std::to_string(index)), "data.shard.count=" + std::to_string(edges),
       "data.shard.index=" + std::to_string(index), "fleet.mode=" + mode, "fleet.min_edges=" + std::to_string(edges)});
}

using test_util::maxDifference;

struct FleetRun {
  std::vector<std::unique_ptr<EdgeTrainer>> edges;
  std::vector<telemetry::RunSummary> summaries;
};

// Starts the cloud, then `configs.size()` edges at once, and waits for all of them.
FleetRun runFleet(testing::CloudThread& cloud, const std::vector<config::Config>& configs) {
  FleetRun run;
  run.summaries.resize(configs.size());
  for (const auto& c : configs) run.edges.push_back(testing::makeEdge(c, cloud.endpoint));
  std::vector<std::thread> threads;
  std::vector<std::string> errors(configs.size());
  std::atomic<bool> stop{false};
  for (std::size_t i = 0; i < configs.size(); ++i) {
    threads.emplace_back([&, i] {
      try {
        run.summaries[i] = run.edges[i]->run(stop);
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (std::size_t i = 0; i < errors.size(); ++i) EXPECT_EQ(errors[i], "") << "edge " << i;
  cloud.join();
  return run;
}

// K = 0, raw transfer, averaging after every step, N edges on disjoint shards of a model
// without BatchNorm: each step is one cloud step over the N batches (shared: cross-edge
// batching) or N steps of the edges' own cloud copies averaged at once (per_edge), and one
// averaging round, which is exactly standalone training with batch N·b over the same
// samples (the edges' gradients are those of their own batch's mean loss; their
// sample-weighted average is the joint batch's, momentum and weight decay included).
class FleetModes : public ::testing::TestWithParam<std::string> {};

TEST_P(FleetModes, EqualStandaloneWithTheEdgesBatchesConcatenated) {
  constexpr int kEdges = 3;
  const std::string extra = "fleet: {average_every: 1, gather_ms: 20000, max_cloud_batch: 24}\n";
  std::vector<config::Config> configs;
  for (int i = 0; i < kEdges; ++i) configs.push_back(fleetConfig("exact_" + GetParam(), kEdges, i, extra, GetParam()));
  testing::CloudThread cloud(configs.front());
  auto run = runFleet(cloud, configs);
  ASSERT_EQ(cloud.outcome, CloudOutcome::kCompleted);

  // The reference: one process, batch j = the edges' batches j one after another.
  auto reference = buildModel(configs.front());
  const int n = reference.numStages();
  optim::StageOptimizers optimizer(configs.front().optimizer, reference, 0, n);
  std::vector<std::unique_ptr<data::BatchLoader>> loaders;
  for (const auto& c : configs) {
    loaders.push_back(makeLoader(c, loadDataset(c, data::Split::kTrain), data::Split::kTrain));
    loaders.back()->startEpoch(0);
  }
  int steps = 0;
  while (true) {
    std::vector<torch::Tensor> inputs;
    std::vector<torch::Tensor> labels;
    for (auto& l : loaders) {
      if (auto b = l->next()) {
        inputs.push_back(b->inputs);
        labels.push_back(b->labels);
      }
    }
    if (inputs.empty()) break;
    ASSERT_EQ(inputs.size(), loaders.size());
    optimizer.zeroGrad();
    torch::nn::functional::cross_entropy(reference.forward(torch::cat(inputs), 0, n), torch::cat(labels)).backward();
    optimizer.step();
    ++steps;
  }
  EXPECT_EQ(steps, 6);
  const int split = configs.front().split.point;
  for (int i = 0; i < kEdges; ++i) {
    EXPECT_EQ(run.summaries[i].totalSteps(), 6) << "edge " << i;
    EXPECT_LT(maxDifference(run.edges[i]->model().state(0, split), reference.state(0, split)), 1e-5) << "edge " << i;
  }
  ASSERT_NE(cloud.cloud->lastModel(), nullptr);
  EXPECT_LT(maxDifference(cloud.cloud->lastModel()->state(split, n), reference.state(split, n)), 1e-5);
  // One round after each step of the epoch.
  EXPECT_EQ(cloud.cloud->fleetRounds(), 6u);
}

// Edges at different split points (1, 2 and 3 of the mlp's 4 stages) train one model:
// after the last round, every replica of a stage holds the same values.
TEST_P(FleetModes, HeterogeneousSplitPointsTrainOneModel) {
  constexpr int kEdges = 3;
  std::vector<config::Config> configs;
  for (int i = 0; i < kEdges; ++i) {
    configs.push_back(fleetConfig("mixed_" + GetParam(), kEdges, i, "fleet: {average_every: 2}\n", GetParam()));
    configs.back().split.point = i + 1;
    configs.back().split.staleness = 1;
  }
  testing::CloudThread cloud(configs.front());
  auto run = runFleet(cloud, configs);
  ASSERT_EQ(cloud.outcome, CloudOutcome::kCompleted);
  auto* fleet_model = cloud.cloud->lastModel();
  ASSERT_NE(fleet_model, nullptr);
  const auto initial = buildModel(configs.front());
  for (int i = 0; i < kEdges; ++i) {
    const int split = i + 1;
    EXPECT_EQ(run.summaries[i].totalSteps(), 6) << "edge " << i;
    ASSERT_FALSE(run.summaries[i].history.empty()) << "edge " << i;
    EXPECT_TRUE(std::isfinite(run.summaries[i].history.back().train_loss)) << "edge " << i;
    // The edge's stages are the fleet's average after the epoch's last round ...
    EXPECT_LT(maxDifference(run.edges[i]->model().state(0, split), fleet_model->state(0, split)), 1e-6) << "edge " << i;
    // ... and they trained.
    EXPECT_GT(maxDifference(run.edges[i]->model().state(0, split), initial.state(0, split)), 1e-4) << "edge " << i;
  }
  EXPECT_GE(cloud.cloud->fleetRounds(), 3u);
}

// shared: one copy of the cloud's stages, cross-edge batching; per_edge: SplitFed v1, each
// session its own copy, averaged with the others every round.
INSTANTIATE_TEST_SUITE_P(Fleet, FleetModes, ::testing::Values("shared", "per_edge"));

// Membership: an edge with less data finishes and leaves while the others go on; the
// rounds after it left close without waiting for it.
TEST(FleetTraining, AnEdgeThatLeavesEarlyDoesNotStopTheOthers) {
  constexpr int kEdges = 3;
  std::vector<config::Config> configs;
  for (int i = 0; i < kEdges; ++i) configs.push_back(fleetConfig("leave", kEdges, i, "fleet: {average_every: 2}\n"));
  configs[0].data.max_train_batches = 2;
  testing::CloudThread cloud(configs.front());
  auto run = runFleet(cloud, configs);
  ASSERT_EQ(cloud.outcome, CloudOutcome::kCompleted);
  EXPECT_EQ(run.summaries[0].totalSteps(), 2);
  auto* fleet_model = cloud.cloud->lastModel();
  ASSERT_NE(fleet_model, nullptr);
  const int split = configs.front().split.point;
  for (int i = 1; i < kEdges; ++i) {
    EXPECT_EQ(run.summaries[i].totalSteps(), 6) << "edge " << i;
    EXPECT_FALSE(run.summaries[i].interrupted) << "edge " << i;
    EXPECT_LT(maxDifference(run.edges[i]->model().state(0, split), fleet_model->state(0, split)), 1e-6) << "edge " << i;
  }
}

// A member that has begun but then says nothing (hung, or its link dead while the
// connection stays up) cannot stall averaging: each round goes ahead after
// fleet.round_timeout_s without it, and the others finish.
TEST(FleetTraining, ASilentEdgeCannotStallTheRounds) {
  const std::string extra = "fleet: {average_every: 2, round_timeout_s: 0.5}\n";
  auto config = fleetConfig("silent", 2, 0, extra);
  config.fleet.min_edges = 1;
  testing::CloudThread cloud(config);
  // The silent member: a handshake and the start of an epoch, then nothing but heartbeats.
  auto o = zmqOptions(config, "edge");
  o.endpoint = cloud.endpoint;
  auto silent = emulateLink(config, "edge", std::make_unique<transport::ZmqTransport>(o));
  const auto model = buildModel(config);
  silent->send(
      transport::Message(transport::MessageType::kHello, helloFor(config, model, config.split.point, "silent")));
  const auto welcome = test_util::receiveMessage(*silent, std::chrono::seconds(10));
  ASSERT_TRUE(welcome);
  ASSERT_EQ(welcome->header.type, transport::MessageType::kWelcome);
  EXPECT_TRUE(std::get<transport::Welcome>(welcome->body).fleet);
  transport::Message begin(transport::MessageType::kEpochBegin, transport::EpochInfo{0, 6, 0, 0, 20});
  begin.header.session = welcome->header.session;
  silent->send(std::move(begin));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the cloud has handled it

  std::vector<config::Config> configs;
  for (int i = 0; i < 2; ++i) {
    configs.push_back(fleetConfig("silent", 2, i, extra));
    configs.back().fleet.min_edges = 1;
  }
  const auto start = std::chrono::steady_clock::now();
  FleetRun run;
  run.summaries.resize(2);
  std::vector<std::thread> threads;
  std::atomic<bool> stop{false};
  for (int i = 0; i < 2; ++i) run.edges.push_back(testing::makeEdge(configs[i], cloud.endpoint));
  for (int i = 0; i < 2; ++i) threads.emplace_back([&, i] { run.summaries[i] = run.edges[i]->run(stop); });
  for (auto& t : threads) t.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (int i = 0; i < 2; ++i) EXPECT_EQ(run.summaries[i].totalSteps(), 6) << "edge " << i;
  // Three rounds (steps 2, 4 and the epoch's end), each waiting its timeout for the silent one.
  EXPECT_GE(cloud.cloud->fleetRounds(), 3u);
  EXPECT_GE(seconds, 1.5);
  const int split = config.split.point;
  EXPECT_LT(maxDifference(run.edges[0]->model().state(0, split), run.edges[1]->model().state(0, split)), 1e-6);
  silent.reset();
  cloud.finish();
}

}  // namespace
}  // namespace tandem::pipeline

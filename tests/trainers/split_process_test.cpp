// edge_trainer and cloud_trainer as two processes over tcp://127.0.0.1 (ephemeral port).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>
#include <tuple>

#include "tests/trainers/process.h"

namespace tandem {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using testing::ChildProcess;

class SplitProcesses : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("tandem_procs_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    config_ = (dir_ / "run.yaml").string();
    std::ofstream(config_) << R"(
run: {name: procs, epochs: 2, seed: 5}
data:
  dataset: synthetic
  batch_size: 32
  synthetic: {train_size: 1024, test_size: 256, height: 12, width: 12, num_classes: 10, noise: 1.0}
model: {name: cnn}
optimizer: {name: sgd, lr: 0.02, momentum: 0.9}
split: {point: 2, staleness: 2}
security: {mode: plaintext}
link: {endpoint: "tcp://127.0.0.1:*", heartbeat_interval_s: 0.2, peer_timeout_s: 2, reconnect_grace_s: 0.5, accept_timeout_s: 60}
)";
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A run that would go on for a long time, for tests that kill one side.
  void writeEndlessConfig() {
  std::ofstream(config_) << R"(
run: {name: procs, epochs: 1000}
data: {dataset: synthetic, batch_size: 32, synthetic: {train_size: 4096, height: 12, width: 12}}
model: {name: cnn}
split: {point: 2, staleness: 2}
security: {mode: plaintext}
link: {endpoint: "tcp://127.0.0.1:*", heartbeat_interval_s: 0.2, peer_timeout_s: 2, reconnect_grace_s: 0.5}
)";
  }

  std::unique_ptr<ChildProcess> startCloud(std::vector<std::string> extra = {}) {
    std::vector<std::string> argv{CLOUD_TRAINER, "--config", config_, "--endpoint-file", (dir_ / "endpoint").string(),
                                  "--set", "run.output_dir=" + (dir_ / "out").string()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto cloud = std::make_unique<ChildProcess>(argv, (dir_ / "cloud.log").string());
    endpoint_ = testing::waitForFile((dir_ / "endpoint").string(), 60s);
    return cloud;
  }
  std::unique_ptr<ChildProcess> startEdge(std::vector<std::string> extra = {}) {
    std::vector<std::string> argv{EDGE_TRAINER, "--config", config_, "--set", "link.endpoint=" + endpoint_,
                                  "--set", "run.output_dir=" + (dir_ / "out").string()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return std::make_unique<ChildProcess>(argv, (dir_ / "edge.log").string());
  }
  nlohmann::json summary(const std::string& role) {
    std::ifstream in(dir_ / "out" / ("summary-" + role + ".json"));
    return in ? nlohmann::json::parse(in) : nlohmann::json();
  }

  fs::path dir_;
  std::string config_;
  std::string endpoint_;
};

TEST_F(SplitProcesses, TrainAndBothExitZero) {
  auto cloud = startCloud();
  ASSERT_THAT(endpoint_, HasSubstr("tcp://127.0.0.1:")) << cloud->output();
  auto edge = startEdge();
  EXPECT_EQ(edge->wait(180s), 0) << edge->output();
  EXPECT_EQ(cloud->wait(30s), 0) << cloud->output();
  const auto e = summary("edge");
  const auto c = summary("cloud");
  ASSERT_FALSE(e.is_null());
  ASSERT_FALSE(c.is_null());
  EXPECT_EQ(e["epochs"], 2);
  EXPECT_EQ(c["epochs"], 2);
  EXPECT_GT(e["final_test_accuracy"].get<double>(), 0.5);  // chance is 0.1
  EXPECT_EQ(e["split_points"], nlohmann::json::array({2, 2}));
  EXPECT_EQ(e["staleness"], nlohmann::json::array({2, 2}));
  EXPECT_GT(e["bytes_uplink"].get<double>(), 0);
  EXPECT_EQ(e["bytes_uplink"], c["bytes_uplink"]);
  EXPECT_THAT(edge->output(), HasSubstr("epoch 2/2"));
}

TEST_F(SplitProcesses, EdgeNoticesADeadCloud) {
  writeEndlessConfig();
  auto cloud = startCloud();
  auto edge = startEdge();
  std::this_thread::sleep_for(3s);
  cloud->signal(SIGKILL);
  const auto killed = std::chrono::steady_clock::now();
  EXPECT_EQ(edge->wait(30s), 1) << edge->output();
  EXPECT_LT(std::chrono::steady_clock::now() - killed, 10s);
  EXPECT_THAT(edge->output(), HasSubstr("no message from the cloud"));
}

TEST_F(SplitProcesses, CloudNoticesADeadEdge) {
  writeEndlessConfig();
  auto cloud = startCloud();
  auto edge = startEdge();
  std::this_thread::sleep_for(3s);
  edge->signal(SIGKILL);
  EXPECT_EQ(cloud->wait(30s), 1) << cloud->output();
  EXPECT_THAT(cloud->output(), HasSubstr("went silent"));
  EXPECT_TRUE(summary("cloud")["interrupted"].get<bool>());
}

// Polls `child`'s output until it contains `text`.
bool waitForOutput(const ChildProcess& child, const std::string& text, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (child.output().find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

// Ctrl-C on the edge mid-epoch: the steps in flight land, both sides record the partial
// epoch (counts, null for what was not measured), and both exit 130: an interrupted run,
// ended in order.
TEST_F(SplitProcesses, InterruptedEdgeEndsBothSidesInOrder) {
  writeEndlessConfig();
  auto cloud = startCloud();
  auto edge = startEdge({"--set", "data.synthetic.train_size=65536"});
  ASSERT_TRUE(waitForOutput(*edge, "training:", 60s)) << edge->output();
  std::this_thread::sleep_for(1500ms);
  edge->signal(SIGINT);
  EXPECT_EQ(edge->wait(30s), 130) << edge->output();
  EXPECT_EQ(cloud->wait(30s), 130) << cloud->output();
  EXPECT_THAT(cloud->output(), HasSubstr("stopped its run early (interrupted)"));
  EXPECT_THAT(cloud->output(), Not(HasSubstr("went silent")));
  const auto e = summary("edge");
  const auto c = summary("cloud");
  ASSERT_FALSE(e.is_null());
  ASSERT_FALSE(c.is_null());
  for (const auto* s : {&e, &c}) {
    EXPECT_TRUE((*s)["interrupted"].get<bool>());
    EXPECT_EQ((*s)["epochs"], 0);  // none completed
    EXPECT_TRUE((*s)["final_test_accuracy"].is_null());
    ASSERT_EQ((*s)["history"].size(), 1u) << *s;
    EXPECT_TRUE((*s)["history"][0]["partial"].get<bool>());
    EXPECT_EQ((*s)["history"][0]["epoch"], e["history"][0]["epoch"]);
    EXPECT_TRUE((*s)["history"][0]["test_accuracy"].is_null());
    EXPECT_FALSE((*s)["final_train_loss"].is_null());
  }
  EXPECT_GT(e["steps"].get<int>(), 0);
  EXPECT_EQ(e["steps"], c["steps"]);
  EXPECT_EQ(e["train_samples"], c["train_samples"]);
}

// A second Ctrl-C: the edge waits for nothing more, but tells the cloud, which ends the
// session at once instead of after link.peer_timeout_s + link.reconnect_grace_s.
TEST_F(SplitProcesses, SecondInterruptEndsTheCloudsSessionPromptly) {
  writeEndlessConfig();
  // A slow uplink: landing the batches in flight after the first interrupt takes seconds,
  // so the second one arrives while the edge still waits.
  const std::vector<std::string> patient{"--set", "link.peer_timeout_s=15",    "--set", "link.reconnect_grace_s=30",
                                         "--set", "link.emulate.uplink_mbps=8"};
  auto cloud = startCloud(patient);
  auto edge_args = patient;
  edge_args.insert(edge_args.end(), {"--set", "data.synthetic.train_size=65536"});
  auto edge = startEdge(edge_args);
  ASSERT_TRUE(waitForOutput(*edge, "training:", 60s)) << edge->output();
  std::this_thread::sleep_for(1s);
  edge->signal(SIGINT);
  std::this_thread::sleep_for(50ms);
  edge->signal(SIGINT);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(edge->wait(10s), 130) << edge->output();
  EXPECT_EQ(cloud->wait(10s), 130) << cloud->output();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  EXPECT_THAT(cloud->output(), HasSubstr("aborted"));
  EXPECT_TRUE(summary("edge")["interrupted"].get<bool>());
}

TEST_F(SplitProcesses, CloudWithoutEdgeGivesUpAfterAcceptTimeout) {
  auto cloud = startCloud({"--set", "link.accept_timeout_s=1"});
  EXPECT_EQ(cloud->wait(30s), 1);
  EXPECT_THAT(cloud->output(), HasSubstr("no edge connected"));
}

TEST_F(SplitProcesses, EdgeWithoutCloudGivesUp) {
  endpoint_ = "tcp://127.0.0.1:9";  // discard port: nothing listens
  auto edge = startEdge({"--set", "link.connect_timeout_s=1.5"});
  EXPECT_EQ(edge->wait(30s), 1);
  EXPECT_THAT(edge->output(), HasSubstr("without an answer (is cloud_trainer running and reachable?)"));
}

// The divergence guard end to end: with no rollback allowed, a NaN gradient on the cloud
// ends both processes with exit 1, and the summaries say why.
TEST_F(SplitProcesses, AGuardStopExitsOneOnBothSides) {
  const std::vector<std::string> guard{"--set", "guard.max_rollbacks=0",    "--set", "guard.inject_nan_step=7",
                                       "--set", "guard.inject_nan_on=cloud"};
  auto cloud = startCloud(guard);
  auto edge = startEdge(guard);
  EXPECT_EQ(edge->wait(120s), 1) << edge->output();
  EXPECT_EQ(cloud->wait(30s), 1) << cloud->output();
  EXPECT_THAT(edge->output(), HasSubstr("training diverged at step 7"));
  EXPECT_THAT(cloud->output(), HasSubstr("diverged"));
  EXPECT_EQ(summary("edge")["diverged"], true);
  EXPECT_EQ(summary("cloud")["diverged"], true);
}

// The measured failure of issue 12: cnn split 3, int8, K = 4 over the step-drop trace with
// 20 ms RTT used to end epoch 2 with a NaN loss, 10 % accuracy and exit 0 on both sides.
// Now the run either ends with a finite loss, or stops with exit 1 and says it diverged;
// never exit 0 on NaN. Two runs of it against K = 0 (synchronous, on plain loopback: the
// link does not change what K = 0 learns):
//   - with the defaults, at most 2 points below K = 0 (the issue's bound). The default
//     staleness warm-up (500 steps) keeps these 120 steps at K = 0 on purpose: a stale
//     gradient this early cost up to 20 points under every compensation (docs/stability.md);
//     Measured: 77.42 %, identical to K = 0;
//   - with the warm-up off (K = 4 from the first step, the setting that produced the NaN),
//     the divergence guard's guarantees, and well above chance if it ends with exit 0
//     (measured 75.0 % after one rollback; 71-76 % with the former 100-step warm-up:
//     stale gradients this early learn slower, the guard is about NaN, not that).
TEST_F(SplitProcesses, TheStepDropReproducerEndsFiniteOrExitsOne) {
  const std::string dataset = "/usr/share/datasets/fashion-mnist";
  ASSERT_TRUE(fs::exists(dataset + "/train-images-idx3-ubyte.gz"))
      << "needs dataset-fashion-mnist (scripts/setup.sh installs it)";
  config_ = std::string(TANDEM_SOURCE_DIR) + "/configs/fashion_mnist_cnn.yaml";
  const std::vector<std::string> common{"--set", "split.point=3",
                                        "--set", "compression.uplink=int8",
                                        "--set", "run.epochs=2",
                                        "--set", "data.max_train_batches=60",
                                        "--set", "data.max_test_batches=40",
                                        "--set", "run.threads=1",
                                        "--set", "metrics.port=0"};
  const auto run = [&](const std::string& name, std::vector<std::string> extra) {
    extra.insert(extra.end(), common.begin(), common.end());
    extra.insert(extra.end(), {"--set", "run.output_dir=" + (dir_ / name).string()});
    fs::remove(dir_ / "endpoint");  // the previous run's
    auto cloud_args = extra;
    cloud_args.insert(cloud_args.end(), {"--set", "link.endpoint=tcp://127.0.0.1:*"});
    auto cloud = startCloud(cloud_args);
    auto edge = startEdge(extra);
    const int edge_rc = edge->wait(300s);
    const int cloud_rc = cloud->wait(60s);
    std::ifstream in(dir_ / name / "summary-edge.json");
    const auto summary = in ? nlohmann::json::parse(in) : nlohmann::json();
    return std::make_tuple(edge_rc, cloud_rc, summary, edge->output());
  };
  const auto [base_rc, base_cloud_rc, base, base_log] = run("k0", {"--set", "split.staleness=0"});
  ASSERT_EQ(base_rc, 0) << base_log;
  ASSERT_EQ(base_cloud_rc, 0);
  const double k0 = base["final_test_accuracy"].get<double>();
  const std::vector<std::string> reproducer{
      "--set", "split.staleness=4",
      "--set", "link.emulate.trace=" + std::string(TANDEM_SOURCE_DIR) + "/benchmarks/traces/step_drop.csv",
      "--set", "link.emulate.rtt_ms=20"};
  for (const bool warmup : {true, false}) {
    SCOPED_TRACE(warmup ? "default warm-up" : "no warm-up");
    auto extra = reproducer;
    if (!warmup) extra.insert(extra.end(), {"--set", "split.staleness_warmup_steps=0"});
    const auto [rc, cloud_rc, got, log] = run(warmup ? "k4" : "k4-no-warmup", extra);
    ASSERT_FALSE(got.is_null()) << log;
    if (rc == 0) {
      EXPECT_EQ(cloud_rc, 0);
      EXPECT_EQ(got["diverged"], false);
      ASSERT_TRUE(got["final_train_loss"].is_number()) << log;  // null is NaN
      EXPECT_TRUE(std::isfinite(got["final_train_loss"].get<double>())) << log;
      EXPECT_GE(got["final_test_accuracy"].get<double>(), warmup ? k0 - 0.02 : 0.3) << log;
    } else {
      EXPECT_FALSE(warmup) << "the defaults must not need the guard here\n" << log;
      EXPECT_EQ(rc, 1) << log;
      EXPECT_EQ(cloud_rc, 1);
      EXPECT_EQ(got["diverged"], true);
      EXPECT_THAT(log, HasSubstr("training diverged"));
    }
    std::cout << "reproducer (" << (warmup ? "default warm-up" : "no warm-up") << "): exit " << rc << ", "
              << got["interventions"].size() << " intervention(s), test accuracy " << got["final_test_accuracy"]
              << " (K = 0: " << k0 << ")\n";
  }
}

// A shared fleet of three edge processes; one is killed (SIGKILL) mid-run. The cloud
// notices it went silent and drops it from the averaging rounds; the other two finish
// every epoch, and the cloud applied exactly the steps each of them sent (per-session
// counters).
TEST_F(SplitProcesses, AFleetEdgeKilledMidRunLetsTheOthersFinish) {
  std::ofstream(config_) << R"(
run: {name: fleet, epochs: 2, seed: 5}
data:
  dataset: synthetic
  batch_size: 32
  synthetic: {train_size: 3072, test_size: 128, height: 8, width: 8, num_classes: 4, noise: 1.0}
model: {name: mlp}
split: {point: 2, staleness: 1}
checkpoint: {enabled: false}
security: {mode: plaintext}
fleet: {mode: shared, min_edges: 3, average_every: 4, round_timeout_s: 3}
link: {endpoint: "tcp://127.0.0.1:*", heartbeat_interval_s: 0.2, peer_timeout_s: 2, reconnect_grace_s: 0.5, accept_timeout_s: 60}
)";
  auto cloud = startCloud();
  std::vector<std::unique_ptr<ChildProcess>> edges;
  for (int i = 0; i < 3; ++i) {
    const std::string name = "edge" + std::to_string(i);
    edges.push_back(std::make_unique<ChildProcess>(
        std::vector<std::string>{EDGE_TRAINER, "--config", config_, "--set", "link.endpoint=" + endpoint_, "--set",
                                 "run.output_dir=" + (dir_ / name).string(), "--set", "run.name=" + name, "--set",
                                 "data.shard.count=3", "--set", "data.shard.index=" + std::to_string(i), "--set",
                                 "run.threads=1"},
        (dir_ / (name + ".log")).string()));
  }
  ASSERT_TRUE(waitForOutput(*edges[2], "epoch 1/2", 60s)) << edges[2]->output();
  std::this_thread::sleep_for(500ms);
  edges[2]->signal(SIGKILL);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(edges[i]->wait(120s), 0) << edges[i]->output();
    std::ifstream in(dir_ / ("edge" + std::to_string(i)) / "summary-edge.json");
    ASSERT_TRUE(in) << "edge " << i;
    const auto edge = nlohmann::json::parse(in);
    EXPECT_EQ(edge["epochs"], 2) << "edge " << i;
    EXPECT_FALSE(edge["interrupted"].get<bool>()) << "edge " << i;
    std::ifstream cloud_in(dir_ / "out" / "edges" / ("edge" + std::to_string(i)) / "summary-cloud.json");
    ASSERT_TRUE(cloud_in) << "edge " << i;
    const auto seen = nlohmann::json::parse(cloud_in);
    EXPECT_EQ(seen["steps"], edge["steps"]) << "edge " << i;
  }
  EXPECT_NE(cloud->wait(60s), -1) << cloud->output();
  EXPECT_THAT(cloud->output(), HasSubstr("went silent"));
}

}  // namespace
}  // namespace tandem

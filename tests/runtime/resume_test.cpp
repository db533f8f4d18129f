// Checkpoints and resume: the store's format checks, and SIGKILL of either trainer mid-
// epoch followed by --resume, which must end with the same parameters as a run that was
// never interrupted (K = 0, raw transfer, fixed seed).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <limits>

#include "runtime/checkpoint/checkpoint.h"
#include "runtime/common/error.h"
#include "tests/trainers/process.h"

namespace tandem::checkpoint {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using tandem::testing::ChildProcess;

fs::path tempDir(const std::string& name) {
  auto dir = fs::temp_directory_path() / ("tandem_resume_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

Checkpoint sample(std::uint64_t step) {
  Checkpoint c;
  c.role = "edge";
  c.run_name = "r";
  c.step = step;
  c.epoch = 1;
  c.batch = 7;
  c.split = 2;
  c.codec = "int8";
  c.loss_sum = 1.5;
  c.optimizer_layout = {1, 0};
  c.tensors = {torch::randn({3, 4}), torch::arange(5, torch::kInt64), torch::tensor(7, torch::kInt64)};
  return c;
}

TEST(CheckpointStore, RoundTripsAndKeepsTheNewest) {
  const auto dir = tempDir("store");
  CheckpointStore store((dir / "ckpt").string(), 2);
  const auto a = sample(5);
  store.save(a);
  store.save(sample(10));
  store.save(sample(15));
  EXPECT_EQ(store.validSteps(), (std::vector<std::uint64_t>{10, 15}));
  const auto b = store.load(15);
  EXPECT_EQ(b.epoch, 1);
  EXPECT_EQ(b.batch, 7);
  EXPECT_EQ(b.codec, "int8");
  EXPECT_EQ(b.optimizer_layout, (std::vector<std::uint32_t>{1, 0}));
  ASSERT_EQ(b.tensors.size(), 3u);
  EXPECT_EQ(b.tensors[1].scalar_type(), torch::kInt64);
  EXPECT_EQ(b.tensors[2].dim(), 0);
  EXPECT_TRUE(b.tensors[1].equal(torch::arange(5, torch::kInt64)));
  fs::remove_all(dir);
}

TEST(CheckpointStore, CorruptOrPartialFilesAreDetectedAndSkipped) {
  const auto dir = tempDir("corrupt");
  CheckpointStore store((dir / "ckpt").string(), 5);
  store.save(sample(1));
  store.save(sample(2));
  store.save(sample(3));
  store.save(sample(4));
  // Truncate 4, flip a data byte in 3, break the magic of 2.
  fs::resize_file(store.pathFor(4), fs::file_size(store.pathFor(4)) - 10);
  {
    std::fstream f(store.pathFor(3), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-3, std::ios::end);
    f.put('\x55');
  }
  {
    std::fstream f(store.pathFor(2), std::ios::in | std::ios::out | std::ios::binary);
    f.put('X');
  }
  // A crash during a save leaves only a temporary file: never a checkpoint.
  std::ofstream(store.pathFor(5) + ".tmp") << "half";
  EXPECT_EQ(store.validSteps(), (std::vector<std::uint64_t>{1}));
  const auto error = [&](std::uint64_t step) {
    try {
      store.load(step);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_THAT(error(4), HasSubstr("is truncated"));
  EXPECT_THAT(error(3), HasSubstr("corrupt tensor data (CRC mismatch)"));
  EXPECT_THAT(error(2), HasSubstr("is not a Tandem checkpoint"));
  fs::remove_all(dir);
}

// Runs of the real trainers, as processes.
class TrainerRuns : public ::testing::Test {
 protected:
  virtual std::string tag() const { return ::testing::UnitTest::GetInstance()->current_test_info()->name(); }
  void SetUp() override {
    dir_ = tempDir(tag());
    config_ = (dir_ / "run.yaml").string();
    std::ofstream(config_) << R"(
run: {name: resume, epochs: 2, seed: 4}
data: {dataset: synthetic, batch_size: 32, max_test_batches: 2,
       synthetic: {train_size: 640, test_size: 64, height: 12, width: 12}}
model: {name: cnn}
optimizer: {name: sgd, lr: 0.02, momentum: 0.9}
split: {point: 2, staleness: 0}
checkpoint: {every_steps: 5}
security: {mode: plaintext}
link: {endpoint: "tcp://127.0.0.1:*", heartbeat_interval_s: 0.2, peer_timeout_s: 2, reconnect_grace_s: 0.5,
       emulate: {uplink_mbps: 20, downlink_mbps: 100}}
)";
  }
  void TearDown() override {
    if (HasFailure()) {
      std::fprintf(stderr, "logs kept in %s\n", dir_.c_str());
    } else {
      fs::remove_all(dir_);
    }
  }

  std::unique_ptr<ChildProcess> cloud(const std::string& out, const std::string& tag, bool keep_serving) {
    fs::remove(dir_ / "endpoint");
    std::vector<std::string> argv{CLOUD_TRAINER, "--config", config_, "--endpoint-file", (dir_ / "endpoint").string(),
                                  "--set", "run.output_dir=" + out};
    if (keep_serving) argv.push_back("--keep-serving");
    argv.insert(argv.end(), extra_.begin(), extra_.end());
    auto p = std::make_unique<ChildProcess>(argv, (dir_ / (tag + ".cloud.log")).string());
    endpoint_ = tandem::testing::waitForFile((dir_ / "endpoint").string(), 60s);
    return p;
  }
  std::unique_ptr<ChildProcess> edge(const std::string& out, const std::string& tag, bool resume) {
    std::vector<std::string> argv{EDGE_TRAINER, "--config", config_, "--set", "link.endpoint=" + endpoint_,
                                  "--set", "run.output_dir=" + out};
    if (resume) argv.push_back("--resume");
    argv.insert(argv.end(), extra_.begin(), extra_.end());
    return std::make_unique<ChildProcess>(argv, (dir_ / (tag + ".edge.log")).string());
  }
  static bool waitForCheckpoint(const fs::path& directory, std::uint64_t step, std::chrono::seconds timeout) {
    CheckpointStore probe(directory.string(), 1);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (fs::exists(probe.pathFor(step))) return true;
      std::this_thread::sleep_for(5ms);
    }
    return false;
  }
  // The undisturbed run every interrupted one is compared with; both trainers exit 0.
  void runReference(const std::string& out) {
    auto c = cloud(out, "reference", false);
    auto e = edge(out, "reference", false);
    ASSERT_EQ(e->wait(120s), 0) << e->output();
    ASSERT_EQ(c->wait(30s), 0) << c->output();
  }

  // The largest absolute difference between the final parameters and optimizer state of
  // two runs (infinite, with a failure, when they cannot be compared).
  static double largestDifference(const std::string& a_out, const std::string& b_out) {
    const auto a = finalState(a_out);
    const auto b = finalState(b_out);
    EXPECT_EQ(a.size(), b.size());
    EXPECT_FALSE(a.empty());
    if (a.size() != b.size() || a.empty()) return std::numeric_limits<double>::infinity();
    double worst = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      worst = std::max(worst, (a[i].to(torch::kDouble) - b[i].to(torch::kDouble)).abs().max().item<double>());
    }
    return worst;
  }

  // The final checkpoints of both sides: the whole model and optimizer state.
  static std::vector<torch::Tensor> finalState(const std::string& out) {
    std::vector<torch::Tensor> all;
    for (const auto& sub : {"edge", "cloud/resume"}) {
      CheckpointStore store(out + "/checkpoints/" + sub, 3);
      const auto steps = store.validSteps();
      EXPECT_FALSE(steps.empty()) << out << " " << sub;
      if (steps.empty()) continue;
      EXPECT_EQ(steps.back(), 40u);
      const auto c = store.load(steps.back());
      all.insert(all.end(), c.tensors.begin(), c.tensors.end());
    }
    return all;
  }

  fs::path dir_;
  std::string config_;
  std::string endpoint_;
  std::vector<std::string> extra_;  // more --set arguments for both trainers
};

class KillAndResume : public TrainerRuns, public ::testing::WithParamInterface<std::string> {
 protected:
  std::string tag() const override { return GetParam(); }
};

TEST_P(KillAndResume, EndsWithTheSameParameters) {
  const auto reference_out = (dir_ / "reference").string();
  ASSERT_NO_FATAL_FAILURE(runReference(reference_out));

  const auto out = (dir_ / "interrupted").string();
  const bool kill_edge = GetParam() == "edge";
  {
    auto c = cloud(out, "first", kill_edge);
    auto e = edge(out, "first", false);
    // Kill mid-epoch, after the checkpoint at step 10 (epoch 1 has 20 steps).
    const auto watched = fs::path(out) / "checkpoints" / (kill_edge ? "edge" : "cloud/resume");
    ASSERT_TRUE(waitForCheckpoint(watched, 10, 60s)) << e->output();
    if (kill_edge) {
      e->signal(SIGKILL);
      e->wait(10s);
      // The cloud stays up (--keep-serving); the edge comes back and resumes.
      auto again = edge(out, "second", true);
      EXPECT_EQ(again->wait(120s), 0) << again->output();
      EXPECT_THAT(again->output(), HasSubstr("resumed from checkpoint at step"));
      c->signal(SIGTERM);
      c->wait(30s);
    } else {
      c->signal(SIGKILL);
      c->wait(10s);
      EXPECT_EQ(e->wait(60s), 1) << e->output();  // the edge notices the cloud is gone
      auto c2 = cloud(out, "second", false);
      auto again = edge(out, "second", true);
      EXPECT_EQ(again->wait(120s), 0) << again->output();
      EXPECT_THAT(again->output(), HasSubstr("resumed from checkpoint at step"));
      EXPECT_EQ(c2->wait(30s), 0) << c2->output();
    }
  }
  EXPECT_LE(largestDifference(reference_out, out), 1e-6);
  // The resumed edge's summary covers both epochs.
  std::ifstream summary(out + "/summary-edge.json");
  std::stringstream text;
  text << summary.rdbuf();
  EXPECT_THAT(text.str(), HasSubstr("\"epochs\": 2"));
  // So does the cloud's: the epochs recorded before the resume are kept.
  std::ifstream cloud_summary(out + "/summary-cloud.json");
  std::stringstream cloud_text;
  cloud_text << cloud_summary.rdbuf();
  EXPECT_THAT(cloud_text.str(), HasSubstr("\"epochs\": 2"));
}

INSTANTIATE_TEST_SUITE_P(Side, KillAndResume, ::testing::Values("edge", "cloud"));

// The cloud killed in the second epoch and resumed: its summary keeps the first epoch,
// recorded before the kill, next to the second.
TEST_F(TrainerRuns, ResumedCloudKeepsTheEpochsBeforeTheResume) {
  const auto out = (dir_ / "second-epoch").string();
  {
    auto c = cloud(out, "first", false);
    auto e = edge(out, "first", false);
    ASSERT_TRUE(waitForCheckpoint(fs::path(out) / "checkpoints" / "cloud/resume", 30, 60s)) << e->output();
    c->signal(SIGKILL);
    c->wait(10s);
    EXPECT_EQ(e->wait(60s), 1) << e->output();
  }
  auto c = cloud(out, "second", false);
  auto e = edge(out, "second", true);
  EXPECT_EQ(e->wait(120s), 0) << e->output();
  EXPECT_EQ(c->wait(30s), 0) << c->output();
  EXPECT_THAT(e->output(), HasSubstr("resumed from checkpoint at step"));
  std::ifstream in(out + "/summary-cloud.json");
  const auto summary = nlohmann::json::parse(in);
  EXPECT_EQ(summary["epochs"], 2);
  ASSERT_EQ(summary["history"].size(), 2u);
  EXPECT_EQ(summary["history"][0]["steps"], 20);
  EXPECT_EQ(summary["history"][1]["steps"], 20);
  EXPECT_EQ(summary["steps"], 40);
}

// A link outage shorter than the grace period: messages in both directions are dropped
// (heartbeats too), the sides resynchronise, in-flight batches are re-sent and every
// update is applied exactly once: the result equals an undisturbed run.
TEST_F(TrainerRuns, ShortOutageIsBridged) {
  const auto reference_out = (dir_ / "reference").string();
  ASSERT_NO_FATAL_FAILURE(runReference(reference_out));
  const auto out = (dir_ / "outage").string();
  // Outages on both sides, timed from each process's start (so not quite aligned): one
  // shorter than peer_timeout_s (only lost messages reveal it) and one longer.
  const std::vector<std::string> outage{"--set", "link.emulate.outages=[[1.5, 0.6], [2.6, 2.5]]", "--set",
                                        "link.reconnect_grace_s=10"};
  extra_ = outage;
  auto c = cloud(out, "outage", false);
  auto e = edge(out, "outage", false);
  ASSERT_EQ(e->wait(120s), 0) << e->output();
  ASSERT_EQ(c->wait(30s), 0) << c->output();
  EXPECT_THAT(e->output(), HasSubstr("resynchronised with the cloud"));
  EXPECT_LE(largestDifference(reference_out, out), 1e-6);
}

// An outage longer than the grace period ends the run with a clear message, and the
// checkpoints written before it can be resumed from.
TEST_F(TrainerRuns, LongOutageEndsTheRunWithACheckpoint) {
  const auto out = (dir_ / "long").string();
  extra_ = {"--set", "link.emulate.outages=[[2, 60]]", "--set", "link.reconnect_grace_s=1.5"};
  auto c = cloud(out, "long", false);
  auto e = edge(out, "long", false);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(e->wait(60s), 1) << e->output();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 20s);
  EXPECT_THAT(e->output(), HasSubstr("no message from the cloud"));
  EXPECT_THAT(e->output(), HasSubstr("link.reconnect_grace_s"));
  CheckpointStore store(out + "/checkpoints/edge", 3);
  EXPECT_FALSE(store.validSteps().empty());
  c->signal(SIGKILL);
}

}  // namespace
}  // namespace tandem::checkpoint

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "runtime/config/config.h"
#include "runtime/pipeline/standalone.h"

namespace tandem::pipeline {
namespace {

namespace fs = std::filesystem;

TEST(Standalone, ShortSyntheticRunReducesLossAndWritesSummary) {
  const fs::path out = fs::temp_directory_path() / ("tandem_standalone_" + std::to_string(::getpid()));
  auto config = config::parseConfig(R"(
run: {name: standalone_test, epochs: 3, seed: 1}
data:
  dataset: synthetic
  batch_size: 32
  synthetic: {train_size: 512, test_size: 256, height: 12, width: 12, num_classes: 5, noise: 1.0}
model: {name: cnn}
optimizer: {name: sgd, lr: 0.02, momentum: 0.9, schedule: cosine}
)",
                                    "inline.yaml", {"run.output_dir=" + out.string()});
  std::atomic<bool> stop{false};
  const auto summary = runStandalone(config, stop);
  ASSERT_EQ(summary.history.size(), 3u);
  EXPECT_FALSE(summary.interrupted);
  EXPECT_LT(summary.history.back().train_loss, summary.history.front().train_loss * 0.7);
  EXPECT_GT(summary.history.back().test_accuracy, 0.6);  // chance is 0.2
  EXPECT_EQ(summary.history.front().train_samples, 512);
  EXPECT_EQ(summary.history.front().steps, 16);

  std::ifstream in(out / "summary-edge.json");
  ASSERT_TRUE(in) << "summary-edge.json not written";
  const auto json = nlohmann::json::parse(in);
  for (const char* key : {"role", "epochs", "final_test_accuracy", "final_train_loss", "wall_seconds",
                          "train_samples_per_second", "bytes_uplink", "bytes_downlink", "split_points",
                          "staleness"}) {
    EXPECT_TRUE(json.contains(key)) << key;
  }
  EXPECT_EQ(json["role"], "edge");
  EXPECT_EQ(json["epochs"], 3);
  EXPECT_EQ(json["split_points"], nlohmann::json::array({5, 5, 5}));
  EXPECT_EQ(json["staleness"], nlohmann::json::array({0, 0, 0}));
  EXPECT_GT(json["train_samples_per_second"].get<double>(), 0.0);
  EXPECT_EQ(json["bytes_uplink"], 0);
  fs::remove_all(out);
}

TEST(Standalone, StopFlagEndsTheRunAndMarksItInterrupted) {
  const fs::path out = fs::temp_directory_path() / ("tandem_standalone_stop_" + std::to_string(::getpid()));
  auto config = config::parseConfig("run: {epochs: 50}\ndata: {dataset: synthetic}\nmodel: {name: mlp}\n",
                                    "inline.yaml", {"run.output_dir=" + out.string()});
  std::atomic<bool> stop{true};
  const auto summary = runStandalone(config, stop);
  EXPECT_TRUE(summary.interrupted);
  EXPECT_TRUE(summary.history.empty());
  EXPECT_TRUE(fs::exists(out / "summary-edge.json"));
  fs::remove_all(out);
}

}  // namespace
}  // namespace tandem::pipeline

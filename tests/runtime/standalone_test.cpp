#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "runtime/config/config.h"
#include "runtime/pipeline/standalone.h"
#include "runtime/telemetry/metrics.h"

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
  // Epochs are 1-based in the file, as in the log lines.
  ASSERT_EQ(json["history"].size(), 3u);
  EXPECT_EQ(json["history"][0]["epoch"], 1);
  EXPECT_EQ(json["history"][2]["epoch"], 3);
  fs::remove_all(out);
}

std::optional<double> sample(const std::string& text, const std::string& series) {
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(series + " ", 0) == 0) return std::strtod(line.c_str() + series.size() + 1, nullptr);
  }
  return std::nullopt;
}

TEST(Standalone, UpdatesTheEdgeMetricsAsASplitRunWould) {
  const fs::path out = fs::temp_directory_path() / ("tandem_standalone_metrics_" + std::to_string(::getpid()));
  auto config = config::parseConfig(R"(
run: {name: solo, epochs: 2, seed: 2}
data:
  dataset: synthetic
  batch_size: 16
  synthetic: {train_size: 64, test_size: 32, height: 8, width: 8, num_classes: 4}
model: {name: mlp}
)",
                                    "inline.yaml", {"run.output_dir=" + out.string()});
  telemetry::Metrics metrics("edge", config.metrics);
  std::atomic<bool> stop{false};
  const auto summary = runStandalone(config, stop, &metrics);
  ASSERT_EQ(summary.history.size(), 2u);
  const auto text = metrics.text();
  const std::string labels = R"({edge="solo",role="edge"})";
  EXPECT_EQ(sample(text, "tandem_steps_total" + labels), 8.0) << text;
  EXPECT_EQ(sample(text, "tandem_samples_total" + labels), 128.0);
  EXPECT_EQ(sample(text, "tandem_epoch" + labels), 2.0);
  EXPECT_DOUBLE_EQ(*sample(text, "tandem_test_accuracy_ratio" + labels), summary.history.back().test_accuracy);
  EXPECT_DOUBLE_EQ(*sample(text, "tandem_test_loss" + labels), summary.history.back().test_loss);
  EXPECT_DOUBLE_EQ(*sample(text, "tandem_train_loss" + labels), summary.history.back().train_loss);
  EXPECT_DOUBLE_EQ(*sample(text, "tandem_train_accuracy_ratio" + labels), summary.history.back().train_accuracy);
  EXPECT_GT(*sample(text, "tandem_process_resident_memory_bytes" + labels), 0.0);
  EXPECT_EQ(sample(text, R"(tandem_link_bytes_total{direction="uplink",edge="solo",role="edge"})"), 0.0);
  for (const char* phase : {"edge_forward", "edge_backward"}) {
    const std::string series =
        std::string(R"(tandem_phase_seconds_count{edge="solo",phase=")") + phase + R"(",role="edge"})";
    EXPECT_EQ(sample(text, series), 8.0) << phase;
  }
  EXPECT_EQ(sample(text, R"(tandem_phase_seconds_count{edge="solo",phase="encode",role="edge"})"), 0.0);
  // No link: the bandwidth is unknown, not 0.
  EXPECT_TRUE(std::isnan(
      *sample(text, R"(tandem_link_bandwidth_bytes_per_second{direction="uplink",edge="solo",role="edge"})")));
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

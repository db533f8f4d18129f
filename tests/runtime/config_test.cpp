#include "runtime/config/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "runtime/common/error.h"

namespace tandem::config {
namespace {

using ::testing::HasSubstr;

// Parses `yaml` and returns the ConfigError message ("" when it parses).
std::string errorOf(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  try {
    parseConfig(yaml, "test.yaml", overrides);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(Config, DefaultsWhenEmpty) {
  const Config c = parseConfig("", "empty.yaml");
  EXPECT_EQ(c.run.name, "tandem");
  EXPECT_EQ(c.run.output_dir, "runs/tandem");
  EXPECT_EQ(c.data.dataset, "fashion_mnist");
  EXPECT_EQ(c.data.path, "/usr/share/datasets/fashion-mnist");
  EXPECT_EQ(c.data.test_batch_size, c.data.batch_size);
  EXPECT_EQ(c.model.name, "cnn");
  EXPECT_FALSE(c.split.automatic);
  EXPECT_EQ(c.metrics.port, 0);
}

TEST(Config, ReadsEveryDocumentedKey) {
  const Config c = parseConfig(R"(
run: {name: r1, seed: 7, epochs: 3, output_dir: out/r1}
data: {dataset: synthetic, path: /tmp/x, batch_size: 32, max_train_batches: 10, max_test_batches: 5}
model: {name: mlp, num_classes: 12}
optimizer:
  name: adam
  lr: 0.001
  momentum: 0.5
  weight_decay: 0.0001
  schedule: {name: multistep, milestones: [2, 4], gamma: 0.5}
split: {point: 3, staleness: 4, staleness_schedule: {0: 0, 2: 4}, replay: retain}
compression: {uplink: int8, downlink: fp16, error_feedback: true}
scheduler: {enabled: true, memory_budget_mb: 256}
link:
  endpoint: tcp://127.0.0.1:6000
  emulate: {uplink_mbps: 10, downlink_mbps: 50, rtt_ms: 20, trace: traces/4g.csv}
metrics: {port: 9100}
)",
                               "full.yaml");
  EXPECT_EQ(c.run.seed, 7u);
  EXPECT_EQ(c.run.epochs, 3);
  EXPECT_EQ(c.run.output_dir, "out/r1");
  EXPECT_EQ(c.data.batch_size, 32);
  EXPECT_EQ(c.data.max_train_batches, 10);
  EXPECT_EQ(c.model.num_classes, 12);
  EXPECT_EQ(c.optimizer.name, "adam");
  EXPECT_EQ(c.optimizer.schedule.name, "multistep");
  EXPECT_EQ(c.optimizer.schedule.milestones, (std::vector<int>{2, 4}));
  EXPECT_EQ(c.split.point, 3);
  EXPECT_EQ(c.split.replay, "retain");
  EXPECT_EQ(c.split.stalenessAt(0), 0);
  EXPECT_EQ(c.split.stalenessAt(1), 0);
  EXPECT_EQ(c.split.stalenessAt(5), 4);
  EXPECT_EQ(c.compression.uplink, "int8");
  EXPECT_TRUE(c.compression.error_feedback);
  EXPECT_DOUBLE_EQ(c.scheduler.memory_budget_mb, 256);
  EXPECT_DOUBLE_EQ(c.link.emulate.rtt_ms, 20);
  EXPECT_EQ(c.link.emulate.trace, "traces/4g.csv");
  EXPECT_EQ(c.metrics.port, 9100);
  EXPECT_EQ(c.locate("split.point"), "full.yaml:11:16");
}

TEST(Config, SplitPointAuto) {
  const Config c = parseConfig("split: {point: auto}", "t.yaml");
  EXPECT_TRUE(c.split.automatic);
  EXPECT_THAT(errorOf("split: {point: automatic}"), HasSubstr("split.point: expected an integer"));
}

TEST(Config, ScheduleShorthand) {
  EXPECT_EQ(parseConfig("optimizer: {schedule: cosine}", "t.yaml").optimizer.schedule.name, "cosine");
}

TEST(Config, UnknownKeySuggestsTheClosest) {
  const auto message = errorOf("data:\n  batchsize: 3\n");
  EXPECT_THAT(message, HasSubstr("test.yaml:2:3"));
  EXPECT_THAT(message, HasSubstr("unknown key 'data.batchsize'"));
  EXPECT_THAT(message, HasSubstr("did you mean 'data.batch_size'?"));
}

TEST(Config, UnknownSectionSuggestsTheClosest) {
  EXPECT_THAT(errorOf("run: {}\nmodle: {name: cnn}\n"), HasSubstr("did you mean 'model'?"));
}

TEST(Config, UnknownKeyWithoutNearMatchListsKnownKeys) {
  const auto message = errorOf("metrics: {zzzzzzzz: 1}");
  EXPECT_THAT(message, HasSubstr("unknown key 'metrics.zzzzzzzz'"));
  EXPECT_THAT(message, HasSubstr("known keys here: bind_address, port"));
}

TEST(Config, WrongTypeNamesKeyAndLine) {
  const auto message = errorOf("run:\n  name: x\n  epochs: three\n");
  EXPECT_THAT(message, HasSubstr("test.yaml:3:11"));
  EXPECT_THAT(message, HasSubstr("run.epochs: expected an integer, got 'three'"));
  EXPECT_THAT(errorOf("data: {shuffle: maybe}"), HasSubstr("data.shuffle: expected true or false"));
  EXPECT_THAT(errorOf("optimizer: {lr: [1, 2]}"), HasSubstr("optimizer.lr: expected a number, got a list"));
  EXPECT_THAT(errorOf("run: 5"), HasSubstr("run: expected a mapping of keys"));
  EXPECT_THAT(errorOf("- a\n- b\n"), HasSubstr("the top level must be a mapping"));
}

TEST(Config, OutOfRangeValues) {
  EXPECT_THAT(errorOf("data: {batch_size: 0}"), HasSubstr("data.batch_size: must be between 1 and 65536, got 0"));
  EXPECT_THAT(errorOf("optimizer: {lr: 0}"), HasSubstr("optimizer.lr: must be > 0"));
  EXPECT_THAT(errorOf("optimizer: {lr: -1}"), HasSubstr("optimizer.lr: must be > 0"));
  EXPECT_THAT(errorOf("optimizer: {lr: .nan}"), HasSubstr("optimizer.lr: expected a number"));
  EXPECT_THAT(errorOf("metrics: {port: 70000}"), HasSubstr("metrics.port: must be between 0 and 65535"));
  EXPECT_THAT(errorOf("split: {staleness: -1}"), HasSubstr("split.staleness"));
  EXPECT_THAT(errorOf("run: {seed: -3}"), HasSubstr("run.seed: expected a non-negative integer"));
  EXPECT_THAT(errorOf("optimizer: {schedule: {name: multistep, milestones: [3, 1]}}"),
              HasSubstr("strictly increasing"));
  EXPECT_THAT(errorOf("optimizer: {schedule: {name: multistep}}"), HasSubstr("needs a non-empty milestones"));
  EXPECT_THAT(errorOf("optimizer: {momentum: 0, nesterov: true}"), HasSubstr("nesterov needs"));
  EXPECT_THAT(errorOf("link: {heartbeat_interval_s: 5, peer_timeout_s: 2}"),
              HasSubstr("link.peer_timeout_s: must be longer than link.heartbeat_interval_s"));
}

TEST(Config, UnknownChoiceSuggests) {
  const auto message = errorOf("data: {dataset: fashion}");
  EXPECT_THAT(message, HasSubstr("data.dataset: unknown value 'fashion' (did you mean 'fashion_mnist'?)"));
  EXPECT_THAT(errorOf("split: {replay: recomput}"), HasSubstr("did you mean 'recompute'?"));
  EXPECT_THAT(errorOf("optimizer: {name: adamw}"), HasSubstr("expected one of: sgd, adam"));
}

TEST(Config, SyntaxErrorNamesLine) {
  const auto message = errorOf("run:\n  name: [unclosed\n");
  EXPECT_THAT(message, HasSubstr("test.yaml:"));
  EXPECT_THAT(message, HasSubstr("YAML syntax error"));
}

TEST(Config, OverridesApplyAndAreValidated) {
  const Config c = parseConfig("run: {epochs: 2}", "t.yaml",
                               {"run.epochs=5", "optimizer.schedule.name=cosine", "data.synthetic.train_size=10",
                                "optimizer.schedule.milestones=[1, 2]"});
  EXPECT_EQ(c.run.epochs, 5);
  EXPECT_EQ(c.optimizer.schedule.name, "cosine");
  EXPECT_EQ(c.data.synthetic.train_size, 10);
  EXPECT_EQ(c.optimizer.schedule.milestones, (std::vector<int>{1, 2}));
  EXPECT_EQ(c.locate("run.epochs"), "--set run.epochs=5");

  EXPECT_THAT(errorOf("", {"run.epochs=zero"}), HasSubstr("--set run.epochs=zero: run.epochs: expected an integer"));
  EXPECT_THAT(errorOf("", {"data.batch_sise=3"}), HasSubstr("did you mean 'data.batch_size'?"));
  EXPECT_THAT(errorOf("", {"data.batch_sise=3"}), HasSubstr("--set data.batch_sise=3"));
  EXPECT_THAT(errorOf("", {"noequals"}), HasSubstr("expected key.path=value"));
  EXPECT_THAT(errorOf("", {"run..name=x"}), HasSubstr("empty component"));
  EXPECT_THAT(errorOf("", {"run.name.x=1"}), HasSubstr("run.name: expected a string, got a mapping"));
  EXPECT_THAT(errorOf("run: {name: a}", {"run.name.x=1"}), HasSubstr("not a mapping"));
  EXPECT_THAT(errorOf("", {"run.name=[x"}), HasSubstr("value is not valid YAML"));
}

TEST(Config, MissingFileIsAConfigError) {
  try {
    loadConfig("/nonexistent/tandem.yaml");
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_THAT(e.what(), HasSubstr("cannot read config file '/nonexistent/tandem.yaml'"));
    EXPECT_THAT(e.what(), HasSubstr("No such file"));
  }
}

TEST(Config, LoadsFromFile) {
  const auto path = std::filesystem::temp_directory_path() / "tandem_config_test.yaml";
  {
    std::ofstream out(path);
    out << "run:\n  epochs: 4\n";
  }
  const Config c = loadConfig(path.string(), {"run.seed=9"});
  EXPECT_EQ(c.run.epochs, 4);
  EXPECT_EQ(c.run.seed, 9u);
  EXPECT_EQ(c.source, path.string());
  std::filesystem::remove(path);
}

TEST(Config, FailAtPointsToTheKey) {
  const Config c = parseConfig("split:\n  point: 9\n", "t.yaml");
  try {
    failAt(c, "split.point", "beyond the model");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "t.yaml:2:10: split.point: beyond the model");
  }
}

TEST(Config, EveryShippedConfigParses) {
  int seen = 0;
  for (const auto& entry : std::filesystem::directory_iterator("configs")) {
    if (entry.path().extension() != ".yaml") continue;
    SCOPED_TRACE(entry.path().string());
    EXPECT_NO_THROW(loadConfig(entry.path().string()));
    ++seen;
  }
  EXPECT_GE(seen, 5);
}

}  // namespace
}  // namespace tandem::config

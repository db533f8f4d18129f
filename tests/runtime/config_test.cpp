#include "runtime/config/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include "runtime/common/error.h"
#include "runtime/config/enums.h"
#include "runtime/config/role.h"
#include "runtime/config/schema.h"
#include "tests/common/temp_dir_test.h"

namespace tandem::config {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

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
  EXPECT_EQ(c.optimizer.name, OptimizerKind::kAdam);
  EXPECT_EQ(c.optimizer.schedule.name, LrSchedule::kMultistep);
  EXPECT_EQ(c.optimizer.schedule.milestones, (std::vector<int>{2, 4}));
  EXPECT_EQ(c.split.point, 3);
  EXPECT_EQ(c.split.replay, Replay::kRetain);
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
  EXPECT_EQ(parseConfig("optimizer: {schedule: cosine}", "t.yaml").optimizer.schedule.name, LrSchedule::kCosine);
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
  EXPECT_EQ(c.optimizer.schedule.name, LrSchedule::kCosine);
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

// --- typed values -------------------------------------------------------------------

TEST(ConfigEnums, ParseToTypedValues) {
  const Config c = parseConfig(R"(
optimizer: {name: adam, schedule: {name: step}}
split: {replay: retain, compensation: lr}
security: {mode: plaintext}
log: {level: debug, format: json}
)",
                               "t.yaml");
  EXPECT_EQ(c.optimizer.name, OptimizerKind::kAdam);
  EXPECT_EQ(c.optimizer.schedule.name, LrSchedule::kStep);
  EXPECT_EQ(c.split.replay, Replay::kRetain);
  EXPECT_EQ(c.split.compensation, Compensation::kLr);
  EXPECT_EQ(c.security.mode, SecurityMode::kPlaintext);
  EXPECT_EQ(c.log.level, LogLevel::kDebug);
  EXPECT_EQ(c.log.format, LogFormat::kJson);

  const Config d = parseConfig("{}", "t.yaml");
  EXPECT_EQ(d.optimizer.name, OptimizerKind::kSgd);
  EXPECT_EQ(d.split.replay, Replay::kRecompute);
  EXPECT_EQ(d.split.compensation, Compensation::kMomentum);
  EXPECT_EQ(d.security.mode, SecurityMode::kCurve);
  EXPECT_EQ(d.log.level, LogLevel::kInfo);
  EXPECT_EQ(d.log.format, LogFormat::kText);
  EXPECT_THAT(errorOf("security: {mode: plain}"), HasSubstr("security.mode: unknown value 'plain'"));
  EXPECT_THAT(errorOf("log: {level: Info}"), HasSubstr("expected one of: trace, debug, info, warn, error"));
}

// The spellings are contracts (files, summaries, labels): exactly today's strings.
TEST(ConfigEnums, SpellingsRoundTrip) {
  EXPECT_STREQ(toString(Role::kEdge), "edge");
  EXPECT_STREQ(toString(Role::kCloud), "cloud");
  EXPECT_EQ(parseEnum<Role>("cloud"), Role::kCloud);
  EXPECT_FALSE(parseEnum<Role>("Cloud").has_value());
  EXPECT_FALSE(parseEnum<Role>("standalone").has_value());
  EXPECT_EQ(enumNames<Replay>(), (std::vector<std::string>{"recompute", "retain"}));
  EXPECT_EQ(enumNames<Compensation>(), (std::vector<std::string>{"none", "lr", "momentum"}));
  EXPECT_EQ(enumNames<OptimizerKind>(), (std::vector<std::string>{"sgd", "adam"}));
  EXPECT_EQ(enumNames<SecurityMode>(), (std::vector<std::string>{"curve", "plaintext"}));
  EXPECT_EQ(enumNames<LrSchedule>(), (std::vector<std::string>{"none", "step", "multistep", "cosine"}));
  EXPECT_EQ(enumNames<LogLevel>(), (std::vector<std::string>{"trace", "debug", "info", "warn", "error"}));
  EXPECT_EQ(enumNames<LogFormat>(), (std::vector<std::string>{"text", "json"}));
  for (const auto& name : enumNames<Compensation>()) {
    EXPECT_EQ(toString(*parseEnum<Compensation>(name)), name);
  }
}

// --- holes that are config errors --------------------------------------------------

TEST(ConfigHoles, DuplicateTopLevelKey) {
  const auto message = errorOf("run: {epochs: 2}\nmodel: {name: cnn}\nrun: {epochs: 3}\n");
  EXPECT_THAT(message, HasSubstr("test.yaml:3:1: run: duplicate key (first given at line 1)"));
}

TEST(ConfigHoles, DuplicateNestedKey) {
  EXPECT_THAT(errorOf("optimizer:\n  lr: 0.1\n  momentum: 0.9\n  lr: 0.2\n"),
              HasSubstr("test.yaml:4:3: optimizer.lr: duplicate key (first given at line 2)"));
  EXPECT_THAT(errorOf("split: {point: 1, point: 2}"), HasSubstr("test.yaml:1:19: split.point: duplicate key"));
  EXPECT_THAT(errorOf("data:\n  synthetic:\n    height: 8\n    height: 9\n"),
              HasSubstr("test.yaml:4:5: data.synthetic.height: duplicate key (first given at line 3)"));
  // Inside a value given with --set, too.
  EXPECT_THAT(errorOf("", {"data={batch_size: 1, batch_size: 2}"}),
              HasSubstr("--set data={batch_size: 1, batch_size: 2}: data.batch_size: duplicate key"));
}

class ConfigFiles : public tandem::testing::TempDirTest {
 protected:
  static std::string loadError(const std::string& path) {
    try {
      loadConfig(path);
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "";
  }
};

TEST_F(ConfigFiles, DirectoryIsAConfigError) {
  EXPECT_THAT(loadError(dir_.string()),
              HasSubstr("cannot read config file '" + dir_.string() + "': it is a directory"));
}

TEST_F(ConfigFiles, EmptyFileIsAConfigError) {
  EXPECT_THAT(loadError(write("empty.yaml", "")), HasSubstr("empty.yaml' is empty (no keys)"));
  EXPECT_THAT(loadError(write("comments.yaml", "# nothing here\n\n")), HasSubstr("is empty"));
  EXPECT_EQ(loadError(write("braces.yaml", "{}\n")), "");  // every default, said explicitly
}

TEST_F(ConfigFiles, UnreadableFileIsAConfigError) {
  const auto path = write("secret.yaml", "run: {epochs: 1}\n");
  // A path that cannot be opened, as any user: through a file as if it were a directory.
  EXPECT_THAT(loadError(path + "/run.yaml"),
              HasSubstr("cannot read config file '" + path + "/run.yaml': Not a directory"));
  EXPECT_THAT(loadError(write("x", "") + "-missing.yaml"), HasSubstr("No such file or directory"));
  // Permissions stop everyone but root (which reads files whatever their mode).
  if (::geteuid() != 0) {
    std::filesystem::permissions(path, std::filesystem::perms::none);
    EXPECT_THAT(loadError(path), HasSubstr("cannot read config file '" + path + "': Permission denied"));
  }
}

TEST(ConfigHoles, MalformedEndpoints) {
  for (const char* bad : {"tcp://", "tcp://host", "tcp://:5555", "tcp://host:0", "tcp://host:65536", "tcp://host:http",
                          "tcp://host:", "udp://host:1", "127.0.0.1:5555", "ipc://", "inproc://"}) {
    SCOPED_TRACE(bad);
    const auto message = errorOf(std::string("link:\n  endpoint: '") + bad + "'\n");
    EXPECT_THAT(message, StartsWith("test.yaml:2:13: link.endpoint: "));
    EXPECT_THAT(message, HasSubstr("expected tcp://HOST:PORT"));
  }
  EXPECT_THAT(errorOf("link: {endpoint: 'tcp://host'}"), HasSubstr("'tcp://host' has no port"));
  EXPECT_THAT(errorOf("link: {endpoint: 'tpc://host:1'}"), HasSubstr("unknown scheme 'tpc'"));
  for (const char* good : {"tcp://127.0.0.1:5555", "tcp://127.0.0.1:*", "tcp://*:7000", "tcp://[::1]:5555",
                           "tcp://cloud.example:65535", "ipc:///tmp/tandem.sock", "inproc://tandem"}) {
    SCOPED_TRACE(good);
    EXPECT_EQ(parseConfig(std::string("link: {endpoint: '") + good + "'}", "t.yaml").link.endpoint, good);
  }
}

TEST(ConfigHoles, CodecsAreCheckedAgainstTheRegistryEvenWithTheSchedulerOff) {
  const auto message = errorOf("scheduler: {codecs: [int9]}");
  EXPECT_THAT(message, HasSubstr("test.yaml:1:22: scheduler.codecs[0]: unknown codec 'int9'"));
  EXPECT_THAT(message, HasSubstr("known codecs: "));
  EXPECT_THAT(message, HasSubstr("; did you mean 'int"));  // the registry's nearest: int2 or int8
  EXPECT_THAT(errorOf("scheduler: {codecs: [none, int8, fp61]}"), HasSubstr("scheduler.codecs[2]: unknown codec"));
  EXPECT_THAT(errorOf("scheduler: {codecs: int9}"), HasSubstr("scheduler.codecs: unknown codec 'int9'"));
  EXPECT_THAT(errorOf("scheduler: {codecs: []}"), HasSubstr("scheduler.codecs: needs at least one codec"));
  EXPECT_THAT(errorOf("compression:\n  uplink: int9\n"),
              HasSubstr("test.yaml:2:11: compression.uplink: unknown codec"));
  EXPECT_THAT(errorOf("compression: {downlink: 'int8:3'}"), HasSubstr("compression.downlink: codec 'int8' takes no"));
  EXPECT_THAT(errorOf("compression: {uplink: int8+gzip}"), HasSubstr("unknown lossless stage 'gzip'"));
  const Config c = parseConfig(
      "compression: {uplink: int8_channel+zstd, downlink: fp16}\n"
      "scheduler: {codecs: [none, 'topk:0.1+lz4', int4]}\n",
      "t.yaml");
  EXPECT_EQ(c.compression.uplink, "int8_channel+zstd");
  EXPECT_EQ(c.scheduler.codecs, (std::vector<std::string>{"none", "topk:0.1+lz4", "int4"}));
}

// `none` is the one spelling of uncompressed float32 in config; the wire's `raw` is not.
TEST(ConfigHoles, RawIsNotAConfigSpelling) {
  EXPECT_THAT(errorOf("compression: {uplink: raw}"),
              HasSubstr("compression.uplink: unknown codec 'raw' (did you mean 'none'?)"));
  EXPECT_THAT(errorOf("compression: {downlink: raw}"), HasSubstr("did you mean 'none'?"));
  EXPECT_THAT(errorOf("compression: {uplink: raw+zstd}"), HasSubstr("did you mean 'none'?"));
  EXPECT_THAT(errorOf("scheduler: {codecs: [int8, raw]}"),
              HasSubstr("scheduler.codecs[1]: unknown codec 'raw' (did you mean 'none'?)"));
  EXPECT_EQ(parseConfig("compression: {uplink: none}", "t.yaml").compression.uplink, "none");
}

TEST(ConfigHoles, UnknownKeyGivenWithSetNamesTheArgument) {
  auto message = errorOf("run: {epochs: 2}\n", {"modle.name=cnn"});
  EXPECT_THAT(message, StartsWith("--set modle.name=cnn: unknown key 'modle' (did you mean 'model'?)"));
  message = errorOf("data: {batch_size: 3}\n", {"data.batch_sise.x=3"});
  EXPECT_THAT(message, StartsWith("--set data.batch_sise.x=3: unknown key 'data.batch_sise'"));
  message = errorOf("data: {batch_size: 3}\n", {"data.synthetic.trainsize=5"});
  EXPECT_THAT(message, StartsWith("--set data.synthetic.trainsize=5: unknown key 'data.synthetic.trainsize'"));
  // A typo in the file is still the file's, with the line.
  EXPECT_THAT(errorOf("run: {epochs: 2}\nmodle: {name: cnn}\n", {"run.epochs=3"}), StartsWith("test.yaml:2:1: "));
}

TEST(ConfigHoles, BadValueGivenWithSetNamesTheArgument) {
  const std::string file = "optimizer:\n  schedule: {name: multistep, milestones: [1, 2]}\nsplit:\n  staleness: 1\n";
  EXPECT_THAT(errorOf(file, {"optimizer.schedule.milestones=[1, -1]"}),
              StartsWith("--set optimizer.schedule.milestones=[1, -1]: optimizer.schedule.milestones[1]: must be "
                         "between 0 and 100000"));
  EXPECT_THAT(errorOf(file, {"split.staleness_schedule={0: 100}"}),
              StartsWith("--set split.staleness_schedule={0: 100}: split.staleness_schedule.0: must be between 0 "
                         "and 64"));
  EXPECT_THAT(errorOf(file, {"split.staleness_schedule={x: 1}"}),
              StartsWith("--set split.staleness_schedule={x: 1}: split.staleness_schedule (key): expected an "
                         "integer"));
  EXPECT_THAT(errorOf(file, {"link.emulate.outages=[[1, -1]]"}),
              StartsWith("--set link.emulate.outages=[[1, -1]]: link.emulate.outages[0]: expected a [start_s"));
  EXPECT_THAT(errorOf(file, {"scheduler.codecs=[int8, int9]"}),
              StartsWith("--set scheduler.codecs=[int8, int9]: scheduler.codecs[1]: unknown codec 'int9'"));
  EXPECT_THAT(errorOf(file, {"split={staleness: 99}"}),
              StartsWith("--set split={staleness: 99}: split.staleness: must be between 0 and 64"));
  EXPECT_THAT(errorOf(file, {"link.endpoint=tcp://"}), StartsWith("--set link.endpoint=tcp://: link.endpoint: "));
  // Not blamed on the file's line for the same key.
  EXPECT_THAT(errorOf(file, {"split.staleness=-1"}), Not(HasSubstr("test.yaml")));
}

// --- --print-config ------------------------------------------------------------------

// Every key of the schema, in printConfig's output; parse → print → parse gives the same
// config (compared through its printed form, which covers every key).
TEST(ConfigPrint, RoundTripsEveryKey) {
  const std::string yaml = R"(
run: {name: "odd: name # not a comment", seed: 18446744073709551615, epochs: 3, output_dir: "out dir/r1", threads: 2}
data:
  dataset: synthetic
  batch_size: 32
  test_batch_size: 8
  max_train_batches: 10
  prefetch: 2
  shuffle: false
  synthetic: {train_size: 100, noise: 0.125, height: 8, width: 8}
model: {name: mlp, num_classes: 12}
optimizer:
  name: adam
  lr: 0.001
  momentum: 0.5
  nesterov: true
  weight_decay: 0.0001
  eps: 1e-07
  schedule: {name: multistep, milestones: [2, 4], gamma: 0.5, warmup_epochs: 1}
split: {point: auto, staleness: 4, staleness_schedule: {0: 0, 2: 4}, replay: retain, compensation: none}
compression: {uplink: "int8+zstd", downlink: fp16, error_feedback: true}
scheduler: {enabled: true, memory_budget_mb: 256.5, codecs: [none, "topk:0.1"], split_schedule: {1: 3}}
link:
  endpoint: "tcp://127.0.0.1:*"
  accept_timeout_s: 12.5
  emulate: {uplink_mbps: 10, rtt_ms: 20, trace: traces/4g.csv, outages: [[1, 2], [5.5, 0.25]]}
security: {mode: plaintext, key_file: "null"}
checkpoint: {enabled: false, every_steps: 7}
metrics: {port: 9100}
log: {level: debug, format: json}
)";
  const Config a = parseConfig(yaml, "full.yaml");
  const std::string printed = printConfig(a);
  const Config b = parseConfig(printed, "printed.yaml");
  const std::string reprinted = printConfig(b);
  // Equal but for the first line, which names the source.
  EXPECT_EQ(reprinted.substr(reprinted.find('\n')), printed.substr(printed.find('\n')));
  EXPECT_EQ(b.run.name, "odd: name # not a comment");
  EXPECT_EQ(b.run.seed, 18446744073709551615ull);
  EXPECT_EQ(b.run.output_dir, "out dir/r1");
  EXPECT_TRUE(b.split.automatic);
  EXPECT_EQ(b.split.staleness_schedule, a.split.staleness_schedule);
  EXPECT_EQ(b.split.replay, Replay::kRetain);
  EXPECT_EQ(b.optimizer.eps, 1e-07);
  EXPECT_EQ(b.optimizer.schedule.milestones, (std::vector<int>{2, 4}));
  EXPECT_EQ(b.scheduler.codecs, a.scheduler.codecs);
  EXPECT_EQ(b.link.endpoint, "tcp://127.0.0.1:*");
  EXPECT_EQ(b.link.emulate.outages, a.link.emulate.outages);
  EXPECT_EQ(b.security.key_file, "null");
  EXPECT_EQ(b.log.format, LogFormat::kJson);
  for (const auto& key : configSchema()) {
    const auto leaf = key.path.substr(key.path.rfind('.') + 1);
    EXPECT_THAT(printed, HasSubstr(" " + leaf + ": ")) << key.path;
  }
}

TEST(ConfigPrint, DefaultsResolvedAndUnsetKeysAsComments) {
  const Config a = parseConfig("{}", "empty.yaml", {"run.name=r9"});
  const std::string printed = printConfig(a);
  EXPECT_THAT(printed, HasSubstr("run:\n  name: r9\n"));
  EXPECT_THAT(printed, HasSubstr("  output_dir: runs/r9\n"));
  EXPECT_THAT(printed, HasSubstr("  dir: runs/r9/checkpoints\n"));
  EXPECT_THAT(printed, HasSubstr("  test_batch_size: 64\n"));
  EXPECT_THAT(printed, HasSubstr("  lr: 0.05\n"));
  EXPECT_THAT(printed, HasSubstr("  codecs: [none]\n"));
  EXPECT_THAT(printed, HasSubstr("  endpoint: \"tcp://127.0.0.1:5555\"\n"));
  EXPECT_THAT(printed, HasSubstr("  # key_file: (not set)\n"));
  EXPECT_THAT(printed, HasSubstr("  synthetic:\n    train_size: 2048\n"));
  EXPECT_THAT(printed, HasSubstr("  schedule:\n    name: none\n"));
  const Config b = parseConfig(printed, "printed.yaml");
  EXPECT_EQ(b.run.output_dir, "runs/r9");
  EXPECT_EQ(b.security.key_file, "");
}

TEST(ConfigPrint, QuotesWhatWouldNotReadBack) {
  EXPECT_EQ(yamlQuote("int8"), "int8");
  EXPECT_EQ(yamlQuote("runs/a-b.c"), "runs/a-b.c");
  EXPECT_EQ(yamlQuote(""), "\"\"");
  EXPECT_EQ(yamlQuote("null"), "\"null\"");
  EXPECT_EQ(yamlQuote("~"), "\"~\"");
  EXPECT_EQ(yamlQuote("a: b"), "\"a: b\"");
  EXPECT_EQ(yamlQuote("say \"hi\"\\"), "\"say \\\"hi\\\"\\\\\"");
  EXPECT_EQ(yamlQuote("-x"), "\"-x\"");
}

// --- the schema ----------------------------------------------------------------------

TEST(ConfigSchema, TheParserReadsExactlyTheSchemaKeys) {
  std::vector<std::string> schema;
  for (const auto& key : configSchema()) schema.push_back(key.path);
  std::sort(schema.begin(), schema.end());
  EXPECT_EQ(keysReadByParser(), schema);
  EXPECT_EQ(std::set<std::string>(schema.begin(), schema.end()).size(), schema.size()) << "a key is listed twice";
}

TEST(ConfigSchema, EveryKeyIsDescribed) {
  for (const auto& key : configSchema()) {
    SCOPED_TRACE(key.path);
    EXPECT_FALSE(key.description.empty());
    ASSERT_TRUE(key.value);
    EXPECT_FALSE(key.defaultText().empty());
    if (key.type == KeyType::kChoice) {
      EXPECT_FALSE(key.choices.empty());
    }
    if (key.type == KeyType::kInteger || key.type == KeyType::kNumber) {
      EXPECT_TRUE(key.min.has_value());
    }
  }
  EXPECT_EQ(findKey("optimizer.name")->choices, enumNames<OptimizerKind>());
  EXPECT_EQ(findKey("split.replay")->choices, enumNames<Replay>());
  EXPECT_EQ(findKey("run.epochs")->allowed(), "1 … 100000");
  EXPECT_EQ(findKey("optimizer.lr")->allowed(), "> 0, ≤ 1000");
  EXPECT_EQ(findKey("nonexistent.key"), nullptr);
}

TEST(ConfigSchema, KeyTableHasARowPerKey) {
  const std::string table = keyTableMarkdown();
  EXPECT_EQ(static_cast<std::size_t>(std::count(table.begin(), table.end(), '\n')), configSchema().size() + 2);
  EXPECT_THAT(table, HasSubstr("| `run.epochs` | integer | `1` | 1 … 100000 | epochs to train |\n"));
  EXPECT_THAT(table, HasSubstr("| `split.replay` | choice | `recompute` | `recompute`, `retain` |"));
  EXPECT_THAT(table, HasSubstr("| `compression.uplink` | codec spec | `none` | "));
  EXPECT_THAT(table, HasSubstr("`int8`, "));
  EXPECT_THAT(table, HasSubstr("`none`: raw float32 bytes"));
}

TEST(ConfigSchema, ReplaceKeyTableNeedsTheMarkers) {
  EXPECT_THROW(replaceKeyTable("# README\nno markers\n"), Error);
  const std::string readme = "intro\n<!-- config-keys:begin -->\nold table\n<!-- config-keys:end -->\nafter\n";
  const std::string updated = replaceKeyTable(readme);
  EXPECT_EQ(updated, "intro\n<!-- config-keys:begin -->\n" + keyTableMarkdown() + "<!-- config-keys:end -->\nafter\n");
  EXPECT_EQ(replaceKeyTable(updated), updated);
}

}  // namespace
}  // namespace tandem::config

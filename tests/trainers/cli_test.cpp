// The command-line contract of edge_trainer (docs/design.md): --help, exit codes, and
// config errors that name the file, the key path and the line, with no stack trace.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/trainers/cli_fixture.h"
#include "tests/trainers/process.h"

namespace tandem {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::runCommand;
namespace fs = std::filesystem;

using EdgeTrainerCli = testing::CliTest;

TEST_F(EdgeTrainerCli, HelpListsOptionsAndExitsZero) {
  const auto r = edge("--help");
  EXPECT_EQ(r.exit_code, 0);
  for (const char* option : {"--config", "--set", "--standalone", "--log-format", "Exit codes"}) {
    EXPECT_THAT(r.output, HasSubstr(option));
  }
}

TEST_F(EdgeTrainerCli, MissingConfigOptionIsUsageError) {
  const auto r = edge("");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("--config is required"));
}

TEST_F(EdgeTrainerCli, UnknownOptionIsUsageError) {
  const auto r = edge("--config x.yaml --frobnicate");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("--frobnicate"));
}

TEST_F(EdgeTrainerCli, MissingConfigFile) {
  const auto r = edge("--config /nonexistent/x.yaml --standalone");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("cannot read config file '/nonexistent/x.yaml'"));
}

TEST_F(EdgeTrainerCli, ConfigErrorsNameFileKeyAndLine) {
  const auto typo = write("typo.yaml", "run:\n  epochs: 1\noptimizer:\n  lr: 0.1\n  momentun: 0.9\n");
  auto r = edge("--config " + typo + " --standalone");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr(typo + ":5:3: unknown key 'optimizer.momentun' (did you mean 'optimizer.momentum'?)"));
  EXPECT_THAT(r.output, Not(HasSubstr("terminate")));

  const auto type = write("type.yaml", "data:\n  batch_size: lots\n");
  r = edge("--config " + type + " --standalone");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr(type + ":2:15: data.batch_size: expected an integer, got 'lots'"));

  const auto range = write("range.yaml", "run:\n  epochs: 0\n");
  r = edge("--config " + range + " --standalone");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("run.epochs: must be between 1 and 100000, got 0"));
}

TEST_F(EdgeTrainerCli, ErrorsFoundAfterParsingPointAtTheKey) {
  // These get past parsing, so they write config-edge.yaml: into the test's directory.
  const std::string out = " --set run.output_dir=" + (dir_ / "out").string();
  const auto model = write("model.yaml", "data: {dataset: synthetic}\nmodel:\n  name: resnet81\n");
  auto r = edge("--config " + model + " --standalone" + out);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr(model + ":3:9: model.name: unknown model 'resnet81' (did you mean 'resnet18'?)"));

  const auto data = write("data.yaml", "data: {dataset: fashion_mnist, path: /nonexistent/fmnist}\n");
  r = edge("--config " + data + " --standalone" + out);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("cannot open '/nonexistent/fmnist/train-images-idx3-ubyte.gz'"));
}

// Under --log-format json the last words are JSON too: every stderr line parses.
TEST_F(EdgeTrainerCli, JsonLogFormatCoversErrors) {
  const auto ok = write("ok.yaml", "data: {dataset: synthetic}\n");
  for (const std::string bad :
       {"--set run.epochs=-1", "--set data.path=/nonexistent --set data.dataset=fashion_mnist"}) {
    const auto r = edge("--config " + ok +
                        " --standalone --log-format json --set run.output_dir=" + (dir_ / "out").string() + " " + bad);
    EXPECT_NE(r.exit_code, 0) << bad;
    std::istringstream lines(r.output);
    std::string line;
    int errors = 0;
    while (std::getline(lines, line)) {
      if (line.empty()) continue;
      nlohmann::json j;
      ASSERT_NO_THROW(j = nlohmann::json::parse(line)) << bad << ": not JSON: " << line;
      if (j.value("level", "") == "error") ++errors;
    }
    EXPECT_EQ(errors, 1) << bad << "\n" << r.output;
  }
}

TEST_F(EdgeTrainerCli, SetOverridesAreValidatedToo) {
  const auto ok = write("ok.yaml", "data: {dataset: synthetic}\n");
  auto r = edge("--config " + ok + " --standalone --set run.epochs=-1");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("--set run.epochs=-1: run.epochs: must be between 1 and 100000"));
  r = edge("--config " + ok + " --standalone --set data.batchsize=3");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("did you mean 'data.batch_size'?"));
}

TEST_F(EdgeTrainerCli, StandaloneRunWritesSummary) {
  const auto cfg = write("run.yaml", R"(
run: {name: cli, epochs: 1}
data:
  dataset: synthetic
  batch_size: 16
  synthetic: {train_size: 64, test_size: 32, height: 8, width: 8}
model: {name: mlp}
)");
  const auto r = edge("--config " + cfg + " --standalone --set run.output_dir=" + (dir_ / "out").string() +
                      " --log-format json");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr(R"("component":"edge.standalone")"));
  std::ifstream in(dir_ / "out" / "summary-edge.json");
  ASSERT_TRUE(in);
  const auto json = nlohmann::json::parse(in);
  EXPECT_EQ(json["epochs"], 1);
  EXPECT_EQ(json["train_samples"], 64);

  // The resolved config, beside the summary, loads back as a config.
  const auto written = dir_ / "out" / "config-edge.yaml";
  ASSERT_TRUE(fs::exists(written));
  std::ifstream config_in(written);
  const std::string config_text((std::istreambuf_iterator<char>(config_in)), std::istreambuf_iterator<char>());
  EXPECT_THAT(config_text, HasSubstr("  name: cli\n"));
  EXPECT_THAT(config_text, HasSubstr("  format: json\n"));  // --log-format is part of the config
  EXPECT_THAT(config_text, HasSubstr("  output_dir: " + (dir_ / "out").string() + "\n"));
  const auto reloaded = edge("--config " + written.string() + " --print-config");
  EXPECT_EQ(reloaded.exit_code, 0) << reloaded.output;
}

TEST_F(EdgeTrainerCli, ConfigNamingADirectoryIsAConfigError) {
  const auto r = edge("--config " + dir_.string() + " --standalone");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("config error: cannot read config file '" + dir_.string() + "': it is a directory"));
}

TEST_F(EdgeTrainerCli, EmptyConfigFileIsAConfigError) {
  const auto empty = write("empty.yaml", "");
  const auto r = edge("--config " + empty + " --standalone");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("'" + empty + "' is empty (no keys)"));
}

TEST_F(EdgeTrainerCli, MalformedEndpointIsAConfigErrorWithTheLine) {
  const auto cfg = write("endpoint.yaml", "data: {dataset: synthetic}\nlink:\n  endpoint: tcp://\n");
  auto r = edge("--config " + cfg);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr(cfg + ":3:13: link.endpoint: 'tcp://' names no host and port"));
  r = cloud("--config " + cfg);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr(cfg + ":3:13: link.endpoint:"));
  const auto ok = write("ok.yaml", "data: {dataset: synthetic}\n");
  r = edge("--config " + ok + " --set link.endpoint=tcp://host");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("--set link.endpoint=tcp://host: link.endpoint: 'tcp://host' has no port"));
}

TEST_F(EdgeTrainerCli, UnknownCodecIsAConfigErrorWithTheSchedulerOff) {
  const auto cfg = write("codecs.yaml", "data: {dataset: synthetic}\nscheduler:\n  codecs: [int9]\n");
  const auto r = edge("--config " + cfg + " --standalone");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr(cfg + ":3:12: scheduler.codecs[0]: unknown codec 'int9'"));
}

TEST_F(EdgeTrainerCli, PrintConfigPrintsWhatLoadsBack) {
  const auto cfg = write("print.yaml", "run: {name: printed, epochs: 2}\ndata: {dataset: synthetic}\n");
  const auto r = edge("--config " + cfg + " --set run.epochs=3 --set split.replay=retain --print-config");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("run:\n  name: printed\n"));
  EXPECT_THAT(r.output, HasSubstr("  epochs: 3\n"));
  EXPECT_THAT(r.output, HasSubstr("  replay: retain\n"));
  EXPECT_THAT(r.output, HasSubstr("  endpoint: \"tcp://127.0.0.1:5555\"\n"));
  EXPECT_FALSE(fs::exists("runs/printed")) << "--print-config must not start a run";
  // Loads back and prints the same (but for the first line, which names the source).
  const auto printed = write("printed.yaml", r.output);
  const auto again = edge("--config " + printed + " --print-config");
  EXPECT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(again.output.substr(again.output.find('\n')), r.output.substr(r.output.find('\n')));

  const auto c = cloud("--config " + cfg + " --print-config");
  EXPECT_EQ(c.exit_code, 0) << c.output;
  EXPECT_THAT(c.output, HasSubstr("  epochs: 2\n"));
}

TEST_F(EdgeTrainerCli, SigintStopsCleanlyWithSummary) {
  const auto cfg = write("long.yaml", R"(
run: {name: long, epochs: 1000}
data: {dataset: synthetic, synthetic: {train_size: 4096, height: 16, width: 16}}
model: {name: cnn}
)");
  const auto out = (dir_ / "out").string();
  // Start in the background, interrupt after a moment, wait for it.
  const auto r = runCommand("sh -c '" + std::string(EDGE_TRAINER) + " --config " + cfg +
                            " --standalone --set run.output_dir=" + out +
                            " & pid=$!; sleep 3; kill -INT $pid; wait $pid; echo exit=$?'");
  EXPECT_THAT(r.output, HasSubstr("exit=130"));
  EXPECT_THAT(r.output, HasSubstr("interrupt"));
  std::ifstream in(fs::path(out) / "summary-edge.json");
  ASSERT_TRUE(in) << r.output;
  EXPECT_TRUE(nlohmann::json::parse(in)["interrupted"].get<bool>());
}

}  // namespace
}  // namespace tandem

// What a user sees of the trainers' telemetry from the command line: `--log-format json`
// makes every stderr line one JSON object with the numbers as fields, standalone runs
// serve metrics, summary epochs are 1-based; and tandem_keygen's care with secret keys.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tests/trainers/cli_fixture.h"
#include "tests/trainers/process.h"

namespace tandem {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::runCommand;
namespace fs = std::filesystem;

using TelemetryCli = testing::CliTest;

// A port nobody listens on right now (the kernel's choice for 127.0.0.1:0).
int freePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof address;
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    port = ntohs(address.sin_port);
  }
  ::close(fd);
  return port;
}

bool isFiniteNumber(const nlohmann::json& j) { return j.is_number() && std::isfinite(j.get<double>()); }

TEST_F(TelemetryCli, JsonLogFormatMakesEveryStderrLineAJsonObjectWithNumbers) {
  const auto cfg = write("run.yaml", R"(
run: {name: json_log, epochs: 2, seed: 3}
data:
  dataset: synthetic
  batch_size: 16
  synthetic: {train_size: 64, test_size: 32, height: 8, width: 8, num_classes: 4}
model: {name: mlp}
)");
  const int port = freePort();
  ASSERT_GT(port, 0);
  const auto err = dir_ / "stderr.log";
  const auto out = dir_ / "out";
  const auto r = runCommand("sh -c '" + std::string(EDGE_TRAINER) + " --config " + cfg +
                            " --standalone --log-format json --set run.output_dir=" + out.string() +
                            " --set metrics.port=" + std::to_string(port) + " 2>" + err.string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output << read(err);
  const std::string text = read(err);
  EXPECT_EQ(text.find('\r'), std::string::npos) << "carriage return (a progress bar) in JSON output";
  EXPECT_EQ(text.find('\033'), std::string::npos) << "escape sequence in JSON output";

  std::vector<nlohmann::json> progress;
  std::vector<nlohmann::json> epochs;
  bool metrics_line = false;
  std::istringstream lines(text);
  int n = 0;
  for (std::string line; std::getline(lines, line);) {
    ++n;
    nlohmann::json j;
    ASSERT_NO_THROW(j = nlohmann::json::parse(line)) << "stderr line " << n << " is not JSON: " << line;
    ASSERT_TRUE(j.is_object()) << line;
    for (const char* key : {"ts", "level", "component", "msg"}) {
      ASSERT_TRUE(j.contains(key) && j[key].is_string()) << key << " missing in " << line;
    }
    const std::string event = j.value("event", "");
    if (event == "progress") progress.push_back(j);
    if (event == "epoch") epochs.push_back(j);
    if (j["msg"] == "metrics at http://127.0.0.1:" + std::to_string(port) + "/metrics") metrics_line = true;
  }
  EXPECT_GT(n, 3);
  EXPECT_TRUE(metrics_line) << "standalone run did not serve metrics on metrics.port:\n" << text;

  // One epoch event per epoch, 1-based, with the record's numbers as numbers.
  ASSERT_EQ(epochs.size(), 2u) << text;
  for (std::size_t i = 0; i < epochs.size(); ++i) {
    const auto& e = epochs[i];
    EXPECT_EQ(e["component"], "edge.standalone");
    EXPECT_EQ(e["level"], "info");
    EXPECT_EQ(e["epoch"], static_cast<int>(i) + 1);
    EXPECT_EQ(e["epochs"], 2);
    EXPECT_EQ(e["steps"], 4);
    EXPECT_EQ(e["train_samples"], 64);
    EXPECT_TRUE(e["split_point"].is_number_integer()) << e.dump();
    EXPECT_EQ(e["bytes_uplink"], 0);
    for (const char* key : {"train_loss", "test_loss", "learning_rate", "epoch_seconds", "train_seconds"}) {
      EXPECT_TRUE(isFiniteNumber(e[key])) << key << " in " << e.dump();
    }
    EXPECT_GT(e["train_loss"].get<double>(), 0.0);
    for (const char* key : {"train_accuracy", "test_accuracy"}) {
      ASSERT_TRUE(isFiniteNumber(e[key])) << key;
      EXPECT_GE(e[key].get<double>(), 0.0);
      EXPECT_LE(e[key].get<double>(), 1.0);
    }
    EXPECT_GT(e["samples_per_second"].get<double>(), 0.0);
    EXPECT_THAT(e["msg"].get<std::string>(), HasSubstr("epoch " + std::to_string(i + 1) + "/2: train loss"));
  }

  // Progress events: each epoch reports its last step; numbers are fields.
  std::map<int, bool> finished;
  for (const auto& p : progress) {
    EXPECT_EQ(p["component"], "edge.standalone");
    ASSERT_TRUE(p["epoch"].is_number_integer()) << p.dump();
    EXPECT_EQ(p["epochs"], 2);
    EXPECT_EQ(p["steps_total"], 4);
    const int step = p["step"].get<int>();
    EXPECT_GE(step, 1);
    EXPECT_LE(step, 4);
    EXPECT_EQ(p["samples"], step * 16);
    for (const char* key : {"loss", "accuracy", "samples_per_second", "elapsed_seconds", "eta_seconds"}) {
      EXPECT_TRUE(isFiniteNumber(p[key])) << key << " in " << p.dump();
    }
    EXPECT_GE(p["accuracy"].get<double>(), 0.0);
    EXPECT_LE(p["accuracy"].get<double>(), 1.0);
    if (step == 4) finished[p["epoch"].get<int>()] = true;
  }
  EXPECT_TRUE(finished[1] && finished[2]) << text;

  // The summary numbers epochs from 1 as the log does.
  std::ifstream in(out / "summary-edge.json");
  ASSERT_TRUE(in);
  const auto summary = nlohmann::json::parse(in);
  ASSERT_EQ(summary["history"].size(), 2u);
  EXPECT_EQ(summary["history"][0]["epoch"], 1);
  EXPECT_EQ(summary["history"][1]["epoch"], 2);
}

TEST_F(TelemetryCli, TextLogFormatKeepsTheHumanEpochLine) {
  const auto cfg = write("run.yaml", R"(
run: {name: text_log, epochs: 1}
data:
  dataset: synthetic
  batch_size: 16
  synthetic: {train_size: 32, test_size: 16, height: 8, width: 8}
model: {name: mlp}
)");
  const auto r = runCommand(std::string(EDGE_TRAINER) + " --config " + cfg +
                            " --standalone --set run.output_dir=" + (dir_ / "out").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("[edge.standalone] epoch 1/1: train loss "));
  EXPECT_THAT(r.output, HasSubstr("samples/s | "));
  EXPECT_THAT(r.output, Not(HasSubstr("\"event\"")));
}

// ---------------------------------------------------------------------------------------
// tandem_keygen

mode_t modeOf(const fs::path& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? (st.st_mode & 0777) : 0;
}

TEST_F(TelemetryCli, KeygenWritesSecretKeys0600AndRefusesToOverwriteWithoutForce) {
  const auto keys = dir_ / "keys";
  const std::string keygen = std::string(TANDEM_KEYGEN) + " --out " + keys.string();
  auto r = runCommand(keygen + " cloud edge");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(modeOf(keys / "cloud.key"), 0600u);
  EXPECT_EQ(modeOf(keys / "edge.key"), 0600u);
  EXPECT_EQ(modeOf(keys / "cloud.pub"), 0644u);
  const std::string secret = read(keys / "edge.key");
  ASSERT_THAT(secret, HasSubstr("secret-key = \""));

  // A second run must not replace any of them, not even the names that are new.
  r = runCommand(keygen + " other edge");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr((keys / "edge.key").string()));
  EXPECT_THAT(r.output, HasSubstr("--force"));
  EXPECT_EQ(read(keys / "edge.key"), secret);
  EXPECT_FALSE(fs::exists(keys / "other.key"));

  r = runCommand(keygen + " --force edge");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(read(keys / "edge.key"), secret);
  EXPECT_EQ(modeOf(keys / "edge.key"), 0600u);
}

TEST_F(TelemetryCli, KeygenWarnsWhenTheKeysCouldBeCommitted) {
  const auto repo = dir_ / "repo";
  fs::create_directories(repo);
  const auto init = runCommand("git init -q " + repo.string());
  ASSERT_EQ(init.exit_code, 0) << "git is needed for this test (scripts/setup.sh installs it): " << init.output;
  const std::string keygen = std::string(TANDEM_KEYGEN) + " --out " + (repo / "keys").string();

  auto r = runCommand(keygen + " cloud");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("warning"));
  EXPECT_THAT(r.output, HasSubstr("does not ignore it"));

  std::ofstream(repo / ".gitignore") << "keys/\n";
  r = runCommand(keygen + " edge");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, Not(HasSubstr("warning")));

  // Outside any work tree: nothing to warn about.
  const auto outside = dir_ / "plain";
  r = runCommand(std::string(TANDEM_KEYGEN) + " --out " + outside.string() + " edge");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  if (runCommand("git -C " + outside.string() + " rev-parse --is-inside-work-tree").exit_code != 0) {
    EXPECT_THAT(r.output, Not(HasSubstr("warning")));
  }
}

TEST_F(TelemetryCli, RepositoryGitignoreCoversKeysAndRuns) {
  const std::string gitignore = "\n" + read(fs::path(TANDEM_SOURCE_DIR) / ".gitignore");
  for (const char* pattern : {"keys/", "*.key", "runs/", "build*/"}) {
    EXPECT_THAT(gitignore, HasSubstr(std::string("\n") + pattern + "\n")) << pattern;
  }
}

}  // namespace
}  // namespace tandem

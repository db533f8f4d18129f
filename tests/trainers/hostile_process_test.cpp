// Hostile peers against a live cloud_trainer while a good edge_trainer trains, all as
// processes on 127.0.0.1. First random and mutated frames from threads of this test; then
// one case per tandem_attack attack (trainers/attack/attacks.h): the good run completes
// with the accuracy of an undisturbed run, the cloud's memory and log stay bounded, it
// counts the limit the attack runs into, and it still stops on SIGTERM.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <regex>
#include <thread>
#include <zmq.hpp>

#include "runtime/transport/frame_corpus.h"
#include "tests/trainers/process.h"

namespace tandem {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

std::vector<std::vector<std::string>> seedMessages() {
  return transport::readFrameCorpus((fs::path(TANDEM_SOURCE_DIR) / "tests/fuzz/corpus/protocol").string());
}

TEST(HostilePeers, GoodRunCompletesUnderAFloodOfBadFrames) {
  const auto dir = fs::temp_directory_path() / ("tandem_hostile_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const auto config = (dir / "run.yaml").string();
  std::ofstream(config) << R"(
run: {name: hostile, epochs: 2, seed: 2}
data: {dataset: synthetic, batch_size: 32, synthetic: {train_size: 1024, test_size: 256, height: 12, width: 12}}
model: {name: cnn}
split: {point: 2, staleness: 2}
security: {mode: plaintext}
checkpoint: {enabled: false}
link: {endpoint: "tcp://127.0.0.1:*", heartbeat_interval_s: 0.3, peer_timeout_s: 5}
)";
  const auto out = (dir / "out").string();
  testing::ChildProcess cloud({CLOUD_TRAINER, "--config", config, "--endpoint-file", (dir / "endpoint").string(),
                               "--set", "run.output_dir=" + out},
                              (dir / "cloud.log").string());
  const auto endpoint = testing::waitForFile((dir / "endpoint").string(), 60s);
  ASSERT_FALSE(endpoint.empty()) << cloud.output();

  const auto seeds = seedMessages();
  ASSERT_GE(seeds.size(), 10u);
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> sent{0};
  std::atomic<std::uint64_t> errors_back{0};
  std::vector<std::thread> attackers;
  for (int a = 0; a < 3; ++a) {
    attackers.emplace_back([&, a] {
      zmq::context_t context;
      std::mt19937 rng(100 + a);
      while (!done) {
        // A fresh identity every few hundred messages.
        zmq::socket_t socket(context, zmq::socket_type::dealer);
        socket.set(zmq::sockopt::linger, 0);
        socket.set(zmq::sockopt::sndhwm, 100);
        socket.connect(endpoint);
        for (int i = 0; i < 300 && !done; ++i) {
          auto frames = seeds[rng() % seeds.size()];
          if (rng() % 4 == 0) {
            frames = {std::string(rng() % 200, '\0')};  // random bytes
            for (auto& c : frames[0]) c = static_cast<char>(rng());
          } else {
            transport::mutateFrames(frames, rng);
          }
          for (std::size_t k = 0; k < frames.size(); ++k) {
            socket.send(
                zmq::buffer(frames[k]),
                (k + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none) | zmq::send_flags::dontwait);
          }
          ++sent;
          zmq::message_t reply;
          while (socket.recv(reply, zmq::recv_flags::dontwait)) ++errors_back;
          std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
      }
    });
  }

  std::this_thread::sleep_for(500ms);  // the flood starts before the good edge
  testing::ChildProcess edge(
      {EDGE_TRAINER, "--config", config, "--set", "link.endpoint=" + endpoint, "--set", "run.output_dir=" + out},
      (dir / "edge.log").string());
  const int edge_code = edge.wait(240s);
  done = true;
  for (auto& t : attackers) t.join();
  EXPECT_EQ(edge_code, 0) << edge.output();
  EXPECT_EQ(cloud.wait(60s), 0) << cloud.output();
  EXPECT_GT(sent.load(), 1000u);
  EXPECT_GT(errors_back.load(), 100u);  // the cloud answered bad messages with errors
  EXPECT_THAT(cloud.output(), HasSubstr("rejected"));
  std::ifstream summary(out + "/summary-edge.json");
  std::stringstream text;
  text << summary.rdbuf();
  EXPECT_THAT(text.str(), HasSubstr("\"epochs\": 2"));
  fs::remove_all(dir);
}

// ---------------------------------------------------------------------------------------
// The attack suite: cloud_trainer --keep-serving, a good edge_trainer and tandem_attack,
// side by side.

// What each attack may cost the cloud, and the limit it must run into. One row per attack
// of tandem_attack; adjust bounds here.
struct AttackCase {
  const char* attack;
  std::int64_t count;      // --count (0: the tool's default)
  double seconds;          // --seconds; attacks that hold connections hold them this long
  bool holds;              // keeps its connections until stopped: the cloud is stopped while it holds
  double peak_rss_mb;      // cloud VmHWM may exceed its RSS before the attack by this much
  double settled_rss_mb;   // RSS 5 s after the attack ended, above that baseline (< 0: not checked)
  double log_mb;           // the cloud's log (stdout and stderr) stays under this
  const char* limit;       // tandem_limit_hits_total{limit="..."} must have counted ("": not checked)
  bool check_fingerprint;  // no Error reply contains the cloud's fingerprint
};

// clang-format off
const AttackCase kAttackCases[] = {
    // attack            count   s    holds  peak  settled  log  limit               fingerprint
    {"hello-flood",      1000,   30,  false, 200,  64,      1.0, "sessions_per_peer", false},
    {"bad-handshake",    10000,  20,  false, 200,  -1,      1.0, "",                 true},
    {"oversize-shapes",  5000,   30,  false, 200,  -1,      1.0, "",                 false},
    {"many-frames",      10,     30,  false, 200,  64,      1.0, "",                 false},
    {"big-frames",       4,      30,  false, 200,  64,      1.0, "",                 false},
    {"replay",           2000,   30,  false, 200,  -1,      1.0, "",                 false},
    {"slow-drip",        16,     40,  true,  200,  -1,      1.0, "",                 false},
    {"resync-flood",     300,    40,  true,  200,  -1,      1.0, "peer_queue",       false},
    {"gap-flood",        20000,  40,  true,  200,  -1,      1.0, "",                 false},
    {"junk",             20000,  30,  false, 200,  -1,      1.0, "",                 false},
};
// clang-format on

std::ostream& operator<<(std::ostream& os, const AttackCase& c) { return os << c.attack; }

// K = 0: split training is deterministic, so an attacked run must reach exactly the
// accuracy of an undisturbed one. Noisy classes keep that accuracy away from 100 %, where
// a disturbed run would look the same. The metrics port is the cloud's (the edges are
// started with metrics.port=0). A short connect timeout fails the good edge within
// seconds when the cloud stalls; the long reconnect grace keeps a stalled cloud stalled
// (it drops a silent attacker only after peer_timeout + grace = 30 s) until well after the
// SIGTERM the test sends, so a stall cannot pass for a clean stop.
std::string attackConfig(int metrics_port) {
  return R"(
run: {name: hostile, epochs: 2, seed: 2, threads: 1}
data: {dataset: synthetic, batch_size: 32, synthetic: {train_size: 1024, test_size: 256, height: 12, width: 12, noise: 3.0}}
model: {name: cnn}
split: {point: 2, staleness: 0}
security: {mode: plaintext}
checkpoint: {enabled: false}
link: {endpoint: "tcp://127.0.0.1:*", heartbeat_interval_s: 0.3, peer_timeout_s: 5, reconnect_grace_s: 25,
       connect_timeout_s: 10, max_message_mb: 8}
metrics: {port: )" +
         std::to_string(metrics_port) + "}\n";
}

int freePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    port = ntohs(address.sin_port);
  }
  ::close(fd);
  return port;
}

// GET /metrics from 127.0.0.1:port ("" when nothing answers within 5 s).
std::string scrapeMetrics(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  timeval timeout{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  std::string text;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
    const std::string request = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size())) {
      char buffer[4096];
      ssize_t n;
      while ((n = ::recv(fd, buffer, sizeof buffer, 0)) > 0) text.append(buffer, static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  return text;
}

// The sum of tandem_limit_hits_total samples labelled limit="<limit>" (nullopt: none).
std::optional<double> limitHits(const std::string& metrics, const std::string& limit) {
  std::optional<double> total;
  std::istringstream lines(metrics);
  std::string line;
  const std::string label = "limit=\"" + limit + "\"";
  while (std::getline(lines, line)) {
    if (line.rfind("tandem_limit_hits_total{", 0) != 0 || line.find(label) == std::string::npos) continue;
    total = total.value_or(0.0) + std::stod(line.substr(line.rfind(' ') + 1));
  }
  return total;
}

// kB of a /proc/PID/status field (VmRSS, VmHWM); -1 if unreadable.
double procStatusKb(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stod(line.substr(field.size() + 1));
  }
  return -1;
}

std::string tail(const std::string& text, std::size_t bytes = 4000) {
  return text.size() <= bytes ? text : "…" + text.substr(text.size() - bytes);
}

std::optional<double> finalTestAccuracy(const fs::path& summary_file) {
  std::ifstream in(summary_file);
  if (!in) return std::nullopt;
  try {
    const auto j = nlohmann::json::parse(in);
    if (!j["final_test_accuracy"].is_number()) return std::nullopt;
    return j["final_test_accuracy"].get<double>();
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

// One cloud_trainer --keep-serving with its files in `dir`.
struct Cloud {
  Cloud(const fs::path& dir, const std::string& config)
      : process({CLOUD_TRAINER, "--config", config, "--keep-serving", "--endpoint-file", (dir / "endpoint").string(),
                 "--set", "run.output_dir=" + (dir / "out").string()},
                (dir / "cloud.log").string()),
        log_file(dir / "cloud.log"),
        endpoint(testing::waitForFile((dir / "endpoint").string(), 60s)) {}

  // SIGTERM: an interrupted cloud exits 130 (docs/design.md), within 10 s.
  void expectStopsOnSigterm() {
    process.signal(SIGTERM);
    const int code = process.wait(10s);
    EXPECT_EQ(code, 130) << (code == -1 ? "cloud still running 10 s after SIGTERM (killed)" : "cloud exit code")
                         << "; cloud log tail:\n"
                         << tail(process.output());
  }

  testing::ChildProcess process;
  fs::path log_file;
  std::string endpoint;
};

class HostileAttack : public ::testing::TestWithParam<AttackCase> {
 protected:
  // One undisturbed run: the accuracy every attacked run must reach. ctest runs each case
  // in a process of its own, so the result is kept in a file named after the config and
  // the trainers' modification times: rebuilt trainers run it again.
  static void SetUpTestSuite() {
    std::error_code ec;
    const auto stamp = [&](const char* path) { return fs::last_write_time(path, ec).time_since_epoch().count(); };
    const auto key = std::hash<std::string>()(attackConfig(0) + std::to_string(stamp(EDGE_TRAINER)) + "/" +
                                              std::to_string(stamp(CLOUD_TRAINER)));
    const auto cache = fs::temp_directory_path() / ("tandem_attack_reference_" + std::to_string(key) + ".txt");
    if (std::ifstream in(cache); in) {
      double value = 0;
      if (in >> value) {
        reference_accuracy = value;
        return;
      }
    }
    const auto dir = fs::temp_directory_path() / ("tandem_attack_ref_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    const auto config = (dir / "run.yaml").string();
    std::ofstream(config) << attackConfig(freePort());
    Cloud cloud(dir, config);
    if (cloud.endpoint.empty()) {
      reference_failure = "reference cloud did not start:\n" + tail(cloud.process.output());
      return;
    }
    testing::ChildProcess edge({EDGE_TRAINER, "--config", config, "--set", "link.endpoint=" + cloud.endpoint, "--set",
                                "run.output_dir=" + (dir / "edge").string(), "--set", "metrics.port=0"},
                               (dir / "edge.log").string());
    const int code = edge.wait(120s);
    reference_accuracy = finalTestAccuracy(dir / "edge" / "summary-edge.json");
    if (code != 0 || !reference_accuracy) {
      reference_failure = "reference edge exited " + std::to_string(code) + ":\n" + tail(edge.output());
    }
    cloud.process.signal(SIGTERM);
    cloud.process.wait(10s);
    fs::remove_all(dir);
    if (reference_failure.empty()) {
      const auto partial = cache.string() + "." + std::to_string(::getpid());
      std::ofstream(partial) << std::setprecision(17) << *reference_accuracy << "\n";
      fs::rename(partial, cache, ec);  // atomic: a case running beside this one reads all or nothing
    }
  }

  void SetUp() override {
    ASSERT_TRUE(reference_failure.empty()) << reference_failure;
    std::string name = GetParam().attack;
    dir_ = fs::temp_directory_path() / ("tandem_attack_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (!HasFailure()) fs::remove_all(dir_);  // kept for a look when the case failed
  }

  static std::optional<double> reference_accuracy;
  static std::string reference_failure;
  fs::path dir_;
};

std::optional<double> HostileAttack::reference_accuracy;
std::string HostileAttack::reference_failure;

TEST_P(HostileAttack, GoodRunIsUnharmedAndTheCloudStaysBoundedAndStoppable) {
  const AttackCase& c = GetParam();
  const int metrics_port = freePort();
  ASSERT_GT(metrics_port, 0);
  const auto config = (dir_ / "run.yaml").string();
  std::ofstream(config) << attackConfig(metrics_port);

  Cloud cloud(dir_, config);
  ASSERT_FALSE(cloud.endpoint.empty()) << tail(cloud.process.output());
  const pid_t cloud_pid = cloud.process.pid();
  const double baseline_kb = procStatusKb(cloud_pid, "VmRSS");
  ASSERT_GT(baseline_kb, 0);

  testing::ChildProcess attack({TANDEM_ATTACK, "--endpoint", cloud.endpoint, "--attack", c.attack, "--count",
                                std::to_string(c.count), "--seconds", std::to_string(c.seconds), "--config", config,
                                "--corpus", std::string(TANDEM_SOURCE_DIR) + "/tests/fuzz/corpus/protocol",
                                // Another address than the good edge's: the cloud's per-peer
                                // limits (per address in plaintext) tell them apart.
                                "--source", "127.0.0.2"},
                               (dir_ / "attack.log").string());
  std::this_thread::sleep_for(300ms);  // the attack starts before the good edge
  testing::ChildProcess edge({EDGE_TRAINER, "--config", config, "--set", "link.endpoint=" + cloud.endpoint, "--set",
                              "run.output_dir=" + (dir_ / "edge").string(), "--set", "metrics.port=0"},
                             (dir_ / "edge.log").string());
  const int edge_code = edge.wait(45s);
  EXPECT_EQ(edge_code, 0) << "good edge (-1: still running after 45 s):\n"
                          << tail(edge.output()) << "\ncloud log tail:\n"
                          << tail(cloud.process.output());
  const auto accuracy = finalTestAccuracy(dir_ / "edge" / "summary-edge.json");
  ASSERT_TRUE(reference_accuracy.has_value());
  if (edge_code == 0) {
    ASSERT_TRUE(accuracy.has_value()) << "no final_test_accuracy in the good edge's summary";
    EXPECT_NEAR(*accuracy, *reference_accuracy, 1e-6) << "K = 0 split training is deterministic";
  }

  // An attack that does not hold its connections ends by itself, within its budget.
  int attack_code = -1;
  if (!c.holds) {
    attack_code = attack.wait(std::chrono::milliseconds(static_cast<int>(c.seconds * 1000)) + 15s);
    EXPECT_EQ(attack_code, 0) << "tandem_attack (-1: still running):\n" << attack.output();
  }

  const double peak_mb = (procStatusKb(cloud_pid, "VmHWM") - baseline_kb) / 1024.0;
  EXPECT_LT(peak_mb, c.peak_rss_mb) << "cloud peak RSS above its start (" << baseline_kb / 1024.0 << " MB)";
  if (c.settled_rss_mb >= 0) {
    std::this_thread::sleep_for(5s);
    const double settled_mb = (procStatusKb(cloud_pid, "VmRSS") - baseline_kb) / 1024.0;
    EXPECT_LT(settled_mb, c.settled_rss_mb) << "cloud RSS 5 s after the attack, above its start";
  }
  if (*c.limit != '\0') {
    const auto hits = limitHits(scrapeMetrics(metrics_port), c.limit);
    EXPECT_TRUE(hits.has_value() && *hits > 0)
        << "tandem_limit_hits_total{limit=\"" << c.limit << "\"} did not count the attack";
  }
  std::error_code ec;
  const double log_mb = static_cast<double>(fs::file_size(cloud.log_file, ec)) / (1024.0 * 1024.0);
  EXPECT_LT(log_mb, c.log_mb) << "cloud log size (MB); its tail:\n" << tail(cloud.process.output(), 1500);

  // Stopped while a holding attacker still holds on: SIGTERM must not wait for it.
  cloud.expectStopsOnSigterm();

  if (c.holds) {
    attack.signal(SIGTERM);
    attack_code = attack.wait(15s);
    EXPECT_EQ(attack_code, 0) << "tandem_attack after SIGTERM (-1: still running):\n" << attack.output();
  }
  const std::string attack_output = attack.output();
  std::smatch summary;
  const bool has_summary = std::regex_search(attack_output, summary, std::regex("leaked_fingerprint=([01])"));
  if (attack_code == 0) {
    EXPECT_TRUE(has_summary) << attack_output;
  }
  if (c.check_fingerprint && has_summary) {
    EXPECT_EQ(summary[1].str(), "0") << "a refused handshake told the attacker the cloud's fingerprint:\n"
                                     << attack_output;
  }
  RecordProperty("attack_summary", attack_output);
}

// The tool's own contract: --help names every attack of the table, a bad command line
// exits 2, an attack on a port where nothing listens still ends by its budget with exit 0.
TEST(TandemAttackCli, HelpListsTheAttacksAndBadArgumentsExit2) {
  const auto help = testing::runCommand(std::string(TANDEM_ATTACK) + " --help", 30);
  EXPECT_EQ(help.exit_code, 0) << help.output;
  for (const auto& c : kAttackCases) EXPECT_THAT(help.output, HasSubstr(c.attack));
  const auto unknown =
      testing::runCommand(std::string(TANDEM_ATTACK) + " --endpoint tcp://127.0.0.1:1 --attack nope", 30);
  EXPECT_EQ(unknown.exit_code, 2) << unknown.output;
  const auto missing = testing::runCommand(std::string(TANDEM_ATTACK) + " --attack junk", 30);
  EXPECT_EQ(missing.exit_code, 2) << missing.output;
  const auto bad_config = testing::runCommand(
      std::string(TANDEM_ATTACK) + " --endpoint tcp://127.0.0.1:1 --attack junk --config /nonexistent.yaml", 30);
  EXPECT_EQ(bad_config.exit_code, 2) << bad_config.output;
  const int port = freePort();
  const auto nobody =
      testing::runCommand(std::string(TANDEM_ATTACK) + " --endpoint tcp://127.0.0.1:" + std::to_string(port) +
                              " --attack replay --seconds 2",
                          30);
  EXPECT_EQ(nobody.exit_code, 0) << nobody.output;
  EXPECT_THAT(nobody.output, HasSubstr("tandem_attack: attack=replay sent="));
}

std::string caseName(const ::testing::TestParamInfo<AttackCase>& info) {
  std::string name = info.param.attack;
  for (auto& ch : name) {
    if (ch == '-') ch = '_';
  }
  return name;
}

INSTANTIATE_TEST_SUITE_P(Attacks, HostileAttack, ::testing::ValuesIn(kAttackCases), caseName);

}  // namespace
}  // namespace tandem

#include "runtime/app/trainer_main.h"

#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <exception>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "runtime/common/error.h"
#include "runtime/common/log.h"
#include "runtime/common/log_limiter.h"
#include "runtime/common/watchdog.h"
#include "runtime/config/config.h"
#include "runtime/config/role.h"
#include "runtime/pipeline/cloud.h"
#include "runtime/pipeline/edge.h"
#include "runtime/pipeline/link.h"
#include "runtime/pipeline/standalone.h"
#include "runtime/telemetry/metrics.h"
#include "runtime/telemetry/summary.h"

namespace tandem::app {
namespace {

// The process-wide flags: the first SIGINT/SIGTERM sets g_stop (finish the step in flight,
// write what the run has), a second one g_abort (wait for nothing more: tell the cloud and
// exit). If the trainer does not get out within kAbortGraceSeconds, the process exits
// anyway.
std::atomic<bool> g_stop{false};
std::atomic<bool> g_abort{false};
constexpr unsigned kAbortGraceSeconds = 3;

// What the signal handler writes (it may only write(2) what was prepared): plain text, or
// one JSON object per line under log.format: json.
const char* g_first_interrupt =
    "\ninterrupt: finishing the current step and writing the summary "
    "(interrupt again to exit at once)\n";
const char* g_second_interrupt = "\nsecond interrupt: telling the peer and exiting\n";
const char* g_out_of_grace = "\nshutdown took longer than run.shutdown_grace_s: exiting now\n";

void useJsonSignalMessages() {
  g_first_interrupt =
      "{\"level\":\"warning\",\"component\":\"app\",\"event\":\"interrupt\",\"msg\":\"interrupt: finishing the "
      "current step and writing the summary (interrupt again to exit at once)\"}\n";
  g_second_interrupt =
      "{\"level\":\"warning\",\"component\":\"app\",\"event\":\"interrupt\",\"msg\":\"second interrupt: telling "
      "the peer and exiting\"}\n";
  g_out_of_grace =
      "{\"level\":\"error\",\"component\":\"app\",\"event\":\"interrupt\",\"msg\":\"shutdown took longer "
      "than run.shutdown_grace_s: exiting now\"}\n";
}

void writeToStderr(const char* text) {
  std::size_t length = 0;
  while (text[length] != '\0') ++length;
  [[maybe_unused]] auto n = ::write(STDERR_FILENO, text, length);
}

// The process's last words: one plain line "program: text", or one JSON object when the
// log format is json, so that every line on stderr parses.
void finalLine(const std::string& program, bool json, spdlog::level::level_enum level, const std::string& text) {
  if (json) {
    auto logger = log::get("app");
    logger->log(level, "{}", text);
    logger->flush();
  } else {
    std::fprintf(stderr, "%s: %s\n", program.c_str(), text.c_str());
  }
}

// run.shutdown_grace_s, rounded up: after the first interrupt the process is gone by then,
// whatever it is waiting for (a peer that does not answer, a queue that does not drain).
unsigned g_shutdown_grace_seconds = 30;

extern "C" void onAlarm(int) {
  writeToStderr(g_out_of_grace);
  std::_Exit(kExitInterrupted);
}

extern "C" void onSignal(int signal) {
  if (g_stop.exchange(true)) {
    if (g_abort.exchange(true)) std::_Exit(128 + signal);
    writeToStderr(g_second_interrupt);
    ::alarm(kAbortGraceSeconds);
    return;
  }
  writeToStderr(g_first_interrupt);
  ::alarm(g_shutdown_grace_seconds);
}

// Reports threads that stopped making progress (runtime/common/watchdog.h): a stuck
// compute or socket thread is a bug this makes visible, with the thread's name.
class WatchdogThread {
 public:
  explicit WatchdogThread(std::chrono::seconds threshold) : threshold_(threshold) {
    thread_ = std::thread([this] { run(); });
  }
  ~WatchdogThread() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      done_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }
  WatchdogThread(const WatchdogThread&) = delete;
  WatchdogThread& operator=(const WatchdogThread&) = delete;

 private:
  void run() {
    auto log = log::get("app");
    std::set<std::string> reported;
    std::unique_lock<std::mutex> lock(mutex_);
    while (!wake_.wait_for(lock, std::chrono::seconds(1), [&] { return done_; })) {
      std::set<std::string> now;
      for (const auto& p : watchdog::stalled(threshold_)) {
        now.insert(p.name);
        if (!reported.count(p.name)) {
          log->error("thread '{}' has made no progress for {:.0f} s (a bug: please report it with this log)", p.name,
                     p.seconds_since);
        }
      }
      reported = std::move(now);
    }
  }

  std::chrono::seconds threshold_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool done_ = false;
  std::thread thread_;
};

void installSignalHandlers() {
  struct sigaction action {};
  action.sa_handler = onSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  struct sigaction alarm_action {};
  alarm_action.sa_handler = onAlarm;
  sigemptyset(&alarm_action.sa_mask);
  sigaction(SIGALRM, &alarm_action, nullptr);
}

}  // namespace

int trainerMain(Role role, int argc, char** argv) {
  const std::string program = role == Role::kEdge ? "edge_trainer" : "cloud_trainer";
  CLI::App cli(role == Role::kEdge
                   ? "Tandem edge trainer: holds the data, runs the first stages of the model and sends "
                     "activations to the cloud trainer."
                   : "Tandem cloud trainer: runs the last stages of the model for one or more edge trainers.",
               program);
  std::string config_path;
  std::vector<std::string> overrides;
  bool standalone = false;
  std::string log_level;
  std::string log_format;
  cli.add_option("-c,--config", config_path, "YAML config file (one file can serve both trainers)")
      ->required()
      ->type_name("FILE");
  cli.add_option("--set", overrides, "Override a config key, e.g. --set optimizer.lr=0.01 (repeatable)")
      ->type_name("KEY=VALUE")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  bool print_config = false;
  cli.add_flag("--print-config", print_config,
               "Print the fully resolved config (defaults included, after --set) as YAML that --config accepts, "
               "and exit");
  bool keep_serving = false;
  bool resume = false;
  std::string endpoint_file;
  if (role == Role::kEdge) {
    cli.add_flag("--standalone", standalone, "Train the whole model in this process (the no-network baseline)");
    cli.add_flag("--resume", resume,
                 "Continue from the newest checkpoint the edge and the cloud both hold (checkpoint.dir)");
  } else {
    cli.add_flag("--keep-serving", keep_serving,
                 "Keep serving new edges after a run ends (default: exit when the last edge's run ends)");
    cli.add_option("--endpoint-file", endpoint_file,
                   "Write the bound endpoint to FILE once listening (useful with link.endpoint: tcp://127.0.0.1:*)")
        ->type_name("FILE");
  }
  cli.add_option("--log-level", log_level, "Override log.level")
      ->check(CLI::IsMember(config::enumNames<config::LogLevel>()));
  cli.add_option("--log-format", log_format, "Override log.format: text or json")
      ->check(CLI::IsMember(config::enumNames<config::LogFormat>()));
  cli.set_version_flag("--version", "tandem 0.1.0");
  cli.footer(
      "Exit codes: 0 success, 1 failure, 2 bad command line or config, 130 interrupted (cloud: also when the\n"
      "edge interrupted its run). Interrupt once to stop after the step in flight, twice to stop at once.\n"
      "Config keys and examples: see README.md and configs/.");

  try {
    cli.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return cli.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "%s: %s\nRun '%s --help' for usage.\n", program.c_str(), e.what(), program.c_str());
    return kExitUsage;
  }
  // JSON from the first line on when the command line asks for it (config errors too);
  // log.format in the file takes over once the config is read.
  bool json = log_format == "json";
  if (json) log::configure({"info", "json"});

  try {
    if (!log_level.empty()) overrides.push_back("log.level=" + log_level);
    if (!log_format.empty()) overrides.push_back("log.format=" + log_format);
    const config::Config config = config::loadConfig(config_path, overrides);
    if (print_config) {
      std::fputs(config::printConfig(config).c_str(), stdout);
      return kExitOk;
    }
    log::configure({config::toString(config.log.level), config::toString(config.log.format)});
    json = config.log.format == config::LogFormat::kJson;
    if (json) useJsonSignalMessages();
    // What this run was told, resolved, beside what it produced.
    telemetry::writeFileAtomically(config.run.output_dir + "/config-" + config::toString(role) + ".yaml",
                                   config::printConfig(config));
    g_shutdown_grace_seconds = static_cast<unsigned>(std::ceil(config.run.shutdown_grace_s));
    log::setLimiterOptions({static_cast<std::uint32_t>(config.limits.log_burst), 100,
                            std::chrono::milliseconds(static_cast<std::int64_t>(config.limits.log_interval_s * 1000)),
                            1024});
    installSignalHandlers();
    WatchdogThread watchdog(std::chrono::seconds(30));
    if (config.run.threads > 0) at::set_num_threads(config.run.threads);
    std::unique_ptr<telemetry::Metrics> metrics;  // standalone runs serve the edge's series too
    if (config.metrics.port > 0) {
      metrics = std::make_unique<telemetry::Metrics>(config::toString(role), config.metrics);
      log::get(role == Role::kEdge ? "edge.metrics" : "cloud.metrics")->info("metrics at {}", metrics->url());
    }
    if (role == Role::kEdge && standalone) {
      const auto summary = pipeline::runStandalone(config, g_stop, metrics.get());
      return summary.interrupted ? kExitInterrupted : kExitOk;
    }
    if (role == Role::kEdge) {
      pipeline::EdgeTrainer edge(config, pipeline::makeTransport(config, config::toString(role)), metrics.get(),
                                 resume);
      const auto summary = edge.run(g_stop, &g_abort);
      return summary.interrupted ? kExitInterrupted : kExitOk;
    }
    auto transport = pipeline::makeTransport(config, config::toString(role));
    pipeline::CloudTrainer cloud(config, std::move(transport), {keep_serving}, metrics.get());
    if (!endpoint_file.empty()) telemetry::writeFileAtomically(endpoint_file, cloud.endpoint() + "\n");
    switch (cloud.run(g_stop)) {
      case pipeline::CloudOutcome::kCompleted: return kExitOk;
      case pipeline::CloudOutcome::kInterrupted: return kExitInterrupted;
      case pipeline::CloudOutcome::kNoEdge:
        finalLine(program, json, spdlog::level::err,
                  fmt::format("error: no edge connected to {} within link.accept_timeout_s = {:g} s",
                              config.link.endpoint, config.link.accept_timeout_s));
        return kExitFailure;
      case pipeline::CloudOutcome::kEdgeStopped:
        finalLine(program, json, spdlog::level::warn,
                  "the edge stopped its run early (interrupted); summaries written");
        return kExitInterrupted;
      case pipeline::CloudOutcome::kDiverged:
        finalLine(program, json, spdlog::level::err,
                  "error: the edge's training diverged and its divergence guard stopped the run; summaries written");
        return kExitFailure;
      case pipeline::CloudOutcome::kFailed:
        finalLine(program, json, spdlog::level::err, "error: the edge went silent before its run completed");
        return kExitFailure;
    }
    return kExitFailure;
  } catch (const ConfigError& e) {
    finalLine(program, json, spdlog::level::err, std::string("config error: ") + e.what());
    return kExitUsage;
  } catch (const std::exception& e) {
    finalLine(program, json, spdlog::level::err, std::string("error: ") + e.what());
    return kExitFailure;
  }
}

}  // namespace tandem::app

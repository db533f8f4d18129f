// tandem_attack: hostile and broken peers against a running cloud_trainer, to test a
// deployment (and what tests/trainers/hostile_process_test.cpp runs). One attack per run,
// bounded by --count and --seconds; prints one summary line and exits 0 (2 on a bad
// command line or config, 1 when the attack could not run).
#include <CLI/CLI.hpp>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <string>

#include "runtime/common/error.h"
#include "runtime/config/config.h"
#include "trainers/attack/attacks.h"

namespace {

std::atomic<bool> g_stop{false};

extern "C" void onSignal(int /*signal*/) { g_stop = true; }

}  // namespace

int main(int argc, char** argv) {
  using namespace tandem;
  std::string attacks_help = "The attack:";
  for (const auto& name : attack::attackNames()) {
    attacks_help += "\n  " + name + " (default count " + std::to_string(attack::defaultCount(name)) +
                    "): " + attack::describeAttack(name);
  }
  CLI::App cli(
      "Tandem attack tool: hostile and broken peers against a running cloud_trainer (use only on a "
      "deployment you operate).",
      "tandem_attack");
  std::string endpoint;
  std::string name;
  std::int64_t count = 0;
  double seconds = 30.0;
  std::string config_path;
  std::string corpus = "tests/fuzz/corpus/protocol";
  cli.add_option("--endpoint", endpoint, "The cloud's endpoint, tcp://HOST:PORT")->required()->type_name("URL");
  cli.add_option("--attack", name, attacks_help)->required()->check(CLI::IsMember(attack::attackNames()));
  cli.add_option("--count", count, "How many (see each attack); 0: the attack's default")
      ->check(CLI::NonNegativeNumber);
  cli.add_option("--seconds", seconds, "Time budget: the attack ends (and lets go of held connections) by then")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cli.add_option("--config", config_path,
                 "The cloud's config: model, batch size, split and link.max_message_mb for valid messages (default: "
                 "the config defaults)")
      ->type_name("FILE");
  std::string source;
  cli.add_option("--source", source,
                 "Connect from this local IPv4 address (e.g. 127.0.0.2, to be another peer than an edge on "
                 "127.0.0.1 for the cloud's per-peer limits)")
      ->type_name("ADDR");
  cli.add_option("--corpus", corpus, "Protocol fuzz corpus for junk (random frames if missing)")
      ->type_name("DIR")
      ->capture_default_str();
  cli.footer(
      "Prints one line: tandem_attack: attack=NAME sent=N replies=N errors=N failed_sends=N "
      "leaked_fingerprint=0|1 seconds=S");
  try {
    cli.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return cli.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "tandem_attack: %s\nRun 'tandem_attack --help' for usage.\n", e.what());
    return 2;
  }
  attack::Target target;
  try {
    const auto config = config_path.empty() ? config::parseConfig("run: {name: tandem}\n", "(defaults)")
                                            : config::loadConfig(config_path);
    target = attack::makeTarget(config, endpoint);
    target.source = source;
  } catch (const ConfigError& e) {
    std::fprintf(stderr, "tandem_attack: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tandem_attack: error: %s\n", e.what());
    return 1;
  }
  std::signal(SIGINT, onSignal);
  std::signal(SIGTERM, onSignal);
  std::signal(SIGPIPE, SIG_IGN);  // a cloud that closes a raw connection is a result, not a crash
  try {
    const auto report = attack::runAttack(name, target, {count, seconds}, g_stop, corpus);
    std::printf("%s\n", attack::summaryLine(name, report).c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tandem_attack: error: %s\n", e.what());
    return 1;
  }
  return 0;
}

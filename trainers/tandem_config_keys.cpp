// Prints the config key table that README.md carries (generated from the schema,
// runtime/config/schema.h), or rewrites it in place between the README's markers.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <fstream>
#include <sstream>
#include <string>

#include "runtime/config/schema.h"
#include "runtime/telemetry/summary.h"

int main(int argc, char** argv) {
  CLI::App cli("Prints the Markdown table of every Tandem config key (type, default, allowed values, meaning).",
               "tandem_config_keys");
  std::string update;
  std::string check;
  cli.add_option("--update", update, "Replace the table between the config-keys markers in FILE (README.md)")
      ->type_name("FILE");
  cli.add_option("--check", check, "Exit 1 when FILE's table differs from the generated one")->type_name("FILE");
  CLI11_PARSE(cli, argc, argv);
  try {
    if (update.empty() && check.empty()) {
      std::fputs(tandem::config::keyTableMarkdown().c_str(), stdout);
      return 0;
    }
    const std::string path = update.empty() ? check : update;
    std::ifstream in(path);
    if (!in) {
      std::fprintf(stderr, "tandem_config_keys: cannot read '%s'\n", path.c_str());
      return 2;
    }
    std::stringstream text;
    text << in.rdbuf();
    const std::string readme = text.str();
    const std::string updated = tandem::config::replaceKeyTable(readme);
    if (!check.empty()) {
      if (updated == readme) return 0;
      std::fprintf(stderr, "tandem_config_keys: %s's key table is out of date; run tandem_config_keys --update %s\n",
                   path.c_str(), path.c_str());
      return 1;
    }
    if (updated != readme) tandem::telemetry::writeFileAtomically(path, updated);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tandem_config_keys: error: %s\n", e.what());
    return 1;
  }
}

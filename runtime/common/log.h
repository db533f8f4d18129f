#pragma once
// The logging facade. Every line carries a component tag ("edge.pipeline",
// "cloud.transport") so one process can host an edge and a cloud (tests) and a reader can
// filter by layer. Text lines go to stderr; `format = json` prints one JSON object per
// line for machine consumption.
//
// configure() is called once by a trainer's main; before that, loggers use the defaults
// (text, info). Loggers are thread-safe.

#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace tandem::log {

struct Options {
  std::string level = "info";   // trace | debug | info | warn | error
  std::string format = "text";  // text | json
};

// Sets the level and format of every logger, existing and future.
void configure(const Options& options);

// The logger for `component`, created on first use.
std::shared_ptr<spdlog::logger> get(const std::string& component);

}  // namespace tandem::log

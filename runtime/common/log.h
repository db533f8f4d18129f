#pragma once
// The logging facade. Every line carries a component tag ("edge.pipeline",
// "cloud.transport") so one process can host an edge and a cloud (tests) and a reader can
// filter by layer. Lines go to stderr.
//
// Two formats:
//   text  "10:31:02.123 info  [edge.standalone] epoch 1/3: train loss 0.4312 …" for humans;
//   json  one JSON object per line, for machines (`jq`, log shippers):
//         {"ts":"2026-12-01T10:31:02.123+0000","level":"info","component":"edge.standalone",
//          "msg":"epoch 1/3: train loss 0.4312 …","event":"epoch","epoch":1,"train_loss":0.4312,…}
//         "ts", "level", "component" and "msg" are on every line; "event" and the typed
//         fields only on lines logged with event(). A non-finite number is written as null.
//
// Plain logger calls (logger->info(...)) stay as they are; event() adds the numbers a
// machine wants as typed fields, while the text format prints the same human line as
// before.
//
// configure() is called once by a trainer's main; before that, loggers use the defaults
// (text, info). Loggers are thread-safe and synchronous: a line is formatted and written
// by the thread that logs it (event() relies on that).

#include <spdlog/spdlog.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

namespace tandem::log {

struct Options {
  std::string level = "info";   // trace | debug | info | warn | error
  std::string format = "text";  // text | json
};

// Sets the level and format of every logger, existing and future.
void configure(const Options& options);

// The options in force (the defaults before configure()).
Options options();

// True when lines are JSON objects (format json): writers that print to stderr themselves
// (progress bars) must not, and log events instead.
bool jsonFormat();

// The logger for `component`, created on first use.
std::shared_ptr<spdlog::logger> get(const std::string& component);

// One typed field of an event. Integers stay integers in JSON ("epoch":3), floating-point
// values are numbers ("loss":0.41, null when not finite), strings are escaped.
struct Field {
  using Value = std::variant<bool, std::int64_t, double, std::string>;

  template <typename T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>, int> = 0>
  Field(std::string k, T v) : key(std::move(k)), value(static_cast<std::int64_t>(v)) {}
  template <typename T, std::enable_if_t<std::is_floating_point_v<T>, int> = 0>
  Field(std::string k, T v) : key(std::move(k)), value(static_cast<double>(v)) {}
  Field(std::string k, bool v) : key(std::move(k)), value(v) {}
  Field(std::string k, std::string v) : key(std::move(k)), value(std::move(v)) {}
  Field(std::string k, const char* v) : key(std::move(k)), value(std::string(v)) {}

  std::string key;  // ts, level, component, msg and event are taken: such a field is dropped
  Value value;
};
using Fields = std::vector<Field>;

// Logs a structured event: `text` is the human line (all the text format prints); in the
// json format the line also carries "event": `name` and every field of `fields`, in order.
void event(spdlog::logger& logger, spdlog::level::level_enum level, std::string_view name, std::string_view text,
           const Fields& fields);

}  // namespace tandem::log

#include "runtime/common/log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <cmath>
#include <mutex>
#include <nlohmann/json.hpp>

namespace tandem::log {
namespace {

// The fields of the event being logged by this thread, already rendered as
// `,"key":value` members; empty for plain log calls. Set by event() around the logger
// call: loggers are synchronous, so the sink formats the line on this thread, in between.
thread_local const std::string* t_event_members = nullptr;

// Appends `text` as the body of a JSON string (quotes, backslashes and control characters
// escaped).
void appendEscaped(std::string_view text, spdlog::memory_buf_t& dest) {
  static const char* hex = "0123456789abcdef";
  for (char c : text) {
    switch (c) {
      case '"': dest.append(std::string_view("\\\"")); break;
      case '\\': dest.append(std::string_view("\\\\")); break;
      case '\n': dest.append(std::string_view("\\n")); break;
      case '\r': dest.append(std::string_view("\\r")); break;
      case '\t': dest.append(std::string_view("\\t")); break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          const char esc[] = {'\\', 'u', '0', '0', hex[(c >> 4) & 0xf], hex[c & 0xf]};
          dest.append(esc, esc + sizeof esc);
        } else {
          dest.push_back(c);
        }
    }
  }
}

// %* in the json pattern: the message as a JSON string body.
class JsonEscapedMessage final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    appendEscaped(std::string_view(msg.payload.data(), msg.payload.size()), dest);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<JsonEscapedMessage>(); }
};

// %& in the json pattern: the members of the event being logged (nothing for plain lines).
class EventMembers final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg&, const std::tm&, spdlog::memory_buf_t& dest) override {
    if (t_event_members != nullptr) dest.append(*t_event_members);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<EventMembers>(); }
};

struct State {
  std::mutex mutex;
  Options options;
  spdlog::sink_ptr sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
};

State& state() {
  static State s;
  return s;
}

std::unique_ptr<spdlog::formatter> makeFormatter(const Options& options) {
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  if (options.format == "json") {
    formatter->add_flag<JsonEscapedMessage>('*').add_flag<EventMembers>('&').set_pattern(
        R"({"ts":"%Y-%m-%dT%H:%M:%S.%e%z","level":"%l","component":"%n","msg":"%*"%&})");
  } else {
    formatter->set_pattern("%H:%M:%S.%e %^%-5l%$ [%n] %v");
  }
  return formatter;
}

void apply(spdlog::logger& logger, const Options& options) {
  logger.set_level(spdlog::level::from_str(options.level));
}

// `,"key":value` for one field; JSON text of strings is escaped (invalid UTF-8 replaced).
void appendMember(const Field& field, std::string& out) {
  const auto dump = [](const nlohmann::json& j) {
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  };
  out += ',';
  out += dump(field.key);
  out += ':';
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, double>) {
          out += std::isfinite(v) ? dump(v) : "null";
        } else {
          out += dump(v);
        }
      },
      field.value);
}

bool isReserved(std::string_view key) {
  return key == "ts" || key == "level" || key == "component" || key == "msg" || key == "event";
}

}  // namespace

void configure(const Options& options) {
  auto& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.options = options;
  s.sink->set_formatter(makeFormatter(options));
  spdlog::apply_all([&](const std::shared_ptr<spdlog::logger>& logger) { apply(*logger, options); });
}

Options options() {
  auto& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  return s.options;
}

bool jsonFormat() { return options().format == "json"; }

std::shared_ptr<spdlog::logger> get(const std::string& component) {
  auto& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (auto existing = spdlog::get(component)) return existing;
  static bool formatted = false;
  if (!formatted) {
    s.sink->set_formatter(makeFormatter(s.options));
    formatted = true;
  }
  auto logger = std::make_shared<spdlog::logger>(component, s.sink);
  apply(*logger, s.options);
  spdlog::register_logger(logger);
  return logger;
}

void event(spdlog::logger& logger, spdlog::level::level_enum level, std::string_view name, std::string_view text,
           const Fields& fields) {
  if (!logger.should_log(level)) return;
  if (!jsonFormat()) {
    logger.log(level, text);
    return;
  }
  std::string members;
  appendMember(Field("event", std::string(name)), members);
  for (const auto& field : fields) {
    if (!isReserved(field.key)) appendMember(field, members);
  }
  t_event_members = &members;
  try {
    logger.log(level, text);
  } catch (...) {
    t_event_members = nullptr;
    throw;
  }
  t_event_members = nullptr;
}

}  // namespace tandem::log

#include "runtime/common/log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <mutex>

namespace tandem::log {
namespace {

// Writes the message as a JSON string body (quotes, backslashes and control characters
// escaped), for `format: json`.
class JsonEscapedMessage final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    static const char* hex = "0123456789abcdef";
    for (char c : std::string_view(msg.payload.data(), msg.payload.size())) {
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
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<JsonEscapedMessage>(); }
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
    formatter->add_flag<JsonEscapedMessage>('*').set_pattern(
        R"({"time":"%Y-%m-%dT%H:%M:%S.%e%z","level":"%l","component":"%n","msg":"%*"})");
  } else {
    formatter->set_pattern("%H:%M:%S.%e %^%-5l%$ [%n] %v");
  }
  return formatter;
}

void apply(spdlog::logger& logger, const Options& options) {
  logger.set_level(spdlog::level::from_str(options.level));
}

}  // namespace

void configure(const Options& options) {
  auto& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.options = options;
  s.sink->set_formatter(makeFormatter(options));
  spdlog::apply_all([&](const std::shared_ptr<spdlog::logger>& logger) { apply(*logger, options); });
}

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

}  // namespace tandem::log

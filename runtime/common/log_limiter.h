#pragma once
// Rate limiting for log lines a peer can cause (rejected messages, lost sequences, refused
// handshakes), so that a hostile or broken peer cannot fill the disk through the log.
//
// Lines are grouped by (peer, reason). The first `burst` lines of a group are written in
// full; after that the group's lines are counted, and once per `interval` one line says
// how many were suppressed. Across all peers at most `global_burst` full lines of one
// reason are written per interval, so a peer that changes identity with every message is
// bounded too; the suppressed lines of unknown groups are summed under "other peers".
// Memory is bounded: at most `max_groups` groups are tracked.
//
// What is suppressed is only the log line: counters (metrics) are the callers' and stay
// exact.
//
// Threading: thread-safe (one mutex); lines are written by the calling thread.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include <spdlog/spdlog.h>

namespace tandem::log {

struct LimiterOptions {
  std::uint32_t burst = 10;          // full lines per (peer, reason) before counting
  std::uint32_t global_burst = 100;  // full lines per reason per interval, all peers together
  std::chrono::milliseconds interval{10000};
  std::size_t max_groups = 1024;
};

// The options limiters created from now on use (a trainer sets them from limits.log_*).
void setLimiterOptions(const LimiterOptions& options);
LimiterOptions limiterOptions();

class LogLimiter {
 public:
  explicit LogLimiter(std::shared_ptr<spdlog::logger> logger) : LogLimiter(std::move(logger), limiterOptions()) {}
  LogLimiter(std::shared_ptr<spdlog::logger> logger, LimiterOptions options);

  // Writes the line unless its group is over its budget (then counts it).
  template <typename... Args>
  void log(spdlog::level::level_enum level, const std::string& peer, const std::string& reason,
           fmt::format_string<Args...> format, Args&&... args) {
    if (!logger_->should_log(level)) return;
    if (admit(level, peer, reason)) logger_->log(level, format, std::forward<Args>(args)...);
  }

  // Writes the counter lines that are due; callers with a loop call it now and then so the
  // count of a flood that stopped still appears.
  void tick();

  // Lines suppressed so far, all groups (for tests).
  std::uint64_t suppressed() const;

 private:
  using Clock = std::chrono::steady_clock;
  struct Group {
    std::uint64_t total = 0;  // lines of this (peer, reason) so far
    Clock::time_point last_seen;
  };
  struct Reason {
    std::uint32_t full_this_interval = 0;
    Clock::time_point interval_start;
    std::uint64_t suppressed = 0;                // not written since the last counter line
    std::map<std::string, std::uint64_t> peers;  // a few of the peers suppressed, for the counter line
    bool more_peers = false;
    spdlog::level::level_enum level = spdlog::level::warn;
    Clock::time_point last_report;
  };

  bool admit(spdlog::level::level_enum level, const std::string& peer, const std::string& reason);
  void reportDue(Clock::time_point now);

  std::shared_ptr<spdlog::logger> logger_;
  const LimiterOptions options_;
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, std::string>, Group> groups_;  // (peer, reason)
  std::map<std::string, Reason> reasons_;
  std::uint64_t suppressed_total_ = 0;
};

}  // namespace tandem::log

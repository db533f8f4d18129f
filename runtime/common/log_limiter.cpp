#include "runtime/common/log_limiter.h"

#include <algorithm>

namespace tandem::log {

namespace {

constexpr std::size_t kPeersNamed = 3;  // peers a counter line names

std::mutex g_options_mutex;
LimiterOptions g_options;

}  // namespace

void setLimiterOptions(const LimiterOptions& options) {
  std::lock_guard<std::mutex> lock(g_options_mutex);
  g_options = options;
}

LimiterOptions limiterOptions() {
  std::lock_guard<std::mutex> lock(g_options_mutex);
  return g_options;
}

LogLimiter::LogLimiter(std::shared_ptr<spdlog::logger> logger, LimiterOptions options)
    : logger_(std::move(logger)), options_(options) {}

bool LogLimiter::admit(spdlog::level::level_enum level, const std::string& peer, const std::string& reason) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto now = Clock::now();
  reportDue(now);
  auto key = std::make_pair(peer, reason);
  if (!groups_.count(key) && groups_.size() >= options_.max_groups) {
    // Forget groups that have been quiet for a while; if none, share one group.
    for (auto it = groups_.begin(); it != groups_.end();) {
      it = now - it->second.last_seen > 3 * options_.interval ? groups_.erase(it) : std::next(it);
    }
    if (groups_.size() >= options_.max_groups) key.first = "other peers";
  }
  Group& group = groups_[key];
  ++group.total;
  group.last_seen = now;
  Reason& r = reasons_[reason];
  if (now - r.interval_start >= options_.interval) {
    r.interval_start = now;
    r.full_this_interval = 0;
  }
  if (group.total <= options_.burst && r.full_this_interval < options_.global_burst) {
    ++r.full_this_interval;
    return true;
  }
  if (r.suppressed == 0) r.last_report = now;  // the interval of this count starts now
  ++r.suppressed;
  r.level = level;
  ++suppressed_total_;
  if (r.peers.size() < kPeersNamed || r.peers.count(key.first)) {
    ++r.peers[key.first];
  } else {
    r.more_peers = true;
  }
  return false;
}

void LogLimiter::reportDue(Clock::time_point now) {
  for (auto& [reason, r] : reasons_) {
    if (r.suppressed == 0 || now - r.last_report < options_.interval) continue;
    std::string names;
    for (const auto& [peer, n] : r.peers) names += (names.empty() ? "" : ", ") + peer;
    const double seconds = std::chrono::duration<double>(now - r.last_report).count();
    logger_->log(r.level, "{} more '{}' line(s) suppressed in the last {:.0f} s (from {}{})", r.suppressed, reason,
                 seconds, names, r.more_peers ? " and others" : "");
    r.suppressed = 0;
    r.peers.clear();
    r.more_peers = false;
    r.last_report = now;
  }
}

void LogLimiter::tick() {
  std::lock_guard<std::mutex> lock(mutex_);
  reportDue(Clock::now());
}

std::uint64_t LogLimiter::suppressed() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return suppressed_total_;
}

}  // namespace tandem::log

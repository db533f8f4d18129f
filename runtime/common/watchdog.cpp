#include "runtime/common/watchdog.h"

#include <algorithm>
#include <mutex>

namespace tandem::watchdog {
namespace {

std::int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::mutex g_mutex;
std::vector<std::weak_ptr<State>> g_threads;

}  // namespace

void Handle::beat() {
  if (!state_) return;
  state_->last_ms.store(nowMs(), std::memory_order_relaxed);
  state_->beats.fetch_add(1, std::memory_order_relaxed);
}

Handle beat(const std::string& name) {
  auto state = std::make_shared<State>();
  state->name = name;
  Handle handle(state);
  handle.beat();
  std::lock_guard<std::mutex> lock(g_mutex);
  // Drop the entries of threads that ended, so the registry stays small.
  g_threads.erase(
      std::remove_if(g_threads.begin(), g_threads.end(), [](const std::weak_ptr<State>& w) { return w.expired(); }),
      g_threads.end());
  g_threads.push_back(state);
  return handle;
}

std::vector<Progress> progress() {
  const auto now = nowMs();
  std::vector<Progress> out;
  std::lock_guard<std::mutex> lock(g_mutex);
  for (const auto& weak : g_threads) {
    if (auto s = weak.lock()) {
      out.push_back({s->name, s->beats.load(std::memory_order_relaxed),
                     static_cast<double>(now - s->last_ms.load(std::memory_order_relaxed)) / 1000.0});
    }
  }
  return out;
}

std::vector<Progress> stalled(std::chrono::milliseconds threshold) {
  std::vector<Progress> out;
  for (auto& p : progress()) {
    if (p.seconds_since * 1000.0 > static_cast<double>(threshold.count())) out.push_back(std::move(p));
  }
  return out;
}

}  // namespace tandem::watchdog

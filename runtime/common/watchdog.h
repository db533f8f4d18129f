#pragma once
// Progress of the threads that must never stall (the compute thread, the transport's link
// and socket threads): each beats on every turn of its loop, and a checker — the
// trainer's watchdog thread, or a test — asks which have not beaten for a while. A thread
// that waits has a bounded wait in its loop, so a missing beat means it is stuck.
//
// Threading: beat() is lock-free; registration and the queries take a mutex.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tandem::watchdog {

struct State {
  std::string name;
  std::atomic<std::int64_t> last_ms{0};  // steady clock, milliseconds
  std::atomic<std::uint64_t> beats{0};
};

// A thread's registration: beats while it exists; unregistered when destroyed.
class Handle {
 public:
  Handle() = default;
  explicit Handle(std::shared_ptr<State> state) : state_(std::move(state)) {}
  void beat();
  explicit operator bool() const { return state_ != nullptr; }

 private:
  std::shared_ptr<State> state_;
};

// Registers a thread (names need not be unique) and beats once.
Handle beat(const std::string& name);

struct Progress {
  std::string name;
  std::uint64_t beats = 0;
  double seconds_since = 0.0;  // since its last beat
};

// Every registered thread.
std::vector<Progress> progress();

// Registered threads whose last beat is older than `threshold`.
std::vector<Progress> stalled(std::chrono::milliseconds threshold);

}  // namespace tandem::watchdog

#pragma once
// Fault injection as a frame socket wrapper: below the sequencing layer, so a dropped
// message spends its sequence number (the receiver sees a gap, as on a real loss) and a
// dropped heartbeat leaves the peer silent. Each Fault decides, message by message and
// direction by direction, whether it passes; the first that drops it wins. Faults:
//   OutageWindows  every message either way during [start, start + duration) seconds
//                  after the injector started (link.emulate.outages);
//   DropMessage    the n-th message (from 0; heartbeats not counted) sent or received;
//   LinkSwitch     every message either way while a test holds the link down.
// A new fault (corrupt, delay, duplicate) is one more Fault subclass; FaultAction is where
// its verdict would grow.
//
// Threading: as FrameSocket. Faults are called with the injector's lock held, so they need
// no locking of their own; LinkSwitch is flipped from any thread.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "runtime/transport/frame_socket.h"

namespace spdlog {
class logger;
}

namespace tandem::transport {

enum class Direction { kSend, kReceive };
enum class FaultAction { kPass, kDrop };

// Where a message is when a fault looks at it.
struct FaultPoint {
  Direction direction = Direction::kSend;
  double elapsed_s = 0.0;  // since the injector started
  // Non-heartbeat messages seen before this one in `direction`; heartbeats carry the
  // count of the next such message.
  std::uint64_t index = 0;
  // The message; null for an incoming one that failed validation (a Rejection).
  const Message* message = nullptr;

  bool heartbeat() const { return message && message->header.type == MessageType::kHeartbeat; }
};

class Fault {
 public:
  virtual ~Fault() = default;
  virtual FaultAction apply(const FaultPoint& at) = 0;
  // For the log: "outage windows [1.5, 2.1) s".
  virtual std::string describe() const = 0;
};

class OutageWindows final : public Fault {
 public:
  // (start_s, duration_s) pairs.
  explicit OutageWindows(std::vector<std::pair<double, double>> windows) : windows_(std::move(windows)) {}
  FaultAction apply(const FaultPoint& at) override;
  std::string describe() const override;
  bool downAt(double elapsed_s) const;

 private:
  std::vector<std::pair<double, double>> windows_;
};

class DropMessage final : public Fault {
 public:
  DropMessage(Direction direction, std::uint64_t index) : direction_(direction), index_(index) {}
  FaultAction apply(const FaultPoint& at) override;
  std::string describe() const override;

 private:
  Direction direction_;
  std::uint64_t index_;
};

class LinkSwitch final : public Fault {
 public:
  // A switch that can be flipped while the injector owns the fault.
  struct State {
    std::atomic<bool> down{false};
  };
  explicit LinkSwitch(std::shared_ptr<State> state) : state_(std::move(state)) {}
  FaultAction apply(const FaultPoint& at) override;
  std::string describe() const override { return "link switch"; }

 private:
  std::shared_ptr<State> state_;
};

class FaultInjector final : public FrameSocket {
 public:
  using Clock = std::chrono::steady_clock;

  FaultInjector(std::unique_ptr<FrameSocket> inner, std::vector<std::unique_ptr<Fault>> faults,
                std::string log_component = "transport", Clock::time_point start = Clock::now());

  // A dropped send is reported as sent (true): the link swallowed it.
  void send(Message message) override;
  bool trySend(Message message) override;
  // Dropped messages and rejections are not handed up; the timeout still holds.
  std::optional<Received> receive(std::chrono::milliseconds timeout) override;
  // The inner socket's, plus messages_dropped; what was dropped on receipt does not count
  // as received (bytes, messages or rejections), as if it never arrived.
  TransportStats stats() const override;
  bool binds() const override { return inner_->binds(); }
  std::string endpoint() const override { return inner_->endpoint(); }
  void close(std::chrono::milliseconds linger) override { inner_->close(linger); }

 private:
  // True when `message` is to be dropped; counts it.
  bool drops(Direction direction, const Message* message);  // message null: a Rejection

  std::unique_ptr<FrameSocket> inner_;
  std::vector<std::unique_ptr<Fault>> faults_;
  std::shared_ptr<spdlog::logger> log_;
  Clock::time_point start_;

  std::mutex mutex_;  // faults_ and the counters below
  std::uint64_t sent_index_ = 0;
  std::uint64_t received_index_ = 0;
  std::atomic<std::uint64_t> dropped_{0};
  std::atomic<std::uint64_t> dropped_in_bytes_{0};
  std::atomic<std::uint64_t> dropped_in_messages_{0};
  std::atomic<std::uint64_t> dropped_in_rejections_{0};
};

}  // namespace tandem::transport

#pragma once
// Link emulation as a transport wrapper: every message this side sends waits for its
// serialisation time on the emulated link (bytes × 8 / rate, at the rate the trace gives
// while it is on the wire), queues behind the messages before it, and is handed to the
// inner transport after half the round-trip time more. Each side shapes what it sends:
// the edge the uplink, the cloud the downlink, so one YAML file shapes both directions.
// Receiving is not delayed (the sender already paid). Heartbeats, generated inside the
// inner transport, are not shaped.
//
// Once the inner transport has failed (seen by receive(), or by the shaper thread handing
// a message on), send() throws its TransportError, as the Transport contract says.
//
// Threading: send()/receive() as for any Transport; a shaper thread owns the delay queue.

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "runtime/transport/bandwidth_trace.h"
#include "runtime/transport/transport.h"

namespace tandem::transport {

struct LinkShape {
  BandwidthTrace trace{0.0, 0.0};  // rates in Mbit/s; 0 means not shaped
  double rtt_ms = 0.0;
  bool uplink = true;  // which direction this side sends on
};

class LinkEmulator final : public Transport {
 public:
  using Clock = std::chrono::steady_clock;

  LinkEmulator(std::unique_ptr<Transport> inner, LinkShape shape, Clock::time_point start = Clock::now());
  ~LinkEmulator() override;

  void send(Message message) override;
  std::optional<Incoming> receive(std::chrono::milliseconds timeout) override;
  TransportStats stats() const override { return inner_->stats(); }
  std::string endpoint() const override { return inner_->endpoint(); }
  void close(std::chrono::milliseconds linger) override;

  // Current emulated rate of this side's direction, Mbit/s (0: unshaped).
  double currentMbps() const;

 private:
  struct Pending {
    Message message;
    Clock::time_point deliver_at;
  };
  void run();
  void noteFailure(const TransportError& e);  // with mutex_ held

  std::unique_ptr<Transport> inner_;
  LinkShape shape_;
  Clock::time_point start_;
  double link_free_s_ = 0.0;  // when the emulated wire finishes what is queued (trace time)

  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Pending> queue_;
  bool stopping_ = false;
  std::string failure_;  // what the inner transport threw; empty while it works
  std::thread thread_;
};

}  // namespace tandem::transport

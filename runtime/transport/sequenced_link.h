#pragma once
// Sequencing and liveness over any FrameSocket; this is what makes a frame socket a
// Transport. Per peer and direction it
//   - numbers what is sent (header.sequence from 0);
//   - checks what arrives: a sequence number below the expected one is a replay (or this
//     is not the peer we talk to) and is rejected with an Error; one above it means
//     messages were lost: they are counted (messages_lost) and a LinkEvent::kTrouble is
//     delivered before the message;
//   - answers the frame socket's Rejections (invalid messages) with a sequenced Error;
//   - drops what a peer sends beyond peer_messages_per_s (and tells it, once a second);
//   - sends a heartbeat when the peer has heard nothing from us for heartbeat_interval,
//     and swallows the peer's: heartbeats never reach the caller;
//   - watches the silence of every peer that sent a valid message: after peer_timeout a
//     kTrouble (only when reconnect_grace > 0), after peer_timeout + reconnect_grace the
//     peer is lost: a LinkEvent::kPeerLost on the binding side, a TransportError from
//     receive() and send() on the connecting side.
//
// Threading: a link thread reads the frame socket, keeps the timers and hands messages to
// a bounded queue; it never blocks on the caller. send() is serialised with the link
// thread's heartbeats and replies by a mutex, so sequence numbers leave in order.

#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "runtime/common/bounded_queue.h"
#include "runtime/common/log_limiter.h"
#include "runtime/common/watchdog.h"
#include "runtime/transport/frame_socket.h"

namespace spdlog {
class logger;
}

namespace tandem::transport {

struct SequencedLinkOptions {
  std::string log_component = "transport";
  std::chrono::milliseconds heartbeat_interval{1000};
  std::chrono::milliseconds peer_timeout{15000};
  // After peer_timeout of silence the peer is reported silent (a LinkEvent::kTrouble) and
  // only declared lost after this much more: a link outage shorter than the grace period
  // does not end the run.
  std::chrono::milliseconds reconnect_grace{0};
  std::size_t queue_capacity = 64;  // incoming messages and events waiting for receive()
  // Messages one peer may send per second (a token bucket holding one second's worth);
  // more are dropped and counted (messages_rate_limited), and the peer is told. 0: no limit.
  double peer_messages_per_s = 0.0;
};

class SequencedLink : public Transport {
 public:
  SequencedLink(std::unique_ptr<FrameSocket> socket, SequencedLinkOptions options);
  ~SequencedLink() override;
  SequencedLink(const SequencedLink&) = delete;
  SequencedLink& operator=(const SequencedLink&) = delete;

  void send(Message message) override;
  std::optional<Incoming> receive(std::chrono::milliseconds timeout) override;
  // The frame socket's, plus messages_lost; replays count as rejected, not received.
  TransportStats stats() const override;
  std::string endpoint() const override { return socket_->endpoint(); }
  void close(std::chrono::milliseconds linger) override;

 private:
  struct SendState {  // guarded by send_mutex_
    std::uint64_t next = 0;
    std::chrono::steady_clock::time_point last_sent;
  };
  struct Bucket {  // link thread only: a peer's message budget
    double tokens = 0.0;
    std::chrono::steady_clock::time_point refilled;
    std::chrono::steady_clock::time_point told;  // when the peer was last told it is over
  };
  struct ReceiveState {  // link thread only
    std::uint64_t next = 0;
    std::chrono::steady_clock::time_point last_heard;
    std::chrono::steady_clock::time_point known_since;  // its first valid message
    bool silent = false;                                // reported silent, within the reconnect grace
  };

  void run();
  bool withinRate(const std::string& peer, std::chrono::steady_clock::time_point now);
  void handle(Message message);
  void reject(const std::string& peer, ErrorCode code, const std::string& reason, std::optional<MessageType> type);
  void checkPeers();
  void flushControl();
  void deliver(Incoming item);
  void flushHeld();
  void fail(const std::string& why);
  void throwIfFailed() const;
  std::string key(const std::string& peer) const { return binds_ ? peer : std::string(); }

  std::unique_ptr<FrameSocket> socket_;
  const SequencedLinkOptions options_;
  const bool binds_;
  std::shared_ptr<spdlog::logger> log_;
  log::LogLimiter limited_;  // lines a peer can cause
  watchdog::Handle beat_;    // the link thread's
  const std::chrono::milliseconds tick_;

  BoundedQueue<Incoming> inbound_;
  std::deque<Incoming> held_;  // link thread only: waiting for room in inbound_

  std::mutex send_mutex_;
  std::map<std::string, SendState> out_;
  std::map<std::string, ReceiveState> in_;                 // link thread only: peers that sent a valid message
  std::map<std::string, Bucket> buckets_;                  // link thread only
  std::deque<Message> control_;                            // link thread only: Error replies not yet handed down
  std::deque<std::string> forget_;                         // link thread only: lost peers whose SendState to drop

  std::atomic<bool> stopping_{false};
  std::atomic<bool> closed_{false};
  mutable std::mutex failure_mutex_;
  std::string failure_;  // non-empty once the link failed (peer lost on the connecting side)

  std::atomic<std::uint64_t> lost_{0};
  std::atomic<std::uint64_t> replays_{0};
  std::atomic<std::uint64_t> rate_limited_{0};

  std::thread thread_;
};

}  // namespace tandem::transport

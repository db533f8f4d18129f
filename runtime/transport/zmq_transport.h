#pragma once
// The ZeroMQ transport. The cloud binds a ROUTER (one cloud, several edges), an edge
// connects a DEALER. One socket thread owns the socket: it sends what the compute thread
// queued, reads and validates incoming messages, answers invalid ones with an Error, sends
// heartbeats when a peer has heard nothing for heartbeat_interval, and declares a peer lost
// after peer_timeout of silence. Nothing else touches the socket.

#include <zmq.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime/common/bounded_queue.h"
#include "runtime/transport/transport.h"

namespace spdlog {
class logger;
}

namespace tandem::transport {

// CURVE encryption and authentication. The binding side (cloud) is the CURVE server and
// accepts only `authorized_keys` (checked by a ZAP handler on its own thread, before any
// message reaches the transport); the connecting side (edge) must know `server_key`.
struct CurveOptions {
  bool enabled = false;
  std::string public_key;  // Z85, this side
  std::string secret_key;  // Z85, this side
  std::string server_key;  // Z85, the cloud's public key (connecting side)
  std::vector<std::string> authorized_keys;  // Z85 (binding side)
};

struct ZmqOptions {
  enum class Mode { kBind, kConnect };
  Mode mode = Mode::kConnect;
  std::string endpoint;                  // tcp://host:port, tcp://127.0.0.1:* (ephemeral), inproc://name
  std::string log_component = "transport";
  Limits limits;
  std::chrono::milliseconds heartbeat_interval{1000};
  std::chrono::milliseconds peer_timeout{15000};
  std::size_t queue_capacity = 64;       // messages, each direction
  std::shared_ptr<zmq::context_t> context;  // share one for inproc://; null: a private context
  CurveOptions curve;
  // After peer_timeout of silence the peer is reported silent (a LinkEvent::kTrouble) and only declared lost after this much more: a link outage shorter
  // than the grace period does not end the run.
  std::chrono::milliseconds reconnect_grace{0};
  // Fault injection (link.emulate.outages): during each [start, start + duration) seconds
  // after the transport starts, every frame sent or received is dropped, heartbeats too.
  std::vector<std::pair<double, double>> outages;
};

class ZmqTransport final : public Transport {
 public:
  // Binds or connects before returning; throws TransportError when that fails (address in
  // use, bad endpoint).
  explicit ZmqTransport(ZmqOptions options);
  ~ZmqTransport() override;
  ZmqTransport(const ZmqTransport&) = delete;
  ZmqTransport& operator=(const ZmqTransport&) = delete;

  void send(Message message) override;
  std::optional<Incoming> receive(std::chrono::milliseconds timeout) override;
  TransportStats stats() const override;
  void close(std::chrono::milliseconds linger) override;

  // The endpoint actually bound (resolves tcp://127.0.0.1:* to the chosen port).
  std::string endpoint() const override { return endpoint_; }

 private:
  struct PeerState {
    std::uint64_t next_out = 0;
    std::uint64_t next_in = 0;
    std::chrono::steady_clock::time_point last_heard;
    std::chrono::steady_clock::time_point last_sent;
    bool known = false;  // has sent a valid message; gets heartbeats, can be lost
    bool silent = false;  // reported silent, within the reconnect grace
    std::uint64_t rejected = 0;
  };

  void run(std::promise<std::string> ready);
  void pumpOutbound(zmq::socket_t& socket);
  bool sendNow(zmq::socket_t& socket, Message& message);
  void receiveAvailable(zmq::socket_t& socket);
  void handleIncoming(std::vector<zmq::message_t>& frames);
  void reject(zmq::socket_t& socket, const std::string& peer, ErrorCode code, const std::string& reason,
              MessageType type);
  void checkPeers(zmq::socket_t& socket);
  void wake();
  void runZap(std::promise<void>& ready);  // the ZAP handler (CURVE server only)
  void onMonitorEvent(std::vector<zmq::message_t>& frames);
  bool linkDown() const;  // inside an injected outage

  ZmqOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  std::shared_ptr<zmq::context_t> context_;
  std::string endpoint_;
  int wake_fd_ = -1;

  BoundedQueue<Message> outbound_;
  BoundedQueue<Incoming> inbound_;
  std::deque<Message> pending_;  // socket thread only: dequeued, not yet accepted by ZeroMQ
  std::map<std::string, PeerState> peers_;  // socket thread only
  zmq::socket_t* socket_ = nullptr;         // socket thread only

  std::atomic<bool> stopping_{false};
  std::atomic<bool> closed_{false};
  std::chrono::milliseconds linger_{0};
  mutable std::mutex failure_mutex_;
  std::string failure_;  // non-empty once the transport failed (peer lost on the edge)

  std::atomic<std::uint64_t> bytes_sent_{0};
  std::atomic<std::uint64_t> bytes_received_{0};
  std::atomic<std::uint64_t> messages_sent_{0};
  std::atomic<std::uint64_t> messages_received_{0};
  std::atomic<std::uint64_t> messages_rejected_{0};

  std::thread thread_;
  std::thread zap_thread_;
  std::atomic<bool> zap_stopping_{false};
  std::atomic<std::uint64_t> refused_{0};
  std::atomic<std::uint64_t> lost_{0};     // sequence gaps: messages that never arrived
  std::atomic<std::uint64_t> dropped_{0};  // dropped by an injected outage
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

}  // namespace tandem::transport

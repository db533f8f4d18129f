#pragma once
// The ZeroMQ frame socket. The cloud binds a ROUTER (one cloud, several edges), an edge
// connects a DEALER. One socket thread owns the socket: it sends what callers queued,
// reads and validates incoming messages (handing invalid ones up as Rejections), and
// watches the socket monitor for failed security handshakes. Nothing else touches the
// socket; callers and the socket thread meet at two bounded queues.
//
// With CURVE the binding side is the CURVE server and runs a ZapHandler (zap_handler.h)
// that accepts only the authorized keys; the connecting side must know the server's key.

#include <zmq.hpp>

#include <atomic>
#include <chrono>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime/common/bounded_queue.h"
#include "runtime/transport/frame_socket.h"
#include "runtime/transport/zap_handler.h"

namespace spdlog {
class logger;
}

namespace tandem::transport {

// CURVE encryption and authentication. The binding side (cloud) is the CURVE server and
// accepts only `authorized_keys` (checked by a ZAP handler on its own thread, before any
// message reaches the transport); the connecting side (edge) must know `server_key`.
struct CurveOptions {
  bool enabled = false;
  std::string public_key;                    // Z85, this side
  std::string secret_key;                    // Z85, this side
  std::string server_key;                    // Z85, the cloud's public key (connecting side)
  std::vector<std::string> authorized_keys;  // Z85 (binding side)
};

struct ZmqSocketOptions {
  enum class Mode { kBind, kConnect };
  Mode mode = Mode::kConnect;
  std::string endpoint;  // tcp://host:port, tcp://127.0.0.1:* (ephemeral), inproc://name
  std::string log_component = "transport";
  Limits limits;                            // what incoming messages may be (larger frames are cut off by ZeroMQ)
  std::size_t queue_capacity = 64;          // messages, each direction
  std::shared_ptr<zmq::context_t> context;  // share one for inproc://; null: a private context
  CurveOptions curve;
};

class ZmqFrameSocket final : public FrameSocket {
 public:
  // Binds or connects before returning; throws TransportError when that fails (address in
  // use, bad endpoint, a second CURVE server on one context).
  explicit ZmqFrameSocket(ZmqSocketOptions options);
  ~ZmqFrameSocket() override;
  ZmqFrameSocket(const ZmqFrameSocket&) = delete;
  ZmqFrameSocket& operator=(const ZmqFrameSocket&) = delete;

  void send(Message message) override;
  bool trySend(Message message) override;
  std::optional<Received> receive(std::chrono::milliseconds timeout) override;
  TransportStats stats() const override;
  bool binds() const override { return options_.mode == ZmqSocketOptions::Mode::kBind; }
  // The endpoint actually bound (resolves tcp://127.0.0.1:* to the chosen port), or the
  // one connected to.
  std::string endpoint() const override { return endpoint_; }
  void close(std::chrono::milliseconds linger) override;

 private:
  void run(std::promise<std::string> ready);
  void pumpOutbound(zmq::socket_t& socket);
  bool sendNow(zmq::socket_t& socket, Message& message);
  void receiveAvailable(zmq::socket_t& socket);
  void onMonitorEvent(std::vector<zmq::message_t>& frames);
  void fail(const std::string& why);
  void throwIfFailed() const;
  void wake();

  ZmqSocketOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  std::shared_ptr<zmq::context_t> context_;
  std::unique_ptr<ZapHandler> zap_;  // CURVE server only
  std::string endpoint_;
  int wake_fd_ = -1;

  BoundedQueue<Message> outbound_;
  BoundedQueue<Received> inbound_;
  std::deque<Message> pending_;  // socket thread only: dequeued, not yet accepted by ZeroMQ

  std::atomic<bool> stopping_{false};
  std::atomic<bool> closed_{false};
  std::chrono::milliseconds linger_{0};
  mutable std::mutex failure_mutex_;
  std::string failure_;  // non-empty once the socket failed

  std::atomic<std::uint64_t> bytes_sent_{0};
  std::atomic<std::uint64_t> bytes_received_{0};
  std::atomic<std::uint64_t> messages_sent_{0};
  std::atomic<std::uint64_t> messages_received_{0};
  std::atomic<std::uint64_t> messages_rejected_{0};
  std::atomic<std::uint64_t> refused_{0};

  std::thread thread_;
};

}  // namespace tandem::transport

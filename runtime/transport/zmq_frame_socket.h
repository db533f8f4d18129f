#pragma once
// The ZeroMQ frame socket. The cloud binds a ROUTER (one cloud, several edges), an edge
// connects a DEALER. One socket thread owns the socket: it sends what callers queued,
// reads and validates incoming messages (handing invalid ones up as Rejections), and
// watches the socket monitor for failed security handshakes. Nothing else touches the
// socket; callers and the socket thread meet at two bounded queues. The socket thread never
// blocks on either (no cycle of waits with the caller): what does not fit in the inbound
// queue waits in ZeroMQ, and on the binding side a peer that does not read has its
// messages dropped past limits.peer_queue_messages rather than holding up anyone else.
//
// With CURVE the binding side is the CURVE server and runs a ZapHandler (zap_handler.h)
// that accepts only the authorized keys; the connecting side must know the server's key.

#include <zmq.hpp>

#include <atomic>
#include <chrono>
#include <deque>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime/common/bounded_queue.h"
#include "runtime/common/log_limiter.h"
#include "runtime/common/watchdog.h"
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
  std::size_t queue_capacity = 64;          // messages, each direction, between callers and the socket thread
  // Binding side: messages waiting for one peer that does not read. More are dropped
  // (counted in messages_overflowed) so that one stuck peer never holds up the others or
  // the caller. The connecting side has one peer: there a full queue blocks send().
  std::size_t peer_queue_messages = 256;
  std::uint64_t peer_queue_bytes = std::uint64_t{64} << 20;  // and at most this many bytes
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
  // Moves what callers queued to the peers' queues and sends what ZeroMQ takes; true when
  // something is still waiting.
  bool pumpOutbound(zmq::socket_t& socket);
  bool sendNow(zmq::socket_t& socket, Message& message);
  void receiveAvailable(zmq::socket_t& socket);
  void receiveOne(zmq::socket_t& socket, zmq::message_t& first);
  void onMonitorEvent(std::vector<zmq::message_t>& frames);
  void fail(const std::string& why);
  void throwIfFailed() const;
  void wake();

  ZmqSocketOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  log::LogLimiter limited_;  // lines a peer can cause
  watchdog::Handle beat_;    // the socket thread's
  std::shared_ptr<zmq::context_t> context_;
  std::unique_ptr<ZapHandler> zap_;  // CURVE server only
  std::string endpoint_;
  int wake_fd_ = -1;

  BoundedQueue<Message> outbound_;
  BoundedQueue<Received> inbound_;
  // Socket thread only: dequeued, not yet accepted by ZeroMQ, by peer (routing id).
  struct PeerQueue {
    std::deque<Message> messages;
    std::uint64_t bytes = 0;
  };
  std::map<std::string, PeerQueue> pending_;
  std::size_t pending_count_ = 0;

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
  std::atomic<std::uint64_t> overflowed_{0};

  std::thread thread_;
};

}  // namespace tandem::transport

#include "runtime/transport/zmq_frame_socket.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <zmq_addon.hpp>

#include <algorithm>
#include <cstring>

#include "runtime/common/log.h"
#include "runtime/common/log_limiter.h"

namespace tandem::transport {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kHighWaterMark = 32;

}  // namespace

ZmqFrameSocket::ZmqFrameSocket(ZmqSocketOptions options)
    : options_(std::move(options)),
      log_(log::get(options_.log_component)),
      limited_(log_),
      beat_(watchdog::beat(options_.log_component + " socket")),
      outbound_(options_.queue_capacity),
      inbound_(options_.queue_capacity) {
  context_ = options_.context ? options_.context : std::make_shared<zmq::context_t>(1);
  // The ZAP handler must be bound before the socket accepts connections.
  if (options_.curve.enabled && binds())
    zap_ = std::make_unique<ZapHandler>(*context_, options_.curve.authorized_keys, log_);
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) throw TransportError("cannot create an eventfd for the socket thread");
  std::promise<std::string> ready;
  auto result = ready.get_future();
  thread_ = std::thread([this, p = std::move(ready)]() mutable { run(std::move(p)); });
  try {
    endpoint_ = result.get();
  } catch (...) {
    thread_.join();
    ::close(wake_fd_);
    throw;
  }
}

ZmqFrameSocket::~ZmqFrameSocket() {
  close(std::chrono::milliseconds(0));
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void ZmqFrameSocket::wake() {
  const std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
}

void ZmqFrameSocket::throwIfFailed() const {
  std::lock_guard<std::mutex> lock(failure_mutex_);
  if (!failure_.empty()) throw TransportError(failure_);
}

void ZmqFrameSocket::fail(const std::string& why) {
  std::lock_guard<std::mutex> lock(failure_mutex_);
  if (!failure_.empty()) return;
  failure_ = why;
  inbound_.close();
}

void ZmqFrameSocket::send(Message message) {
  throwIfFailed();
  if (closed_ || !outbound_.push(std::move(message))) throw TransportError("transport is closed");
  wake();
}

bool ZmqFrameSocket::trySend(Message message) {
  throwIfFailed();
  if (closed_) throw TransportError("transport is closed");
  if (!outbound_.tryPush(std::move(message))) return false;
  wake();
  return true;
}

std::optional<Received> ZmqFrameSocket::receive(std::chrono::milliseconds timeout) {
  auto received = inbound_.pop(timeout);
  if (received) return received;
  throwIfFailed();
  return std::nullopt;
}

TransportStats ZmqFrameSocket::stats() const {
  TransportStats s;
  s.bytes_sent = bytes_sent_;
  s.bytes_received = bytes_received_;
  s.messages_sent = messages_sent_;
  s.messages_received = messages_received_;
  s.messages_rejected = messages_rejected_;
  s.connections_refused = refused_;
  s.messages_overflowed = overflowed_;
  return s;
}

void ZmqFrameSocket::close(std::chrono::milliseconds linger) {
  if (closed_.exchange(true)) {
    if (thread_.joinable()) thread_.join();
    return;
  }
  linger_ = linger;
  stopping_ = true;
  wake();
  if (thread_.joinable()) thread_.join();
  zap_.reset();
  outbound_.close();
  inbound_.close();
}

void ZmqFrameSocket::run(std::promise<std::string> ready) {
  const bool bind = binds();
  const auto& curve = options_.curve;
  zmq::socket_t socket;
  zmq::socket_t monitor;
  try {
    socket = zmq::socket_t(*context_, bind ? zmq::socket_type::router : zmq::socket_type::dealer);
    socket.set(zmq::sockopt::linger, 0);
    // ZeroMQ drops the connection of a peer that sends a bigger frame, before allocating it.
    const auto largest = std::max(options_.limits.max_tensor_bytes, options_.limits.max_header_bytes);
    socket.set(zmq::sockopt::maxmsgsize, static_cast<std::int64_t>(largest));
    socket.set(zmq::sockopt::sndhwm, kHighWaterMark);
    socket.set(zmq::sockopt::rcvhwm, kHighWaterMark);
    if (curve.enabled) {
      if (bind) {
        socket.set(zmq::sockopt::curve_server, true);
        socket.set(zmq::sockopt::curve_secretkey, curve.secret_key);
        socket.set(zmq::sockopt::zap_domain, ZapHandler::kDomain);
      } else {
        socket.set(zmq::sockopt::curve_serverkey, curve.server_key);
        socket.set(zmq::sockopt::curve_publickey, curve.public_key);
        socket.set(zmq::sockopt::curve_secretkey, curve.secret_key);
      }
    }
    // Watch failed handshakes (a refused key, CURVE against plaintext) to report them.
    const std::string monitor_endpoint =
        "inproc://tandem-monitor-" + std::to_string(reinterpret_cast<std::uintptr_t>(this));
    zmq_socket_monitor(
        socket.handle(), monitor_endpoint.c_str(),
        ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL);
    monitor = zmq::socket_t(*context_, zmq::socket_type::pair);
    monitor.set(zmq::sockopt::linger, 0);
    monitor.connect(monitor_endpoint);
    std::string endpoint = options_.endpoint;
    if (bind) {
      socket.set(zmq::sockopt::router_mandatory, 1);
      socket.bind(options_.endpoint);
      endpoint = socket.get(zmq::sockopt::last_endpoint);
    } else {
      // Exponential back-off while the cloud is not up yet: 100 ms doubling to 2 s.
      socket.set(zmq::sockopt::reconnect_ivl, 100);
      socket.set(zmq::sockopt::reconnect_ivl_max, 2000);
      socket.connect(options_.endpoint);
    }
    ready.set_value(endpoint);
  } catch (const zmq::error_t& e) {
    ready.set_exception(std::make_exception_ptr(TransportError(std::string("cannot ") + (bind ? "bind" : "connect") +
                                                               " '" + options_.endpoint + "': " + e.what())));
    return;
  }

  while (!stopping_) {
    try {
      beat_.beat();
      const bool backlog = pumpOutbound(socket);
      short events = 0;
      if (!inbound_.full()) events |= ZMQ_POLLIN;
      // A DEALER's POLLOUT says its peer has room. A ROUTER's says only that some peer has,
      // which may not be one we wait for: with a backlog there, look again soon instead.
      if (backlog && !binds()) events |= ZMQ_POLLOUT;
      const auto wait = backlog && binds() ? std::chrono::milliseconds(2) : std::chrono::milliseconds(50);
      zmq::pollitem_t items[] = {
          {socket.handle(), 0, events, 0}, {nullptr, wake_fd_, ZMQ_POLLIN, 0}, {monitor.handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, 3, wait);
      if (items[2].revents & ZMQ_POLLIN) {
        std::vector<zmq::message_t> event;
        if (zmq::recv_multipart(monitor, std::back_inserter(event), zmq::recv_flags::dontwait)) onMonitorEvent(event);
      }
      if (items[1].revents & ZMQ_POLLIN) {
        std::uint64_t count;
        [[maybe_unused]] auto n = ::read(wake_fd_, &count, sizeof count);
      }
      if (items[0].revents & ZMQ_POLLIN) receiveAvailable(socket);
    } catch (const std::exception& e) {
      // A failure here is a bug or a broken socket: report it to the caller.
      log_->error("socket thread failed: {}", e.what());
      fail(std::string("transport failed: ") + e.what());
      break;
    }
  }

  // Flush what is queued for up to the linger time, then let ZeroMQ do the same.
  const auto deadline = Clock::now() + linger_;
  try {
    while (Clock::now() < deadline) {
      if (!pumpOutbound(socket) && outbound_.size() == 0) break;
      zmq::pollitem_t items[] = {{socket.handle(), 0, ZMQ_POLLOUT, 0}};
      zmq::poll(items, 1, std::chrono::milliseconds(10));
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    socket.set(zmq::sockopt::linger, static_cast<int>(std::max<std::int64_t>(0, left.count())));
  } catch (const std::exception& e) {
    log_->debug("while flushing at close: {}", e.what());
  }
  pending_.clear();
  zmq_socket_monitor(socket.handle(), nullptr, 0);
  monitor.close();
  socket.close();
}

void ZmqFrameSocket::onMonitorEvent(std::vector<zmq::message_t>& frames) {
  if (frames.size() < 2 || frames[0].size() < 6) return;
  std::uint16_t event = 0;
  std::uint32_t value = 0;
  std::memcpy(&event, frames[0].data(), 2);
  std::memcpy(&value, static_cast<const char*>(frames[0].data()) + 2, 4);
  const std::string where = frames[1].to_string();
  ++refused_;
  std::string what;
  if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
    what = binds() ? "a peer's CURVE key is not authorized (see security.authorized_keys)"
                   : "the cloud refused this edge's CURVE key: add its public key to the cloud's "
                     "security.authorized_keys";
  } else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL && value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH) {
    what = "security mismatch: one side uses CURVE, the other plaintext (security.mode must match)";
  } else {
    char detail[96];
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) {
      std::snprintf(detail, sizeof detail, "connection closed: %s", std::strerror(static_cast<int>(value)));
    } else {
      std::snprintf(detail, sizeof detail, "protocol error 0x%08x", value);
    }
    what = std::string("security handshake failed (") + detail +
           "): check that security.mode matches the other side's and that security.cloud_public_key_file is "
           "the cloud's key";
  }
  limited_.log(spdlog::level::warn, where, what, "{} ({})", what, where);
  // The binding side serves other peers; the connecting side has no other.
  if (!binds()) fail(what + " at " + options_.endpoint);
}

bool ZmqFrameSocket::pumpOutbound(zmq::socket_t& socket) {
  const bool many = binds();
  // The connecting side takes from the callers' queue only while its one peer's queue has
  // room (that is its back-pressure); the binding side always empties it, so one peer that
  // does not read can never make a caller wait.
  while (many || pending_count_ < options_.peer_queue_messages) {
    auto m = outbound_.tryPop();
    if (!m) break;
    auto& queue = pending_[many ? m->peer : std::string()];
    const auto bytes = wireBytes(*m);
    if (many &&
        (queue.messages.size() >= options_.peer_queue_messages || queue.bytes + bytes > options_.peer_queue_bytes)) {
      ++overflowed_;
      limited_.log(spdlog::level::warn, peerName(m->peer), "send queue full",
                   "{} is not reading: {} messages ({:.1f} MB) wait for it (limits.peer_queue_messages, "
                   "limits.peer_queue_mb); dropped {}",
                   peerName(m->peer), queue.messages.size(), static_cast<double>(queue.bytes) / 1048576.0,
                   messageTypeName(m->header.type));
      continue;
    }
    queue.bytes += bytes;
    queue.messages.push_back(std::move(*m));
    ++pending_count_;
  }
  for (auto it = pending_.begin(); it != pending_.end();) {
    auto& queue = it->second;
    while (!queue.messages.empty() && sendNow(socket, queue.messages.front())) {
      queue.bytes -= std::min(queue.bytes, wireBytes(queue.messages.front()));
      queue.messages.pop_front();
      --pending_count_;
    }
    it = queue.messages.empty() ? pending_.erase(it) : std::next(it);
  }
  return pending_count_ > 0;
}

bool ZmqFrameSocket::sendNow(zmq::socket_t& socket, Message& message) {
  const std::string header = encodeHeaderFrame(message.header, message.body);
  const bool more = !message.payloads.empty();
  std::uint64_t bytes = header.size();
  for (const auto& p : message.payloads) bytes += p.size();
  // Counted before the header frame goes (and taken back if it does not), so a peer that
  // has the message never sees stats without it: a message with no payloads is whole the
  // moment its header frame is accepted.
  bool counted = false;
  const auto count = [&](bool sent) {
    if (sent == counted) return;
    counted = sent;
    if (sent) {
      bytes_sent_ += bytes;
      ++messages_sent_;
    } else {
      bytes_sent_ -= bytes;
      --messages_sent_;
    }
  };
  try {
    if (binds()) {
      zmq::message_t id(message.peer.data(), message.peer.size());
      if (!socket.send(id, zmq::send_flags::sndmore | zmq::send_flags::dontwait)) return false;
      count(true);
      // Once the identity frame is accepted, ZeroMQ takes the whole message.
      socket.send(zmq::buffer(header), more ? zmq::send_flags::sndmore : zmq::send_flags::none);
    } else {
      count(true);
      if (!socket.send(zmq::buffer(header),
                       (more ? zmq::send_flags::sndmore : zmq::send_flags::none) | zmq::send_flags::dontwait)) {
        count(false);
        return false;
      }
    }
  } catch (const zmq::error_t& e) {
    count(false);
    if (e.num() == EHOSTUNREACH) {
      log_->debug("dropped {} for {}: peer is gone", messageTypeName(message.header.type), peerName(message.peer));
      return true;
    }
    throw;
  }
  for (std::size_t i = 0; i < message.payloads.size(); ++i) {
    socket.send(message.payloads[i],
                i + 1 < message.payloads.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
  }
  return true;
}

void ZmqFrameSocket::receiveAvailable(zmq::socket_t& socket) {
  // The socket thread is the only producer, so a queue that is not full takes the push.
  for (int i = 0; i < 64 && !inbound_.full(); ++i) {
    zmq::message_t first;
    if (!socket.recv(first, zmq::recv_flags::dontwait)) return;
    receiveOne(socket, first);
  }
}

namespace {

// Who sent `frame` beyond its connection: the CURVE key the ZAP handler accepted, or the
// TCP address.
std::string originOf(const zmq::message_t& frame) {
  const auto property = [&](const char* name) -> std::string {
    const char* value = zmq_msg_gets(const_cast<zmq_msg_t*>(frame.handle()), name);
    return value == nullptr ? std::string() : std::string(value);
  };
  if (auto key = property("User-Id"); !key.empty()) return "key:" + key;
  if (auto address = property("Peer-Address"); !address.empty()) return "ip:" + address;
  return "local";
}

}  // namespace

void ZmqFrameSocket::receiveOne(zmq::socket_t& socket, zmq::message_t& first) {
  std::string peer;
  std::vector<zmq::message_t> frames;
  bool more = first.more();
  if (binds()) {
    peer = first.to_string();
  } else {
    frames.push_back(std::move(first));
  }
  // ZeroMQ delivers a multipart message whole, so its other frames are here already. Only
  // as many as a valid message can have are kept: a message of 100 000 frames costs the
  // time to skip them, not the memory.
  const std::size_t max_frames = std::size_t{options_.limits.max_tensors} + 1;  // header + payloads
  std::uint64_t skipped = 0;
  std::uint64_t skipped_bytes = 0;
  while (more) {
    zmq::message_t frame;
    if (!socket.recv(frame, zmq::recv_flags::dontwait)) break;
    more = frame.more();
    if (frames.size() < max_frames) {
      frames.push_back(std::move(frame));
    } else {
      ++skipped;
      skipped_bytes += frame.size();
    }
  }
  const std::string origin = frames.empty() ? std::string("local") : originOf(frames.front());
  Received received = [&]() -> Received {
    if (skipped == 0) return decodeReceived(std::move(peer), frames, options_.limits);
    std::uint64_t bytes = skipped_bytes;
    for (const auto& f : frames) bytes += f.size();
    return Rejection{
        std::move(peer), ErrorCode::kTooLarge,
        "message of " + std::to_string(frames.size() + skipped) + " frames; at most " + std::to_string(max_frames),
        std::nullopt, bytes};
  }();
  if (auto* rejected = std::get_if<Rejection>(&received)) {
    bytes_received_ += rejected->wire_bytes;
    ++messages_rejected_;
  } else {
    auto& message = std::get<Message>(received);
    message.origin = origin;
    bytes_received_ += message.wire_bytes;
    ++messages_received_;
  }
  inbound_.tryPush(std::move(received));
}

}  // namespace tandem::transport

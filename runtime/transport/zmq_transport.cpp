#include "runtime/transport/zmq_transport.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <zmq_addon.hpp>

#include <algorithm>
#include <array>
#include <cstring>

#include "runtime/common/log.h"
#include "runtime/transport/message_parser.h"

namespace tandem::transport {
namespace {

using Clock = std::chrono::steady_clock;

// Printable form of a ROUTER routing id (binary by default).
std::string peerName(const std::string& id) {
  if (id.empty()) return "peer";
  static const char* hex = "0123456789abcdef";
  std::string out = "peer-";
  for (unsigned char c : id) {
    out += hex[c >> 4];
    out += hex[c & 0xf];
  }
  return out;
}

constexpr std::size_t kMaxTrackedPeers = 4096;
constexpr int kHighWaterMark = 32;

}  // namespace

ZmqTransport::ZmqTransport(ZmqOptions options)
    : options_(std::move(options)),
      log_(log::get(options_.log_component)),
      outbound_(options_.queue_capacity),
      inbound_(options_.queue_capacity) {
  context_ = options_.context ? options_.context : std::make_shared<zmq::context_t>(1);
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) throw TransportError("cannot create an eventfd for the socket thread");
  std::promise<std::string> ready;
  auto result = ready.get_future();
  thread_ = std::thread([this, p = std::move(ready)]() mutable { run(std::move(p)); });
  try {
    endpoint_ = result.get();
  } catch (...) {
    thread_.join();
    zap_stopping_ = true;
    if (zap_thread_.joinable()) zap_thread_.join();
    ::close(wake_fd_);
    throw;
  }
}

ZmqTransport::~ZmqTransport() {
  close(std::chrono::milliseconds(0));
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void ZmqTransport::wake() {
  const std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
}

void ZmqTransport::send(Message message) {
  {
    std::lock_guard<std::mutex> lock(failure_mutex_);
    if (!failure_.empty()) throw TransportError(failure_);
  }
  if (closed_ || !outbound_.push(std::move(message))) throw TransportError("transport is closed");
  wake();
}

std::optional<Incoming> ZmqTransport::receive(std::chrono::milliseconds timeout) {
  auto message = inbound_.pop(timeout);
  if (message) return message;
  std::lock_guard<std::mutex> lock(failure_mutex_);
  if (!failure_.empty()) throw TransportError(failure_);
  return std::nullopt;
}

TransportStats ZmqTransport::stats() const {
  TransportStats s;
  s.bytes_sent = bytes_sent_;
  s.bytes_received = bytes_received_;
  s.messages_sent = messages_sent_;
  s.messages_received = messages_received_;
  s.messages_rejected = messages_rejected_;
  s.connections_refused = refused_;
  s.messages_lost = lost_;
  s.messages_dropped = dropped_;
  return s;
}

void ZmqTransport::close(std::chrono::milliseconds linger) {
  if (closed_.exchange(true)) {
    if (thread_.joinable()) thread_.join();
    return;
  }
  linger_ = linger;
  stopping_ = true;
  wake();
  if (thread_.joinable()) thread_.join();
  zap_stopping_ = true;
  if (zap_thread_.joinable()) zap_thread_.join();
  outbound_.close();
  inbound_.close();
}

void ZmqTransport::run(std::promise<std::string> ready) {
  const bool bind = options_.mode == ZmqOptions::Mode::kBind;
  const auto& curve = options_.curve;
  zmq::socket_t socket;
  zmq::socket_t monitor;
  try {
    if (curve.enabled && bind) {
      // The ZAP handler must be bound before the socket accepts connections.
      std::promise<void> zap_ready;
      auto zap_bound = zap_ready.get_future();
      zap_thread_ = std::thread([this, p = std::move(zap_ready)]() mutable { runZap(p); });
      zap_bound.get();  // throws when the handler could not bind
    }
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
        socket.set(zmq::sockopt::zap_domain, "tandem");
      } else {
        socket.set(zmq::sockopt::curve_serverkey, curve.server_key);
        socket.set(zmq::sockopt::curve_publickey, curve.public_key);
        socket.set(zmq::sockopt::curve_secretkey, curve.secret_key);
      }
    }
    // Watch failed handshakes (a refused key, CURVE against plaintext) to report them.
    const std::string monitor_endpoint = "inproc://tandem-monitor-" + std::to_string(reinterpret_cast<std::uintptr_t>(this));
    zmq_socket_monitor(socket.handle(), monitor_endpoint.c_str(),
                       ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                           ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL);
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
    ready.set_exception(std::make_exception_ptr(TransportError(
        std::string("cannot ") + (bind ? "bind" : "connect") + " '" + options_.endpoint + "': " + e.what())));
    return;
  }
  socket_ = &socket;

  while (!stopping_) {
    try {
      pumpOutbound(socket);
      short events = 0;
      if (!inbound_.full()) events |= ZMQ_POLLIN;
      if (!pending_.empty()) events |= ZMQ_POLLOUT;
      zmq::pollitem_t items[] = {{socket.handle(), 0, events, 0},
                                 {nullptr, wake_fd_, ZMQ_POLLIN, 0},
                                 {monitor.handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, 3, std::chrono::milliseconds(50));
      if (items[2].revents & ZMQ_POLLIN) {
        std::vector<zmq::message_t> event;
        if (zmq::recv_multipart(monitor, std::back_inserter(event), zmq::recv_flags::dontwait)) onMonitorEvent(event);
      }
      if (items[1].revents & ZMQ_POLLIN) {
        std::uint64_t count;
        [[maybe_unused]] auto n = ::read(wake_fd_, &count, sizeof count);
      }
      if (items[0].revents & ZMQ_POLLIN) receiveAvailable(socket);
      checkPeers(socket);
    } catch (const std::exception& e) {
      // A failure here is a bug or a broken socket: report it to the compute thread.
      log_->error("socket thread failed: {}", e.what());
      std::lock_guard<std::mutex> lock(failure_mutex_);
      failure_ = std::string("transport failed: ") + e.what();
      inbound_.close();
      break;
    }
  }

  // Flush what is queued for up to the linger time, then let ZeroMQ do the same.
  const auto deadline = Clock::now() + linger_;
  try {
    while (Clock::now() < deadline) {
      pumpOutbound(socket);
      if (pending_.empty() && outbound_.size() == 0) break;
      zmq::pollitem_t items[] = {{socket.handle(), 0, ZMQ_POLLOUT, 0}};
      zmq::poll(items, 1, std::chrono::milliseconds(10));
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    socket.set(zmq::sockopt::linger, static_cast<int>(std::max<std::int64_t>(0, left.count())));
  } catch (const std::exception& e) {
    log_->debug("while flushing at close: {}", e.what());
  }
  pending_.clear();
  socket_ = nullptr;
  zmq_socket_monitor(socket.handle(), nullptr, 0);
  monitor.close();
  socket.close();
}

void ZmqTransport::onMonitorEvent(std::vector<zmq::message_t>& frames) {
  if (frames.size() < 2 || frames[0].size() < 6) return;
  std::uint16_t event = 0;
  std::uint32_t value = 0;
  std::memcpy(&event, frames[0].data(), 2);
  std::memcpy(&value, static_cast<const char*>(frames[0].data()) + 2, 4);
  const std::string where = frames[1].to_string();
  ++refused_;
  std::string what;
  if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
    what = options_.mode == ZmqOptions::Mode::kBind
               ? "a peer's CURVE key is not authorized (see security.authorized_keys)"
               : "the cloud refused this edge's CURVE key: add its public key to the cloud's security.authorized_keys";
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
  log_->warn("{} ({})", what, where);
  if (options_.mode == ZmqOptions::Mode::kConnect) {
    std::lock_guard<std::mutex> lock(failure_mutex_);
    if (failure_.empty()) {
      failure_ = what + " at " + options_.endpoint;
      inbound_.close();
    }
  }
}

void ZmqTransport::runZap(std::promise<void>& ready) {
  zmq::socket_t handler;
  try {
    handler = zmq::socket_t(*context_, zmq::socket_type::rep);
    handler.set(zmq::sockopt::linger, 0);
    handler.bind("inproc://zeromq.zap.01");
  } catch (const zmq::error_t& e) {
    ready.set_exception(std::make_exception_ptr(e));
    return;
  }
  ready.set_value();
  std::vector<std::string> allowed;
  for (const auto& key : options_.curve.authorized_keys) {
    std::string binary(32, '\0');
    if (zmq_z85_decode(reinterpret_cast<std::uint8_t*>(binary.data()), key.c_str())) allowed.push_back(binary);
  }
  while (!zap_stopping_) {
    zmq::pollitem_t items[] = {{handler.handle(), 0, ZMQ_POLLIN, 0}};
    zmq::poll(items, 1, std::chrono::milliseconds(100));
    if (!(items[0].revents & ZMQ_POLLIN)) continue;
    std::vector<zmq::message_t> request;
    if (!zmq::recv_multipart(handler, std::back_inserter(request))) continue;
    // version, request id, domain, address, identity, mechanism, credentials...
    std::string status = "400";
    std::string text = "refused";
    std::string user;
    if (request.size() >= 7 && request[5].to_string() == "CURVE" && request[6].size() == 32) {
      const std::string key = request[6].to_string();
      char z85[41] = {0};
      zmq_z85_encode(z85, reinterpret_cast<const std::uint8_t*>(key.data()), 32);
      user = z85;
      if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) {
        status = "200";
        text = "OK";
      } else {
        log_->warn("refused a CURVE connection from {}: key {} is not in security.authorized_keys",
                   request[3].to_string(), z85);
        text = "key not authorized";
      }
    }
    const std::string request_id = request.size() > 1 ? request[1].to_string() : std::string();
    std::array<zmq::const_buffer, 6> reply = {zmq::str_buffer("1.0"), zmq::buffer(request_id), zmq::buffer(status),
                                              zmq::buffer(text),        zmq::buffer(user),       zmq::const_buffer()};
    zmq::send_multipart(handler, reply);
  }
}

void ZmqTransport::pumpOutbound(zmq::socket_t& socket) {
  while (auto m = outbound_.tryPop()) pending_.push_back(std::move(*m));
  while (!pending_.empty()) {
    if (!sendNow(socket, pending_.front())) return;  // would block: wait for POLLOUT
    pending_.pop_front();
  }
}

bool ZmqTransport::linkDown() const {
  if (options_.outages.empty()) return false;
  const double t = std::chrono::duration<double>(Clock::now() - started_).count();
  for (const auto& [start, duration] : options_.outages) {
    if (t >= start && t < start + duration) return true;
  }
  return false;
}

bool ZmqTransport::sendNow(zmq::socket_t& socket, Message& message) {
  const bool bind = options_.mode == ZmqOptions::Mode::kBind;
  PeerState& peer = peers_[message.peer];
  message.header.sequence = peer.next_out;
  if (linkDown()) {
    // The emulated link swallows it; the sequence number is spent, as on a real loss.
    ++peer.next_out;
    ++dropped_;
    return true;
  }
  const std::string header = encodeHeaderFrame(message.header, message.body);
  const bool more = !message.payloads.empty();
  try {
    if (bind) {
      zmq::message_t id(message.peer.data(), message.peer.size());
      if (!socket.send(id, zmq::send_flags::sndmore | zmq::send_flags::dontwait)) return false;
      socket.send(zmq::buffer(header), more ? zmq::send_flags::sndmore : zmq::send_flags::none);
    } else {
      if (!socket.send(zmq::buffer(header), (more ? zmq::send_flags::sndmore : zmq::send_flags::none) |
                                                zmq::send_flags::dontwait)) {
        return false;
      }
    }
  } catch (const zmq::error_t& e) {
    if (e.num() == EHOSTUNREACH) {
      log_->debug("dropped {} for {}: peer is gone", messageTypeName(message.header.type), peerName(message.peer));
      return true;
    }
    throw;
  }
  std::uint64_t bytes = header.size();
  for (std::size_t i = 0; i < message.payloads.size(); ++i) {
    bytes += message.payloads[i].size();
    socket.send(message.payloads[i],
                i + 1 < message.payloads.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
  }
  ++peer.next_out;
  peer.last_sent = Clock::now();
  bytes_sent_ += bytes;
  ++messages_sent_;
  return true;
}

void ZmqTransport::receiveAvailable(zmq::socket_t& socket) {
  for (int i = 0; i < 64 && !inbound_.full(); ++i) {
    std::vector<zmq::message_t> frames;
    if (!zmq::recv_multipart(socket, std::back_inserter(frames), zmq::recv_flags::dontwait)) return;
    if (linkDown()) {
      ++dropped_;
      continue;
    }
    handleIncoming(frames);
  }
}

void ZmqTransport::handleIncoming(std::vector<zmq::message_t>& frames) {
  const bool bind = options_.mode == ZmqOptions::Mode::kBind;
  std::string peer_id;
  std::size_t first = 0;
  if (bind) {
    peer_id = frames.front().to_string();
    first = 1;
  }
  if (peers_.size() >= kMaxTrackedPeers && !peers_.count(peer_id)) {
    // Forget peers that never sent a valid message, so a flood of identities is bounded.
    for (auto it = peers_.begin(); it != peers_.end();) {
      it = it->second.known ? std::next(it) : peers_.erase(it);
    }
  }
  PeerState& peer = peers_[peer_id];
  if (peer.silent) {
    log_->info("{} is heard again after {:.1f} s", peerName(peer_id),
               std::chrono::duration<double>(Clock::now() - peer.last_heard).count());
    peer.silent = false;
  }
  peer.last_heard = Clock::now();
  std::uint64_t bytes = 0;
  for (std::size_t i = first; i < frames.size(); ++i) bytes += frames[i].size();
  bytes_received_ += bytes;

  zmq::socket_t& socket = *socket_;
  if (frames.size() <= first) {
    reject(socket, peer_id, ErrorCode::kMalformed, "message without a header frame", MessageType::kHeartbeat);
    return;
  }
  DecodedHeader decoded;
  try {
    std::vector<FrameView> views;
    for (std::size_t i = first; i < frames.size(); ++i) views.push_back({frames[i].data(), frames[i].size()});
    decoded = parseFrames(views, options_.limits);
  } catch (const WireError& e) {
    // A header that decoded names the message type, so an Error never answers an Error.
    MessageType type = MessageType::kHeartbeat;
    try {
      type = decodeHeaderFrame(frames[first].data(), frames[first].size(), options_.limits).header.type;
    } catch (const WireError&) {
    }
    reject(socket, peer_id, e.code(), e.what(), type);
    return;
  }
  const Header& h = decoded.header;
  const std::size_t payloads = frames.size() - first - 1;
  if (h.sequence < peer.next_in) {
    // Replayed or reordered: ZeroMQ over one connection never reorders, so this is not
    // the peer we are talking to.
    reject(socket, peer_id, ErrorCode::kUnexpected,
           std::string(messageTypeName(h.type)) + " has sequence " + std::to_string(h.sequence) + ", expected " +
               std::to_string(peer.next_in) + " or later",
           h.type);
    return;
  }
  if (h.sequence > peer.next_in) {
    // Messages were lost (a link outage): count them and carry on; the pipelines re-send
    // what matters.
    const auto missing = h.sequence - peer.next_in;
    lost_ += missing;
    log_->warn("{}: {} message(s) lost before {} (sequence {})", peerName(peer_id), missing,
               messageTypeName(h.type), h.sequence);
    inbound_.push(LinkEvent{LinkEvent::Kind::kTrouble, peer_id});
  }
  peer.next_in = h.sequence + 1;
  peer.known = true;
  ++messages_received_;
  if (h.type == MessageType::kHeartbeat) return;

  Message message;
  message.header = std::move(decoded.header);
  message.body = std::move(decoded.body);
  message.peer = std::move(peer_id);
  message.wire_bytes = bytes;
  message.received_at = steadySeconds();
  message.payloads.reserve(payloads);
  for (std::size_t i = first + 1; i < frames.size(); ++i) message.payloads.push_back(std::move(frames[i]));
  inbound_.push(std::move(message));
}

void ZmqTransport::reject(zmq::socket_t& socket, const std::string& peer_id, ErrorCode code, const std::string& reason,
                          MessageType type) {
  ++messages_rejected_;
  PeerState& peer = peers_[peer_id];
  ++peer.rejected;
  // Log the first few rejections of a peer, then every hundredth, so a flood cannot drown
  // the log.
  if (peer.rejected <= 10 || peer.rejected % 100 == 0) {
    log_->warn("rejected a message from {} ({} so far): {}: {}", peerName(peer_id), peer.rejected,
               errorCodeName(code), reason);
  }
  if (type == MessageType::kError) return;  // never answer an error with an error
  Message reply(MessageType::kError, ErrorInfo{code, reason});
  reply.peer = peer_id;
  try {
    sendNow(socket, reply);
  } catch (const zmq::error_t& e) {
    log_->debug("could not send an error reply to {}: {}", peerName(peer_id), e.what());
  }
}

void ZmqTransport::checkPeers(zmq::socket_t& socket) {
  const auto now = Clock::now();
  for (auto it = peers_.begin(); it != peers_.end();) {
    PeerState& peer = it->second;
    if (!peer.known) {
      ++it;
      continue;
    }
    if (now - peer.last_heard > options_.peer_timeout && !peer.silent &&
        options_.reconnect_grace > std::chrono::milliseconds(0)) {
      peer.silent = true;
      log_->warn("{} silent for {:.1f} s: waiting up to {:.1f} s more for the link to come back", peerName(it->first),
                 std::chrono::duration<double>(now - peer.last_heard).count(),
                 std::chrono::duration<double>(options_.reconnect_grace).count());
      inbound_.push(LinkEvent{LinkEvent::Kind::kTrouble, it->first});
    }
    if (now - peer.last_heard > options_.peer_timeout + options_.reconnect_grace) {
      const double seconds = std::chrono::duration<double>(now - peer.last_heard).count();
      if (options_.mode == ZmqOptions::Mode::kBind) {
        log_->warn("{} silent for {:.1f} s: considered gone", peerName(it->first), seconds);
        inbound_.push(LinkEvent{LinkEvent::Kind::kPeerLost, it->first});
        it = peers_.erase(it);
        continue;
      }
      std::lock_guard<std::mutex> lock(failure_mutex_);
      if (failure_.empty()) {
        failure_ = "no message from the cloud at " + options_.endpoint + " for " + std::to_string(seconds).substr(0, 4) +
                   " s (link.peer_timeout_s = " +
                   std::to_string(std::chrono::duration<double>(options_.peer_timeout).count()).substr(0, 4) +
                   ", link.reconnect_grace_s = " +
                   std::to_string(std::chrono::duration<double>(options_.reconnect_grace).count()).substr(0, 4) +
                   "): the cloud is gone or the link is down";
        log_->error("{}", failure_);
        inbound_.close();
      }
      ++it;
      continue;
    }
    if (now - peer.last_sent > options_.heartbeat_interval && pending_.empty()) {
      Message beat(MessageType::kHeartbeat, std::monostate{});
      beat.peer = it->first;
      sendNow(socket, beat);
    }
    ++it;
  }
}

}  // namespace tandem::transport

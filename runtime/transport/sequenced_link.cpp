#include "runtime/transport/sequenced_link.h"

#include <algorithm>

#include "runtime/common/log.h"

namespace tandem::transport {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t kMaxControl = 64;           // Error replies waiting; older ones are dropped
constexpr std::size_t kMaxTrackedPeers = 4096;    // send states of peers that never sent a valid message

std::string seconds(std::chrono::milliseconds ms) {
  return std::to_string(std::chrono::duration<double>(ms).count()).substr(0, 4);
}

// Often enough to keep heartbeats and timeouts within a few percent, rarely enough to idle.
std::chrono::milliseconds tickFor(const SequencedLinkOptions& o) {
  const auto shortest = std::min(o.heartbeat_interval, o.peer_timeout);
  return std::clamp(shortest / 4, std::chrono::milliseconds(1), std::chrono::milliseconds(50));
}

}  // namespace

SequencedLink::SequencedLink(std::unique_ptr<FrameSocket> socket, SequencedLinkOptions options)
    : socket_(std::move(socket)),
      options_(std::move(options)),
      binds_(socket_->binds()),
      log_(log::get(options_.log_component)),
      limited_(log_),
      tick_(tickFor(options_)),
      inbound_(options_.queue_capacity) {
  thread_ = std::thread([this] {
    beat_ = watchdog::beat(options_.log_component + " link");
    run();
  });
}

SequencedLink::~SequencedLink() { close(std::chrono::milliseconds(0)); }

void SequencedLink::throwIfFailed() const {
  std::lock_guard<std::mutex> lock(failure_mutex_);
  if (!failure_.empty()) throw TransportError(failure_);
}

void SequencedLink::fail(const std::string& why) {
  std::lock_guard<std::mutex> lock(failure_mutex_);
  if (!failure_.empty()) return;
  failure_ = why;
  log_->error("{}", why);
  inbound_.close();  // wakes a waiting receive(), which then throws
}

void SequencedLink::send(Message message) {
  throwIfFailed();
  if (closed_) throw TransportError("transport is closed");
  std::lock_guard<std::mutex> lock(send_mutex_);
  auto& out = out_[key(message.peer)];
  message.header.sequence = out.next;
  try {
    socket_->send(std::move(message));
  } catch (const TransportError&) {
    throwIfFailed();  // the reason, when there is one
    throw;
  }
  ++out.next;
  out.last_sent = Clock::now();
}

std::optional<Incoming> SequencedLink::receive(std::chrono::milliseconds timeout) {
  auto item = inbound_.pop(timeout);
  if (item) return item;
  throwIfFailed();
  return std::nullopt;
}

TransportStats SequencedLink::stats() const {
  TransportStats s = socket_->stats();
  const std::uint64_t replays = replays_;
  s.messages_lost += lost_;
  s.messages_rejected += replays;
  s.messages_received -= std::min(s.messages_received, replays);
  s.messages_rate_limited += rate_limited_;
  return s;
}

void SequencedLink::close(std::chrono::milliseconds linger) {
  if (closed_.exchange(true)) return;
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
  socket_->close(linger);
  inbound_.close();
}

void SequencedLink::run() {
  while (!stopping_) {
    beat_.beat();
    limited_.tick();
    flushHeld();
    bool failed;
    {
      std::lock_guard<std::mutex> lock(failure_mutex_);
      failed = !failure_.empty();
    }
    if (held_.empty() && !failed) {
      try {
        if (auto received = socket_->receive(tick_)) {
          if (auto* message = std::get_if<Message>(&*received)) {
            handle(std::move(*message));
          } else {
            auto& r = std::get<Rejection>(*received);
            // Even an invalid message shows that a known peer is there.
            if (auto it = in_.find(key(r.peer)); it != in_.end()) it->second.last_heard = Clock::now();
            reject(key(r.peer), r.code, r.reason, r.type);
          }
        }
      } catch (const TransportError& e) {
        fail(e.what());
      } catch (const std::exception& e) {
        fail(std::string("transport failed: ") + e.what());
      }
    } else {
      // The caller is behind (or the link failed): keep the timers, read nothing.
      std::this_thread::sleep_for(std::min(tick_, std::chrono::milliseconds(5)));
    }
    checkPeers();
    flushControl();
  }
}

void SequencedLink::deliver(Incoming item) { held_.push_back(std::move(item)); }

void SequencedLink::flushHeld() {
  // Only this thread pushes, so the queue never blocks it: what does not fit waits here
  // (at most the events and message of one receipt) while the timers keep running.
  while (!held_.empty()) {
    if (!inbound_.tryPush(std::move(held_.front()))) {
      std::lock_guard<std::mutex> lock(failure_mutex_);
      if (!failure_.empty()) held_.clear();  // nobody will read it
      return;
    }
    held_.pop_front();
  }
}

bool SequencedLink::withinRate(const std::string& peer, Clock::time_point now) {
  const double rate = options_.peer_messages_per_s;
  if (rate <= 0.0) return true;
  if (buckets_.size() >= kMaxTrackedPeers && !buckets_.count(peer)) {
    // Forget the buckets of peers we do not talk to (a flood of identities).
    for (auto it = buckets_.begin(); it != buckets_.end();)
      it = in_.count(it->first) ? std::next(it) : buckets_.erase(it);
  }
  auto [it, fresh] = buckets_.try_emplace(peer);
  Bucket& b = it->second;
  if (fresh) {
    b.tokens = rate;
    b.refilled = now;
  }
  b.tokens = std::min(rate, b.tokens + rate * std::chrono::duration<double>(now - b.refilled).count());
  b.refilled = now;
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    return true;
  }
  ++rate_limited_;
  limited_.log(spdlog::level::warn, peerName(peer), "over the message rate",
               "{} sends more than {:.0f} messages/s (limits.peer_messages_per_s): dropping", peerName(peer), rate);
  if (now - b.told >= std::chrono::seconds(1)) {
    b.told = now;
    if (control_.size() >= kMaxControl) control_.pop_front();
    Message reply(MessageType::kError,
                  ErrorInfo{ErrorCode::kTooLarge, "over the cloud's message rate (limits.peer_messages_per_s = " +
                                                      std::to_string(static_cast<long>(rate)) + "): messages dropped"});
    reply.peer = peer;
    control_.push_back(std::move(reply));
  }
  return false;
}

void SequencedLink::handle(Message message) {
  const auto now = Clock::now();
  const std::string peer = key(message.peer);
  auto it = in_.find(peer);
  if (it != in_.end()) {
    if (it->second.silent) {
      limited_.log(spdlog::level::info, peerName(peer), "heard again", "{} is heard again after {:.1f} s",
                   peerName(peer), std::chrono::duration<double>(now - it->second.last_heard).count());
      it->second.silent = false;
    }
    it->second.last_heard = now;
  }
  const Header& h = message.header;
  const std::uint64_t expected = it == in_.end() ? 0 : it->second.next;
  if (h.sequence < expected) {
    // Replayed or reordered: no frame socket reorders one peer's messages, so this is not
    // the peer we are talking to.
    ++replays_;
    reject(peer, ErrorCode::kUnexpected,
           std::string(messageTypeName(h.type)) + " has sequence " + std::to_string(h.sequence) + ", expected " +
               std::to_string(expected) + " or later",
           h.type);
    return;
  }
  if (h.type != MessageType::kHeartbeat && !withinRate(peer, now)) {
    // Dropped here, but its number is used: the pipelines notice what is missing.
    if (it != in_.end()) it->second.next = h.sequence + 1;
    return;
  }
  if (h.sequence > expected) {
    // Messages were lost (a link outage): count them and carry on; the pipelines re-send
    // what matters.
    const auto missing = h.sequence - expected;
    lost_ += missing;
    limited_.log(spdlog::level::warn, peerName(peer), "messages lost", "{}: {} message(s) lost before {} (sequence {})",
                 peerName(peer), missing, messageTypeName(h.type), h.sequence);
    deliver(LinkEvent{LinkEvent::Kind::kTrouble, message.peer});
  }
  if (it == in_.end()) {
    it = in_.emplace(peer, ReceiveState{}).first;
    it->second.known_since = now;
  }
  auto& state = it->second;
  state.next = h.sequence + 1;
  state.last_heard = now;
  if (h.type == MessageType::kHeartbeat) return;
  deliver(std::move(message));
}

void SequencedLink::reject(const std::string& peer, ErrorCode code, const std::string& reason,
                           std::optional<MessageType> type) {
  limited_.log(spdlog::level::warn, peerName(peer), std::string("rejected: ") + errorCodeName(code),
               "rejected a message from {}: {}: {}", peerName(peer), errorCodeName(code), reason);
  if (type == MessageType::kError) return;  // never answer an error with an error
  if (control_.size() >= kMaxControl) control_.pop_front();
  Message reply(MessageType::kError, ErrorInfo{code, reason});
  reply.peer = peer;
  control_.push_back(std::move(reply));
}

void SequencedLink::checkPeers() {
  const auto now = Clock::now();
  for (auto it = in_.begin(); it != in_.end();) {
    ReceiveState& state = it->second;
    const auto silence = now - state.last_heard;
    if (silence > options_.peer_timeout && !state.silent && options_.reconnect_grace > std::chrono::milliseconds(0)) {
      state.silent = true;
      limited_.log(spdlog::level::warn, peerName(it->first), "peer silent",
                   "{} silent for {:.1f} s: waiting up to {:.1f} s more for the link to come back", peerName(it->first),
                   std::chrono::duration<double>(silence).count(),
                   std::chrono::duration<double>(options_.reconnect_grace).count());
      deliver(LinkEvent{LinkEvent::Kind::kTrouble, it->first});
    }
    if (silence > options_.peer_timeout + options_.reconnect_grace) {
      const double silent_s = std::chrono::duration<double>(silence).count();
      if (binds_) {
        limited_.log(spdlog::level::warn, peerName(it->first), "peer gone", "{} silent for {:.1f} s: considered gone",
                     peerName(it->first), silent_s);
        deliver(LinkEvent{LinkEvent::Kind::kPeerLost, it->first});
        forget_.push_back(it->first);
        buckets_.erase(it->first);
        it = in_.erase(it);
        continue;
      }
      // The connecting side has one peer: without it there is nothing left to do.
      fail("no message from the cloud at " + socket_->endpoint() + " for " + std::to_string(silent_s).substr(0, 4) +
           " s (link.peer_timeout_s = " + seconds(options_.peer_timeout) + ", link.reconnect_grace_s = " +
           seconds(options_.reconnect_grace) + "): the cloud is gone or the link is down");
      in_.clear();
      return;
    }
    ++it;
  }
}

void SequencedLink::flushControl() {
  // Never wait for a caller blocked in send(): its message tells the peer we are alive, and
  // what is left here goes out on a later tick.
  std::unique_lock<std::mutex> lock(send_mutex_, std::try_to_lock);
  if (!lock.owns_lock()) return;
  for (const auto& peer : forget_) out_.erase(peer);
  forget_.clear();
  if (out_.size() > kMaxTrackedPeers) {
    // Forget peers we only answered (invalid messages), so a flood of identities is bounded.
    for (auto it = out_.begin(); it != out_.end();) it = in_.count(it->first) ? std::next(it) : out_.erase(it);
  }
  const auto now = Clock::now();
  try {
    while (!control_.empty()) {
      auto& out = out_[control_.front().peer];
      Message reply = copyMessage(control_.front());
      reply.header.sequence = out.next;
      if (!socket_->trySend(std::move(reply))) return;  // full: try again next tick
      ++out.next;
      out.last_sent = now;
      control_.pop_front();
    }
    for (const auto& known : in_) {
      const std::string& peer = known.first;
      auto& out = out_[peer];
      // Silence is counted from when the peer appeared, not from the epoch.
      if (now - std::max(out.last_sent, known.second.known_since) <= options_.heartbeat_interval) continue;
      Message beat(MessageType::kHeartbeat, std::monostate{});
      beat.peer = peer;
      beat.header.sequence = out.next;
      if (!socket_->trySend(std::move(beat))) return;  // a backlog: the peer will hear it
      ++out.next;
      out.last_sent = now;
    }
  } catch (const TransportError& e) {
    // Closed or failed underneath: receive() reports it.
    log_->debug("not sending control messages: {}", e.what());
    control_.clear();
  }
}

}  // namespace tandem::transport

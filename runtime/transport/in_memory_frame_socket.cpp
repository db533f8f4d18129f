#include "runtime/transport/in_memory_frame_socket.h"

#include <atomic>

#include "runtime/common/bounded_queue.h"
#include "runtime/common/log.h"

namespace tandem::transport {

struct InMemoryHub::Inbox {
  struct Delivery {
    std::string from;  // the sender's peer id (empty from the cloud)
    std::vector<zmq::message_t> frames;
  };
  explicit Inbox(std::size_t capacity) : queue(capacity) {}
  BoundedQueue<Delivery> queue;
};

// One end of the hub: the cloud's (binds) or an edge's.
class InMemoryEnd final : public FrameSocket {
 public:
  InMemoryEnd(std::shared_ptr<InMemoryHub> hub, bool binds, std::string id, std::shared_ptr<InMemoryHub::Inbox> inbox)
      : hub_(std::move(hub)),
        binds_(binds),
        id_(std::move(id)),
        inbox_(std::move(inbox)),
        log_(log::get("transport.memory")) {}
  ~InMemoryEnd() override { close(std::chrono::milliseconds(0)); }

  void send(Message message) override { deliver(std::move(message), true); }
  bool trySend(Message message) override { return deliver(std::move(message), false); }

  std::optional<Received> receive(std::chrono::milliseconds timeout) override {
    auto delivery = inbox_->queue.pop(timeout);
    if (!delivery) return std::nullopt;
    Received received = decodeReceived(std::move(delivery->from), delivery->frames, hub_->options().limits);
    if (const auto* rejected = std::get_if<Rejection>(&received)) {
      bytes_received_ += rejected->wire_bytes;
      ++messages_rejected_;
    } else {
      bytes_received_ += std::get<Message>(received).wire_bytes;
      ++messages_received_;
    }
    return received;
  }

  TransportStats stats() const override {
    TransportStats s;
    s.bytes_sent = bytes_sent_;
    s.bytes_received = bytes_received_;
    s.messages_sent = messages_sent_;
    s.messages_received = messages_received_;
    s.messages_rejected = messages_rejected_;
    return s;
  }

  bool binds() const override { return binds_; }
  std::string endpoint() const override { return hub_->endpoint(); }

  void close(std::chrono::milliseconds) override {
    // Sends are delivered synchronously, so there is nothing left to flush.
    if (closed_.exchange(true)) return;
    if (binds_) {
      hub_->unbind(inbox_);
    } else {
      hub_->disconnect(id_);
    }
    inbox_->queue.close();
  }

 private:
  // Pushes `message` into its receiver's inbox (blocking while full when `wait`). A
  // message for nobody (no cloud bound, an edge gone) is dropped, as ZeroMQ drops one for
  // a peer that is gone; false only when `wait` is off and the inbox is full.
  bool deliver(Message message, bool wait) {
    if (closed_) throw TransportError("transport is closed");
    auto target = binds_ ? hub_->edgeInbox(message.peer) : hub_->cloudInbox();
    if (!target) {
      log_->debug("dropped {} for {}: nobody there", messageTypeName(message.header.type),
                  binds_ ? peerName(message.peer) : hub_->endpoint());
      return true;
    }
    InMemoryHub::Inbox::Delivery delivery{binds_ ? std::string() : id_, encodeFrames(message)};
    std::uint64_t bytes = 0;
    for (const auto& f : delivery.frames) bytes += f.size();
    // Counted before the push, so a receiver that has the message never sees stats
    // without it; taken back when it was not delivered.
    bytes_sent_ += bytes;
    ++messages_sent_;
    const bool delivered = wait ? target->queue.push(std::move(delivery)) : target->queue.tryPush(std::move(delivery));
    if (!delivered) {
      bytes_sent_ -= bytes;
      --messages_sent_;
    }
    // Not delivered while waiting: the receiver closed meanwhile (dropped, as for nobody).
    // Not delivered without waiting: full, or closed alike; the caller drops the message.
    return delivered || wait;
  }

  std::shared_ptr<InMemoryHub> hub_;
  const bool binds_;
  const std::string id_;
  std::shared_ptr<InMemoryHub::Inbox> inbox_;
  std::shared_ptr<spdlog::logger> log_;
  std::atomic<bool> closed_{false};
  std::atomic<std::uint64_t> bytes_sent_{0};
  std::atomic<std::uint64_t> bytes_received_{0};
  std::atomic<std::uint64_t> messages_sent_{0};
  std::atomic<std::uint64_t> messages_received_{0};
  std::atomic<std::uint64_t> messages_rejected_{0};
};

std::shared_ptr<InMemoryHub> InMemoryHub::create(InMemoryOptions options) {
  return std::shared_ptr<InMemoryHub>(new InMemoryHub(std::move(options)));
}

std::unique_ptr<FrameSocket> InMemoryHub::bind() {
  auto inbox = std::make_shared<Inbox>(options_.queue_capacity);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cloud_) throw TransportError("cannot bind '" + endpoint() + "': a cloud end is bound there already");
    cloud_ = inbox;
  }
  return std::make_unique<InMemoryEnd>(shared_from_this(), true, std::string(), std::move(inbox));
}

std::unique_ptr<FrameSocket> InMemoryHub::connect() {
  auto inbox = std::make_shared<Inbox>(options_.queue_capacity);
  std::string id;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    id = "mem-" + std::to_string(connected_++);
    edges_[id] = inbox;
  }
  return std::make_unique<InMemoryEnd>(shared_from_this(), false, std::move(id), std::move(inbox));
}

std::shared_ptr<InMemoryHub::Inbox> InMemoryHub::cloudInbox() {
  std::lock_guard<std::mutex> lock(mutex_);
  return cloud_;
}

std::shared_ptr<InMemoryHub::Inbox> InMemoryHub::edgeInbox(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = edges_.find(id);
  return it == edges_.end() ? nullptr : it->second;
}

void InMemoryHub::unbind(const std::shared_ptr<Inbox>& inbox) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (cloud_ == inbox) cloud_.reset();
}

void InMemoryHub::disconnect(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  edges_.erase(id);
}

}  // namespace tandem::transport

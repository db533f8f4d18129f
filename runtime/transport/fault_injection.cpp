#include "runtime/transport/fault_injection.h"

#include <fmt/format.h>

#include "runtime/common/log.h"

namespace tandem::transport {

bool OutageWindows::downAt(double elapsed_s) const {
  for (const auto& [start, duration] : windows_) {
    if (elapsed_s >= start && elapsed_s < start + duration) return true;
  }
  return false;
}

FaultAction OutageWindows::apply(const FaultPoint& at) {
  return downAt(at.elapsed_s) ? FaultAction::kDrop : FaultAction::kPass;
}

std::string OutageWindows::describe() const {
  std::string out = "outage windows";
  for (const auto& [start, duration] : windows_) out += fmt::format(" [{}, {}) s", start, start + duration);
  return out;
}

FaultAction DropMessage::apply(const FaultPoint& at) {
  if (at.direction != direction_ || !at.message || at.heartbeat() || at.index != index_) return FaultAction::kPass;
  return FaultAction::kDrop;
}

std::string DropMessage::describe() const {
  return fmt::format("drop {} message {}", direction_ == Direction::kSend ? "sent" : "received", index_);
}

FaultAction LinkSwitch::apply(const FaultPoint&) { return state_->down ? FaultAction::kDrop : FaultAction::kPass; }

FaultInjector::FaultInjector(std::unique_ptr<FrameSocket> inner, std::vector<std::unique_ptr<Fault>> faults,
                             std::string log_component, Clock::time_point start)
    : inner_(std::move(inner)), faults_(std::move(faults)), log_(log::get(log_component)), start_(start) {
  for (const auto& f : faults_) log_->info("fault injection: {}", f->describe());
}

bool FaultInjector::drops(Direction direction, const Message* message) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto& index = direction == Direction::kSend ? sent_index_ : received_index_;
  FaultPoint at;
  at.direction = direction;
  at.elapsed_s = std::chrono::duration<double>(Clock::now() - start_).count();
  at.index = index;
  at.message = message;
  // Every fault sees every message (a counting fault must not miss one another dropped).
  bool drop = false;
  for (auto& f : faults_) drop = f->apply(at) == FaultAction::kDrop || drop;
  if (message && !at.heartbeat()) ++index;
  if (drop) {
    ++dropped_;
    log_->debug("fault injection dropped {} {} after {:.3f} s", direction == Direction::kSend ? "outgoing" : "incoming",
                message ? messageTypeName(message->header.type) : "invalid message", at.elapsed_s);
  }
  return drop;
}

void FaultInjector::send(Message message) {
  if (drops(Direction::kSend, &message)) return;
  inner_->send(std::move(message));
}

bool FaultInjector::trySend(Message message) {
  if (drops(Direction::kSend, &message)) return true;
  return inner_->trySend(std::move(message));
}

std::optional<Received> FaultInjector::receive(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    auto received = inner_->receive(std::max(left, std::chrono::milliseconds(0)));
    if (!received) return std::nullopt;
    const auto* message = std::get_if<Message>(&*received);
    if (!drops(Direction::kReceive, message)) return received;
    if (message) {
      dropped_in_bytes_ += message->wire_bytes;
      ++dropped_in_messages_;
    } else {
      dropped_in_bytes_ += std::get<Rejection>(*received).wire_bytes;
      ++dropped_in_rejections_;
    }
    if (Clock::now() >= deadline) return std::nullopt;
  }
}

TransportStats FaultInjector::stats() const {
  TransportStats s = inner_->stats();
  s.messages_dropped += dropped_;
  s.bytes_received -= std::min<std::uint64_t>(s.bytes_received, dropped_in_bytes_);
  s.messages_received -= std::min<std::uint64_t>(s.messages_received, dropped_in_messages_);
  s.messages_rejected -= std::min<std::uint64_t>(s.messages_rejected, dropped_in_rejections_);
  return s;
}

}  // namespace tandem::transport

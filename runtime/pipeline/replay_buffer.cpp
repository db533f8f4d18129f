#include "runtime/pipeline/replay_buffer.h"

#include "runtime/common/error.h"

namespace tandem::pipeline {

void ReplayBuffer::setCapacity(std::size_t capacity) {
  TANDEM_ENFORCE(entries_.empty(), "the replay buffer must be drained before K changes");
  TANDEM_ENFORCE(capacity > 0);
  capacity_ = capacity;
}

bool ReplayBuffer::contains(std::uint64_t step) const {
  return !entries_.empty() && step >= entries_.front().step && step <= entries_.back().step;
}

std::uint64_t ReplayBuffer::oldestStep() const {
  TANDEM_ENFORCE(!entries_.empty());
  return entries_.front().step;
}

ReplayEntry& ReplayBuffer::newest() {
  TANDEM_ENFORCE(!entries_.empty());
  return entries_.back();
}

void ReplayBuffer::push(ReplayEntry entry) {
  TANDEM_ENFORCE(entries_.size() < capacity_, "replay buffer full (", capacity_, " entries)");
  entries_.push_back(std::move(entry));
  peak_ = std::max(peak_, entries_.size());
}

const ReplayEntry& ReplayBuffer::oldest(std::uint64_t step) const {
  if (entries_.empty() || entries_.front().step != step) {
    throw ProtocolError("gradient for step " + std::to_string(step) + " but " +
                        (entries_.empty() ? std::string("no step is in flight")
                                          : "the oldest step in flight is " + std::to_string(entries_.front().step)));
  }
  return entries_.front();
}

ReplayEntry ReplayBuffer::pop(std::uint64_t step) {
  oldest(step);
  ReplayEntry entry = std::move(entries_.front());
  entries_.pop_front();
  return entry;
}

}  // namespace tandem::pipeline

#include "runtime/transport/link_emulator.h"

#include <cmath>


namespace tandem::transport {

LinkEmulator::LinkEmulator(std::unique_ptr<Transport> inner, LinkShape shape, Clock::time_point start)
    : inner_(std::move(inner)), shape_(std::move(shape)), start_(start) {
  thread_ = std::thread([this] { run(); });
}

LinkEmulator::~LinkEmulator() { close(std::chrono::milliseconds(0)); }

double LinkEmulator::currentMbps() const {
  const double t = std::chrono::duration<double>(Clock::now() - start_).count();
  return shape_.uplink ? shape_.trace.uplinkAt(t) : shape_.trace.downlinkAt(t);
}

void LinkEmulator::send(Message message) {
  const double bits = static_cast<double>(wireBytes(message)) * 8.0;
  std::unique_lock<std::mutex> lock(mutex_);
  if (stopping_) throw TransportError("transport is closed");
  if (!failure_.empty()) throw TransportError(failure_);
  const double now = std::chrono::duration<double>(Clock::now() - start_).count();
  const double begin = std::max(now, link_free_s_);
  const double rate_now = shape_.uplink ? shape_.trace.uplinkAt(begin) : shape_.trace.downlinkAt(begin);
  // A direction with no rate configured (0 everywhere) is only delayed by propagation.
  double end = begin;
  const bool shaped = rate_now > 0 || shape_.trace.points().size() > 1;
  if (shaped) {
    end = shape_.trace.finishTime(begin, bits, shape_.uplink);
    if (!std::isfinite(end)) end = begin + 3600.0;  // a link that never comes back: an hour
    link_free_s_ = end;
  }
  const auto deliver = start_ + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(end + shape_.rtt_ms / 2000.0));
  queue_.push_back({std::move(message), deliver});
  changed_.notify_all();
}

void LinkEmulator::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    if (queue_.empty()) {
      if (stopping_) return;
      changed_.wait(lock);
      continue;
    }
    const auto due = queue_.front().deliver_at;
    if (Clock::now() < due && !stopping_) {
      changed_.wait_until(lock, due);
      continue;
    }
    Message message = std::move(queue_.front().message);
    queue_.pop_front();
    lock.unlock();
    try {
      inner_->send(std::move(message));
      lock.lock();
    } catch (const TransportError& e) {
      // The inner transport is closed or failed: the next send() says so.
      lock.lock();
      noteFailure(e);
    }
  }
}

void LinkEmulator::noteFailure(const TransportError& e) {
  if (failure_.empty()) failure_ = e.what();
}

std::optional<Incoming> LinkEmulator::receive(std::chrono::milliseconds timeout) {
  try {
    return inner_->receive(timeout);
  } catch (const TransportError& e) {
    std::lock_guard<std::mutex> lock(mutex_);
    noteFailure(e);
    throw;
  }
}

void LinkEmulator::close(std::chrono::milliseconds linger) {
  {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!thread_.joinable()) return;
    // Let queued messages go out within the linger time, then drop the rest.
    const auto deadline = Clock::now() + linger;
    while (!queue_.empty() && Clock::now() < deadline) {
      changed_.wait_until(lock, std::min(deadline, Clock::now() + std::chrono::milliseconds(10)));
    }
    queue_.clear();
    stopping_ = true;
    changed_.notify_all();
  }
  thread_.join();
  inner_->close(linger);
}

}  // namespace tandem::transport

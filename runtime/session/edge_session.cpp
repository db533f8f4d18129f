#include "runtime/session/edge_session.h"

#include <fmt/format.h>

#include <optional>
#include <utility>

#include "runtime/common/log.h"
#include "runtime/telemetry/metrics.h"

namespace tandem::session {

using Clock = std::chrono::steady_clock;
using transport::Message;
using transport::MessageType;

namespace {

constexpr auto kPoll = std::chrono::milliseconds(100);
constexpr auto kNoticeEvery = std::chrono::seconds(5);
constexpr auto kBusyRetry = std::chrono::seconds(2);
constexpr auto kResyncEvery = std::chrono::seconds(2);

bool isControlReply(MessageType type) {
  return type == MessageType::kEpochAck || type == MessageType::kCheckpointAck || type == MessageType::kMigrateAck ||
         type == MessageType::kRollbackAck || type == MessageType::kProbeReply || type == MessageType::kShutdownAck ||
         type == MessageType::kAverageReply;
}

std::string seconds(std::chrono::milliseconds d) { return fmt::format("{:.1f}", d.count() / 1000.0); }

}  // namespace

EdgeSession::EdgeSession(std::unique_ptr<transport::Transport> transport, telemetry::TrainerMetrics* metrics)
    : log_(log::get("edge.session")), transport_(std::move(transport)), metrics_(metrics) {}

EdgeSession::~EdgeSession() = default;

std::uint64_t EdgeSession::send(Message message) {
  message.header.session = id_;
  const auto bytes = transport::wireBytes(message);
  bytes_up_ += bytes;
  transport_->send(std::move(message));
  return bytes;
}

void EdgeSession::checkAbort() const {
  if (abort_ && abort_->load()) throw Aborted("stopped at once (interrupted twice)");
}

Message EdgeSession::connect(Message hello, std::chrono::milliseconds timeout, const std::atomic<bool>& stop) {
  TANDEM_ENFORCE(hello.header.type == MessageType::kHello, "connect() sends a Hello");
  send(transport::copyMessage(hello));
  const auto start = Clock::now();
  auto next_notice = start + kNoticeEvery;
  std::optional<Clock::time_point> retry_at;  // the cloud was busy: Hello again then
  bool told_busy = false;
  while (true) {
    checkAbort();
    if (retry_at && Clock::now() >= *retry_at) {
      retry_at.reset();
      send(transport::copyMessage(hello));
    }
    // Before the Welcome there is no session to resynchronise: link events mean nothing.
    auto incoming = transport_->receive(kPoll);
    if (incoming) {
      if (auto* message = transport::asMessage(*incoming)) {
        bytes_down_ += message->wire_bytes;
        const auto type = message->header.type;
        if (type == MessageType::kError) {
          const auto& e = std::get<transport::ErrorInfo>(message->body);
          if (e.code == transport::ErrorCode::kBusy) {
            // A limit of a shared cloud: not this edge's fault; try again until the timeout.
            if (!std::exchange(told_busy, true)) {
              log_->warn("the cloud is busy ({}): trying again every {:.0f} s for up to {} s", e.message,
                         std::chrono::duration<double>(kBusyRetry).count(), seconds(timeout));
            }
            retry_at = Clock::now() + kBusyRetry;
            continue;
          }
          if (metrics_) metrics_->errors_protocol->Increment();
          throw ProtocolError(std::string("the cloud refused the handshake: ") + transport::errorCodeName(e.code) +
                              ": " + e.message);
        }
        if (type != MessageType::kWelcome) {
          throw ProtocolError(std::string("expected Welcome from the cloud, got ") + transport::messageTypeName(type));
        }
        id_ = message->header.session;
        return std::move(*message);
      }
    }
    const auto now = Clock::now();
    if (now - start > timeout) {
      throw TransportError("waited for a handshake reply from the cloud at " + transport_->endpoint() + " for " +
                           seconds(timeout) + " s without an answer (is cloud_trainer running and reachable?)");
    }
    if (stop) throw Interrupted("interrupted while connecting to the cloud at " + transport_->endpoint());
    if (now > next_notice) {
      log_->info("still waiting for a handshake reply from {} ({:.0f} s)", transport_->endpoint(),
                 std::chrono::duration<double>(now - start).count());
      next_notice = now + kNoticeEvery;
    }
  }
}

void EdgeSession::openEpoch(Message epoch_begin) {
  TANDEM_ENFORCE(epoch_begin.header.type == MessageType::kEpochBegin, "openEpoch() sends an EpochBegin");
  epoch_ = epoch_begin.header.epoch;
  epoch_begin_ = transport::copyMessage(epoch_begin);
  send(std::move(epoch_begin));
}

void EdgeSession::closeEpoch() { epoch_begin_.reset(); }

std::uint64_t EdgeSession::post(Message message) {
  const auto type = message.header.type;
  TANDEM_ENFORCE(type == MessageType::kActivations || type == MessageType::kEvalActivations,
                 "post() takes Activations or EvalActivations, not ", transport::messageTypeName(type));
  const auto step = message.header.step;
  auto& in_flight = type == MessageType::kActivations ? train_in_flight_ : eval_in_flight_;
  TANDEM_ENFORCE(!in_flight.count(step), "step ", step, " is already in flight");
  if (type == MessageType::kActivations) next_train_step_ = std::max(next_train_step_, step + 1);
  in_flight.emplace(step, transport::copyMessage(message));
  return send(std::move(message));
}

Message EdgeSession::request(Message message, MessageType expected, const char* waiting_for,
                             std::optional<std::chrono::milliseconds> timeout) {
  TANDEM_ENFORCE(!pending_, "one control request at a time");
  pending_ = transport::copyMessage(message);
  send(std::move(message));
  try {
    auto reply = awaitAny(waiting_for, timeout, false, nullptr);
    pending_.reset();
    if (reply.header.type != expected) {
      throw ProtocolError(std::string("expected ") + transport::messageTypeName(expected) + " from the cloud, got " +
                          transport::messageTypeName(reply.header.type));
    }
    return reply;
  } catch (...) {
    pending_.reset();
    throw;
  }
}

std::optional<Message> EdgeSession::next(std::chrono::milliseconds wait) {
  auto message = nextMessage(wait);
  if (!message) return std::nullopt;
  const auto type = message->header.type;
  if (type == MessageType::kError) {
    if (metrics_) metrics_->errors_protocol->Increment();
    const auto& e = std::get<transport::ErrorInfo>(message->body);
    throw ProtocolError(std::string("the cloud reported an error: ") + transport::errorCodeName(e.code) + ": " +
                        e.message);
  }
  if (type != MessageType::kGradients && type != MessageType::kEvalResult) {
    throw ProtocolError(std::string("expected Gradients or an EvalResult from the cloud, got ") +
                        transport::messageTypeName(type));
  }
  return message;
}

Message EdgeSession::await(MessageType expected, const char* waiting_for) {
  auto message = awaitAny(waiting_for, std::nullopt, false, nullptr);
  if (message.header.type != expected) {
    throw ProtocolError(std::string("expected ") + transport::messageTypeName(expected) + " from the cloud, got " +
                        transport::messageTypeName(message.header.type));
  }
  return message;
}

Message EdgeSession::awaitAny(const char* waiting_for, std::optional<std::chrono::milliseconds> timeout,
                              bool give_up_on_stop, const std::atomic<bool>* stop) {
  const auto start = Clock::now();
  auto next_notice = start + kNoticeEvery;
  while (true) {
    checkAbort();
    if (auto message = nextMessage(kPoll)) {
      if (message->header.type == MessageType::kError) {
        if (metrics_) metrics_->errors_protocol->Increment();
        const auto& e = std::get<transport::ErrorInfo>(message->body);
        throw ProtocolError(std::string("the cloud reported an error while the edge was waiting for ") + waiting_for +
                            ": " + transport::errorCodeName(e.code) + ": " + e.message);
      }
      return std::move(*message);
    }
    const auto now = Clock::now();
    if (timeout && now - start > *timeout) {
      throw TransportError(std::string("waited for ") + waiting_for + " from the cloud at " + transport_->endpoint() +
                           " for " + seconds(*timeout) +
                           " s without an answer (is cloud_trainer running and reachable?)");
    }
    if (give_up_on_stop && stop && *stop)
      throw TransportError(std::string("interrupted while waiting for ") + waiting_for);
    if (now > next_notice) {
      log_->info("still waiting for {} from {} ({:.0f} s)", waiting_for, transport_->endpoint(),
                 std::chrono::duration<double>(now - start).count());
      next_notice = now + kNoticeEvery;
    }
  }
}

std::optional<Message> EdgeSession::nextMessage(std::chrono::milliseconds wait) {
  const auto deadline = Clock::now() + wait;
  while (true) {
    // A gradient that arrived ahead of its turn goes first once its turn has come.
    if (!train_in_flight_.empty()) {
      auto early = early_gradients_.find(train_in_flight_.begin()->first);
      if (early != early_gradients_.end()) {
        Message m = std::move(early->second);
        early_gradients_.erase(early);
        train_in_flight_.erase(train_in_flight_.begin());
        return m;
      }
    }
    std::optional<Message> message;
    if (!deferred_.empty()) {
      message = std::move(deferred_.front());
      deferred_.pop_front();
    } else {
      const auto left = std::max(std::chrono::milliseconds(0),
                                 std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
      auto incoming = transport_->receive(left);
      if (!incoming) return std::nullopt;
      if (transport::asEvent(*incoming)) {
        if (id_ != 0) recover();
        continue;
      }
      message = std::move(std::get<Message>(*incoming));
      bytes_down_ += message->wire_bytes;
    }
    const auto type = message->header.type;
    const auto step = message->header.step;
    if (type == MessageType::kResyncReply) {
      // The cloud's hint that it lost messages from us: resynchronise. (Late replies to an
      // earlier Resync carry its number and are stale.)
      if (std::get<transport::ResyncInfo>(message->body).request == 0 && id_ != 0) recover();
      continue;
    }
    if (type == MessageType::kGradients) {
      if (!train_in_flight_.count(step)) {
        log_->debug("dropping a duplicate gradient for step {}", step);
        continue;
      }
      if (step != train_in_flight_.begin()->first) {
        early_gradients_[step] = std::move(*message);
        continue;
      }
      train_in_flight_.erase(train_in_flight_.begin());
    } else if (type == MessageType::kEvalResult) {
      if (!eval_in_flight_.erase(step)) {
        log_->debug("dropping a duplicate evaluation result for step {}", step);
        continue;
      }
    } else if (isControlReply(type) && !answersPending(*message)) {
      // A reply to a request sent twice across a link outage: the first copy was used.
      log_->debug("dropping a duplicate {}", transport::messageTypeName(type));
      continue;
    }
    return message;
  }
}

bool EdgeSession::answersPending(const Message& reply) const {
  if (!pending_) return false;
  switch (pending_->header.type) {
    case MessageType::kEpochEnd:
      return reply.header.type == MessageType::kEpochAck && reply.header.epoch == pending_->header.epoch;
    case MessageType::kCheckpoint:
      return reply.header.type == MessageType::kCheckpointAck && reply.header.step == pending_->header.step;
    case MessageType::kMigrate: return reply.header.type == MessageType::kMigrateAck;
    case MessageType::kRollback:
      return reply.header.type == MessageType::kRollbackAck && reply.header.step == pending_->header.step;
    case MessageType::kShutdown: return reply.header.type == MessageType::kShutdownAck;
    case MessageType::kAverage:
      return reply.header.type == MessageType::kAverageReply &&
             std::get<transport::AverageInfo>(reply.body).round ==
                 std::get<transport::AverageInfo>(pending_->body).round;
    case MessageType::kProbe:
      return reply.header.type == MessageType::kProbeReply &&
             std::get<transport::ProbeInfo>(reply.body).t0 == std::get<transport::ProbeInfo>(pending_->body).t0;
    default: return false;
  }
}

void EdgeSession::recover() {
  log_->warn("messages lost or the cloud silent: resynchronising ({} batch(es) in flight)", train_in_flight_.size());
  const auto start = Clock::now();
  auto next_ask = start;
  const std::uint64_t request = ++resync_requests_;
  while (true) {
    checkAbort();
    if (Clock::now() >= next_ask) {
      transport::ResyncInfo info;
      info.request = request;
      info.oldest_step = train_in_flight_.empty() ? next_train_step_ : train_in_flight_.begin()->first;
      info.next_step = next_train_step_;
      info.epoch = epoch_;
      info.epoch_open = epoch_begin_.has_value();
      send(Message(MessageType::kResync, info));
      next_ask = Clock::now() + kResyncEvery;
    }
    // Throws TransportError once the cloud has been silent past the reconnect grace.
    auto incoming = transport_->receive(kPoll);
    if (!incoming || transport::asEvent(*incoming)) continue;
    auto& message = std::get<Message>(*incoming);
    bytes_down_ += message.wire_bytes;
    if (message.header.type == MessageType::kResyncReply) {
      // Only the answer to this request counts: the cloud sent the gradients it has for our
      // batches just before it.
      const auto& info = std::get<transport::ResyncInfo>(message.body);
      if (info.request != request) continue;
      ++resyncs_;
      if (metrics_) metrics_->errors_reconnect->Increment();
      resendAfter(info);
      log_->info("resynchronised with the cloud after {:.1f} s",
                 std::chrono::duration<double>(Clock::now() - start).count());
      return;
    }
    deferred_.push_back(std::move(message));
  }
}

void EdgeSession::resendAfter(const transport::ResyncInfo& cloud) {
  if (epoch_begin_ && (cloud.epoch != epoch_ || !cloud.epoch_open)) send(transport::copyMessage(*epoch_begin_));
  std::size_t resent = 0;
  for (auto& [step, message] : train_in_flight_) {
    if (step < cloud.next_step) continue;  // applied: the cloud re-sent its gradient
    send(transport::copyMessage(message));
    ++resent;
  }
  for (auto& [step, message] : eval_in_flight_) send(transport::copyMessage(message));
  if (pending_) send(transport::copyMessage(*pending_));
  log_->info("resync: the cloud is at step {}; re-sent {} batch(es), {} evaluation batch(es){}", cloud.next_step,
             resent, eval_in_flight_.size(), pending_ ? " and the pending request" : "");
}

void EdgeSession::shutdown(bool completed, const std::string& reason, std::chrono::milliseconds timeout) {
  try {
    if (timeout.count() > 0) {
      request(Message(MessageType::kShutdown, transport::ShutdownInfo{reason, completed}), MessageType::kShutdownAck,
              "a shutdown acknowledgement", timeout);
    } else {
      send(Message(MessageType::kShutdown, transport::ShutdownInfo{reason, completed}));
    }
  } catch (const std::exception& e) {
    log_->warn("orderly shutdown incomplete: {}", e.what());
  }
  try {
    // Without an acknowledgement to wait for (an abort), the Shutdown still has to get out
    // behind what is queued: allow it most of the trainer's exit grace.
    transport_->close(std::chrono::milliseconds(timeout.count() > 0 ? 1000 : 2000));
  } catch (const std::exception& e) {
    log_->debug("closing the transport: {}", e.what());
  }
}

}  // namespace tandem::session

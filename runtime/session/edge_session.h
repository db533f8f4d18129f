#pragma once
// The edge's side of the conversation with the cloud: exactly-once request/reply over any
// Transport, across link outages.
//
// Two kinds of traffic:
//   - streamed requests (training Activations → Gradients, EvalActivations → EvalResult),
//     posted without waiting; their replies come back through next()/await(), training
//     gradients strictly in step order;
//   - control requests (EpochEnd, Checkpoint, Migrate, Probe, Shutdown), one at a time:
//     request() sends and waits for the matching reply.
// Every request stays "in flight" (a copy sharing the payload memory) until its reply has
// been taken. When the transport reports lost messages or a silent cloud (LinkEvent), or
// the cloud hints that it lost ours (an unasked ResyncReply), the session resynchronises:
// it asks the cloud where it stands (Resync, numbered, so only the answer to this request
// counts), re-announces the epoch if the cloud is not in it, and re-sends what the cloud
// has not applied, every evaluation batch in flight and the pending control request.
// Duplicated replies (the cloud answers a re-sent request from its reply cache) are
// dropped here, so the trainer sees each reply exactly once.
//
// Threading: one thread (the edge's compute thread) calls everything. Ownership: the
// session owns the transport.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "runtime/transport/transport.h"

namespace spdlog {
class logger;
}

namespace tandem::telemetry {
struct TrainerMetrics;
}

namespace tandem::session {

// Thrown out of a wait when `abort` (EdgeSession::setAbort) is set: the user asked twice
// to stop, so nothing more is waited for.
class Aborted : public Error {
 public:
  using Error::Error;
};

// Thrown by connect() when `stop` is set before the cloud answered.
class Interrupted : public Error {
 public:
  using Error::Error;
};

class EdgeSession {
 public:
  // `metrics` (optional) counts protocol errors and reconnections; it must outlive the
  // session.
  explicit EdgeSession(std::unique_ptr<transport::Transport> transport, telemetry::TrainerMetrics* metrics = nullptr);
  ~EdgeSession();
  EdgeSession(const EdgeSession&) = delete;
  EdgeSession& operator=(const EdgeSession&) = delete;

  // Sends Hello and waits up to `timeout` for Welcome (stop gives up); the session id is
  // the Welcome's. A busy cloud (ErrorCode::kBusy: at its session limits) is asked again
  // every 2 s. Throws ProtocolError when the cloud refuses (its reason), TransportError
  // on timeout, Interrupted when `stop` is set first.
  transport::Message connect(transport::Message hello, std::chrono::milliseconds timeout,
                             const std::atomic<bool>& stop);

  // Sends EpochBegin and keeps it: after a resync the cloud is told again if it is not in
  // this epoch. closeEpoch() forgets it (EpochEnd is then a control request).
  void openEpoch(transport::Message epoch_begin);
  void closeEpoch();

  // Sends a streamed request (kActivations or kEvalActivations, header.step set) and keeps
  // it in flight until its reply is taken. Returns its size on the wire (bytes).
  std::uint64_t post(transport::Message message);

  // Sends a control request and waits for its reply of type `expected` (`waiting_for`
  // names it in errors). Throws ProtocolError on an Error reply or another type,
  // TransportError after `timeout` (none: wait as long as the link lives).
  transport::Message request(transport::Message message, transport::MessageType expected, const char* waiting_for,
                             std::optional<std::chrono::milliseconds> timeout = std::nullopt);

  // The next reply to a posted request within `wait`: Gradients in step order or an
  // EvalResult. Throws ProtocolError on an Error from the cloud or any other message.
  std::optional<transport::Message> next(std::chrono::milliseconds wait);
  // next() until a reply of type `expected` comes; throws as next() and on another type.
  transport::Message await(transport::MessageType expected, const char* waiting_for);

  // Best effort: Shutdown{completed, reason}, its acknowledgement awaited up to `timeout`,
  // then the transport is closed. Never throws.
  void shutdown(bool completed, const std::string& reason, std::chrono::milliseconds timeout);

  // While set, every wait throws Aborted (checked every 100 ms). Null: never.
  void setAbort(const std::atomic<bool>* abort) { abort_ = abort; }
  // The first training step the next posted batch may carry (a resumed run's position).
  void setNextTrainStep(std::uint64_t step) { next_train_step_ = step; }

  std::uint64_t id() const { return id_; }
  std::string endpoint() const { return transport_->endpoint(); }
  transport::TransportStats transportStats() const { return transport_->stats(); }
  // Training traffic this session sent and received (heartbeats excluded), wire bytes.
  std::uint64_t bytesUp() const { return bytes_up_; }
  std::uint64_t bytesDown() const { return bytes_down_; }
  std::size_t trainingInFlight() const { return train_in_flight_.size(); }
  std::size_t evaluationInFlight() const { return eval_in_flight_.size(); }
  std::uint64_t resynchronisations() const { return resyncs_; }

 private:
  // The next message for the caller, within `wait`, after link events, duplicates and
  // early gradients were dealt with. Control replies pass through only when they answer
  // the pending request.
  std::optional<transport::Message> nextMessage(std::chrono::milliseconds wait);
  transport::Message awaitAny(const char* waiting_for, std::optional<std::chrono::milliseconds> timeout,
                              bool give_up_on_stop, const std::atomic<bool>* stop);
  bool answersPending(const transport::Message& reply) const;
  void recover();
  void resendAfter(const transport::ResyncInfo& cloud);
  // Sends `message` in this session; returns its size on the wire (bytes).
  std::uint64_t send(transport::Message message);
  void checkAbort() const;

  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<transport::Transport> transport_;
  telemetry::TrainerMetrics* metrics_;
  const std::atomic<bool>* abort_ = nullptr;

  std::uint64_t id_ = 0;
  std::uint64_t next_train_step_ = 0;
  std::map<std::uint64_t, transport::Message> train_in_flight_;  // by step; the oldest first
  std::map<std::uint64_t, transport::Message> eval_in_flight_;   // by step
  std::map<std::uint64_t, transport::Message> early_gradients_;  // arrived ahead of the oldest in flight
  std::deque<transport::Message> deferred_;                      // received while resynchronising
  std::optional<transport::Message> pending_;                    // the control request awaiting its reply
  std::optional<transport::Message> epoch_begin_;                // while an epoch is open
  std::uint32_t epoch_ = 0;
  std::uint64_t resync_requests_ = 0;
  std::uint64_t resyncs_ = 0;
  std::uint64_t bytes_up_ = 0;
  std::uint64_t bytes_down_ = 0;
};

}  // namespace tandem::session

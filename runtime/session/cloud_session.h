#pragma once
// The cloud's side of one edge's conversation: the exactly-once checks in front of every
// request and the reply cache behind them.
//
// Requests are idempotent by their key (training and evaluation steps by step number,
// EpochEnd by epoch, Checkpoint by step, Migrate by (from, to)). After a link outage the
// edge re-sends what it has no answer for; admit() recognises a request that was already
// handled and re-sends the cached reply instead of handling it again, so each training
// batch updates the weights exactly once. A training step ahead of the next expected one
// means batches were lost on the way: the edge is told where the cloud stands (an unasked
// ResyncReply) and re-sends from there.
//
// Threading: the cloud's compute thread only. The session does not own the transport.

#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "runtime/common/log_limiter.h"
#include "runtime/transport/transport.h"

namespace spdlog {
class logger;
}

namespace tandem::session {

// Where the session stands; the trainer advances it as it handles requests.
struct CloudPosition {
  std::uint64_t next_step = 0;  // the next training step to apply
  int epoch = -1;               // the epoch begun last (0-based; -1 before the first)
  bool epoch_open = false;
  int split = 0;
};

class CloudSession {
 public:
  enum class Admission {
    kHandle,    // new: the caller handles it and answers with answer()
    kAnswered,  // handled before: the cached reply was re-sent (or nothing needs sending)
    kAhead,     // a training step beyond the next one: the edge was asked to re-send
  };

  CloudSession(std::uint64_t id, std::string peer, transport::Transport& transport);

  std::uint64_t id() const { return id_; }
  const std::string& peer() const { return peer_; }
  CloudPosition& position() { return position_; }
  const CloudPosition& position() const { return position_; }

  // Counts `request`'s bytes and decides whether it must be handled.
  Admission admit(const transport::Message& request);

  // Sends `reply` to `request` and keeps a copy to answer the request again when the edge
  // re-sends it (only for requests that have a key, see the top of this file).
  void answer(const transport::Message& request, transport::Message reply);
  // Sends `message` to this edge, uncached.
  void send(transport::Message message);

  // A Resync from the edge: re-sends the cached gradients of the steps it has not seen and
  // answers with where the session stands.
  void onResync(const transport::Message& request);
  // The transport lost messages from this edge: tell it where the session stands.
  void hintResync();

  // The largest staleness the edge has announced: gradients are kept for 2 (K + 2) steps.
  void noteStaleness(int staleness);
  // At most this many bytes of cached gradients (limits.session_memory_mb less the
  // session's stages): past it the oldest go first, even within 2 (K + 2) steps; an edge
  // that asks for one of those again gets the session's position (ResyncReply) only.
  void setReplyBudget(std::uint64_t bytes) { reply_budget_ = bytes; }
  // Gradients evicted for the budget before their 2 (K + 2) steps were up.
  std::uint64_t memoryEvictions() const { return memory_evictions_; }
  // A fleet averaging round: the trainer holds the edge's contribution to `round` until the
  // round closes, then answer()s it; a repeat of the request meanwhile is not handled again.
  void holdAverage(std::uint64_t round) { average_held_ = round; }
  // A new epoch: evaluation replies of the previous one are never asked for again.
  void forgetEvaluationReplies() { eval_replies_.clear(); }

  // Wire bytes of this session's traffic, in total and since the last takeEpochBytes().
  std::uint64_t bytesUp() const { return bytes_up_; }
  std::uint64_t bytesDown() const { return bytes_down_; }
  std::pair<std::uint64_t, std::uint64_t> takeEpochBytes();

 private:
  void resend(const transport::Message* cached, const char* what, std::uint64_t key);
  void sendResync(std::uint64_t request);

  std::uint64_t id_;
  std::string peer_;
  transport::Transport& transport_;
  std::shared_ptr<spdlog::logger> log_;
  log::LogLimiter limited_;  // lines the edge can cause
  CloudPosition position_;

  std::map<std::uint64_t, transport::Message> replies_;       // recent Gradients, by step
  std::map<std::uint64_t, transport::Message> eval_replies_;  // this epoch's EvalResults, by step
  std::optional<transport::Message> epoch_ack_;
  std::optional<transport::Message> checkpoint_ack_;
  std::uint64_t checkpoint_step_ = std::numeric_limits<std::uint64_t>::max();
  std::optional<transport::Message> migrate_ack_;
  std::optional<transport::Message> rollback_ack_;
  std::uint64_t rollback_step_ = std::numeric_limits<std::uint64_t>::max();
  std::pair<int, int> last_migration_{-1, -1};
  std::optional<transport::Message> average_reply_;
  std::uint64_t average_round_ = std::numeric_limits<std::uint64_t>::max();  // of average_reply_
  std::uint64_t average_held_ = std::numeric_limits<std::uint64_t>::max();   // contributed, not yet answered
  std::size_t keep_replies_ = 4;
  std::uint64_t reply_budget_ = std::numeric_limits<std::uint64_t>::max();
  std::uint64_t reply_bytes_ = 0;  // of replies_
  std::uint64_t memory_evictions_ = 0;

  std::uint64_t bytes_up_ = 0;
  std::uint64_t bytes_down_ = 0;
  std::uint64_t epoch_bytes_up_ = 0;
  std::uint64_t epoch_bytes_down_ = 0;
};

}  // namespace tandem::session

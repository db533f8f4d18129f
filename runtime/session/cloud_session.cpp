#include "runtime/session/cloud_session.h"

#include <algorithm>

#include "runtime/common/log.h"

namespace tandem::session {

using transport::Message;
using transport::MessageType;

CloudSession::CloudSession(std::uint64_t id, std::string peer, transport::Transport& transport)
    : id_(id), peer_(std::move(peer)), transport_(transport), log_(log::get("cloud.session")), limited_(log_) {}

void CloudSession::send(Message message) {
  message.peer = peer_;
  message.header.session = id_;
  const auto bytes = transport::wireBytes(message);
  bytes_down_ += bytes;
  epoch_bytes_down_ += bytes;
  transport_.send(std::move(message));
}

void CloudSession::resend(const Message* cached, const char* what, std::uint64_t key) {
  if (cached == nullptr) {
    log_->debug("session {:016x}: duplicate {} {} with nothing cached", id_, what, key);
    return;
  }
  send(transport::copyMessage(const_cast<Message&>(*cached)));
}

CloudSession::Admission CloudSession::admit(const Message& request) {
  bytes_up_ += request.wire_bytes;
  epoch_bytes_up_ += request.wire_bytes;
  const auto& h = request.header;
  switch (h.type) {
    case MessageType::kActivations:
      if (h.step < position_.next_step) {
        auto it = replies_.find(h.step);
        resend(it == replies_.end() ? nullptr : &it->second, "training step", h.step);
        return Admission::kAnswered;
      }
      if (h.step > position_.next_step) {
        limited_.log(spdlog::level::warn, "", "step ahead",
                     "session {:016x}: step {} arrived, expected {}: asking the edge to resend", id_, h.step,
                     position_.next_step);
        sendResync(0);
        return Admission::kAhead;
      }
      return Admission::kHandle;
    case MessageType::kEvalActivations: {
      auto it = eval_replies_.find(h.step);
      if (it == eval_replies_.end()) return Admission::kHandle;
      resend(&it->second, "evaluation step", h.step);
      return Admission::kAnswered;
    }
    case MessageType::kEpochBegin:
      // Sent again after a link outage: the epoch is already under way.
      return static_cast<int>(h.epoch) == position_.epoch ? Admission::kAnswered : Admission::kHandle;
    case MessageType::kEpochEnd:
      if (!position_.epoch_open && static_cast<int>(h.epoch) == position_.epoch && epoch_ack_) {
        resend(&*epoch_ack_, "end of epoch", h.epoch);
        return Admission::kAnswered;
      }
      return Admission::kHandle;
    case MessageType::kCheckpoint:
      if (h.step == checkpoint_step_ && checkpoint_ack_) {
        resend(&*checkpoint_ack_, "checkpoint", h.step);
        return Admission::kAnswered;
      }
      return Admission::kHandle;
    case MessageType::kRollback:
      if (h.step == rollback_step_ && rollback_ack_) {
        resend(&*rollback_ack_, "rollback", h.step);
        return Admission::kAnswered;
      }
      return Admission::kHandle;
    case MessageType::kAverage: {
      const auto round = std::get<transport::AverageInfo>(request.body).round;
      if (round == average_round_ && average_reply_) {
        resend(&*average_reply_, "averaging round", round);
        return Admission::kAnswered;
      }
      // Held for a round that has not closed: the reply comes when it does.
      return round == average_held_ ? Admission::kAnswered : Admission::kHandle;
    }
    case MessageType::kMigrate: {
      const auto& info = std::get<transport::MigrateInfo>(request.body);
      const std::pair<int, int> move{static_cast<int>(info.from), static_cast<int>(info.to)};
      if (move == last_migration_ && position_.split == move.second && migrate_ack_) {
        resend(&*migrate_ack_, "migration", h.step);
        return Admission::kAnswered;
      }
      return Admission::kHandle;
    }
    default: return Admission::kHandle;
  }
}

void CloudSession::answer(const Message& request, Message reply) {
  reply.header.session = id_;
  const auto& h = request.header;
  switch (h.type) {
    case MessageType::kActivations: {
      auto& cached = replies_[h.step];
      reply_bytes_ -= std::min(reply_bytes_, transport::wireBytes(cached));
      cached = transport::copyMessage(reply);
      reply_bytes_ += transport::wireBytes(cached);
      while (replies_.size() > keep_replies_ || (reply_bytes_ > reply_budget_ && replies_.size() > 1)) {
        if (replies_.size() <= keep_replies_) ++memory_evictions_;
        reply_bytes_ -= std::min(reply_bytes_, transport::wireBytes(replies_.begin()->second));
        replies_.erase(replies_.begin());
      }
      break;
    }
    case MessageType::kEvalActivations: eval_replies_[h.step] = transport::copyMessage(reply); break;
    case MessageType::kEpochEnd: epoch_ack_ = transport::copyMessage(reply); break;
    case MessageType::kCheckpoint:
      checkpoint_step_ = h.step;
      checkpoint_ack_ = transport::copyMessage(reply);
      break;
    case MessageType::kRollback:
      rollback_step_ = h.step;
      rollback_ack_ = transport::copyMessage(reply);
      replies_.clear();  // the gradients of the abandoned steps are never asked for again (the edge drained)
      reply_bytes_ = 0;
      break;
    case MessageType::kAverage:
      average_round_ = std::get<transport::AverageInfo>(request.body).round;
      average_reply_ = transport::copyMessage(reply);
      average_held_ = std::numeric_limits<std::uint64_t>::max();
      break;
    case MessageType::kMigrate: {
      const auto& info = std::get<transport::MigrateInfo>(request.body);
      last_migration_ = {static_cast<int>(info.from), static_cast<int>(info.to)};
      migrate_ack_ = transport::copyMessage(reply);
      replies_.clear();  // gradients of the old split are never asked for again (the edge drained)
      reply_bytes_ = 0;
      break;
    }
    default: break;
  }
  send(std::move(reply));
}

void CloudSession::sendResync(std::uint64_t request) {
  transport::ResyncInfo info;
  info.request = request;
  info.next_step = position_.next_step;
  info.epoch = static_cast<std::uint32_t>(std::max(0, position_.epoch));
  info.epoch_open = position_.epoch_open;
  send(Message(MessageType::kResyncReply, info));
}

void CloudSession::hintResync() { sendResync(0); }

void CloudSession::onResync(const Message& request) {
  const auto info = std::get<transport::ResyncInfo>(request.body);
  std::size_t resent = 0;
  for (auto& [step, cached] : replies_) {
    if (step >= info.oldest_step && step < position_.next_step) {
      send(transport::copyMessage(cached));
      ++resent;
    }
  }
  limited_.log(spdlog::level::info, "", "resync",
               "session {:016x}: resync, at step {} (edge sent up to {}); re-sent {} gradient(s)", id_,
               position_.next_step, info.next_step, resent);
  sendResync(info.request);
}

void CloudSession::noteStaleness(int staleness) {
  keep_replies_ = std::max(keep_replies_, static_cast<std::size_t>(2 * (std::max(0, staleness) + 2)));
}

std::pair<std::uint64_t, std::uint64_t> CloudSession::takeEpochBytes() {
  return {std::exchange(epoch_bytes_up_, 0), std::exchange(epoch_bytes_down_, 0)};
}

}  // namespace tandem::session

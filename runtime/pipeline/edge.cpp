#include "runtime/pipeline/edge.h"

#include <torch/utils.h>
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "runtime/common/log.h"
#include "runtime/common/strings.h"
#include "runtime/optim/schedule.h"
#include "runtime/pipeline/link.h"
#include "runtime/pipeline/migration.h"

#include <nlohmann/json.hpp>
#include "runtime/scheduler/profiler.h"
#include "runtime/telemetry/progress.h"

namespace tandem::pipeline {

using Clock = std::chrono::steady_clock;
using transport::Message;
using transport::MessageType;

namespace {

// Evaluation batches in flight at once: they update nothing, so only the link bounds it.
constexpr std::size_t kEvalWindow = 8;

std::string edgeName() {
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  return std::string(host) + ":" + std::to_string(::getpid());
}

}  // namespace

EdgeTrainer::EdgeTrainer(config::Config config, std::unique_ptr<transport::Transport> transport,
                         telemetry::Metrics* metrics, bool resume)
    : config_(std::move(config)),
      log_(log::get("edge.pipeline")),
      transport_(std::move(transport)),
      model_(buildModel(config_)),
      // With split.point: auto the session starts with every stage on the cloud; the
      // planner's first decision then ships exactly the stages the edge will run.
      split_(config_.split.automatic ? 0 : initialSplitPoint(config_, model_)) {
  train_set_ = loadDataset(config_, data::Split::kTrain);
  test_set_ = loadDataset(config_, data::Split::kTest);
  train_loader_ = makeLoader(config_, train_set_, data::Split::kTrain);
  test_loader_ = makeLoader(config_, test_set_, data::Split::kTest);
  optimizer_ = std::make_unique<optim::StageOptimizers>(config_.optimizer, model_, 0, split_);
  // Fail on a bad codec spec now, naming the key, rather than at the first batch.
  for (const char* key : {"compression.uplink", "compression.downlink"}) {
    const auto& spec = std::string(key) == "compression.uplink" ? config_.compression.uplink : config_.compression.downlink;
    if (spec == "none") continue;
    try {
      codecs_.get(spec);
    } catch (const std::exception& e) {
      config::failAt(config_, key, e.what());
    }
  }
  uplink_codec_ = config_.compression.uplink;
  resume_requested_ = resume;
  if (config_.checkpoint.enabled) {
    checkpoints_ = std::make_unique<checkpoint::CheckpointStore>(config_.checkpoint.dir + "/edge", config_.checkpoint.keep);
  }
  if (resume && !checkpoints_) config::failAt(config_, "checkpoint.enabled", "--resume needs checkpoints enabled");
  if (metrics) {
    metrics_ = &metrics->forEdge(config_.run.name);
    metrics_->split_point->Set(split_);
    metrics_->setCodec(uplink_codec_);
    telemetry::updateProcessMetrics(*metrics_);
  }
  for (const auto& spec : config_.scheduler.codecs) {
    if (spec == "none") continue;
    try {
      codecs_.get(spec);
    } catch (const std::exception& e) {
      config::failAt(config_, "scheduler.codecs", e.what());
    }
  }
  for (const auto& [epoch, point] : config_.scheduler.split_schedule) {
    if (point > model_.numStages()) {
      config::failAt(config_, "scheduler.split_schedule",
                     "split " + std::to_string(point) + " for epoch " + std::to_string(epoch) + " is beyond the " +
                         std::to_string(model_.numStages()) + " stages");
    }
  }
  scheduling_ = config_.scheduler.active(config_.split);
  if (scheduling_) {
    std::vector<std::int64_t> first(static_cast<std::size_t>(std::min(config_.data.batch_size, train_set_->size())));
    for (std::size_t i = 0; i < first.size(); ++i) first[i] = static_cast<std::int64_t>(i);
    edge_profile_ = scheduler::sideProfile(config_, model_, train_set_->gather(first).inputs, config::Role::kEdge);
  }
}

bool EdgeTrainer::useErrorFeedback() const {
  return config_.compression.error_feedback && uplink_codec_ != "none" && split_ > 0;
}

EdgeTrainer::~EdgeTrainer() {
  if (train_loader_) train_loader_->stop();
  if (test_loader_) test_loader_->stop();
}

Message EdgeTrainer::await(MessageType expected, const char* waiting_for,
                           std::optional<std::chrono::milliseconds> timeout, const std::atomic<bool>& stop) {
  const auto start = Clock::now();
  auto next_notice = start + std::chrono::seconds(5);
  while (true) {
    auto message = next(std::chrono::milliseconds(100), stop);
    if (message) {
      const auto type = message->header.type;
      if (type == MessageType::kError) {
        if (metrics_) metrics_->errors_protocol->Increment();
        const auto& e = std::get<transport::ErrorInfo>(message->body);
        throw ProtocolError(std::string("the cloud reported an error while the edge was waiting for ") + waiting_for +
                            ": " + transport::errorCodeName(e.code) + ": " + e.message);
      }
      if (type != expected) {
        throw ProtocolError(std::string("expected ") + transport::messageTypeName(expected) + " from the cloud, got " +
                            transport::messageTypeName(type));
      }
      return std::move(*message);
    }
    const auto now = Clock::now();
    if (timeout && now - start > *timeout) {
      throw TransportError(std::string("waited for ") + waiting_for + " from the cloud at " + transport_->endpoint() +
                           " for " + std::to_string(std::chrono::duration<double>(*timeout).count()).substr(0, 5) +
                           " s without an answer (is cloud_trainer running and reachable?)");
    }
    if (now > next_notice) {
      log_->info("still waiting for {} from {} ({:.0f} s)", waiting_for, transport_->endpoint(),
                 std::chrono::duration<double>(now - start).count());
      next_notice = now + std::chrono::seconds(5);
    }
    // Only the handshake gives up on a stop request; during training the caller drains.
    if (stop && expected == MessageType::kWelcome) throw TransportError("interrupted while connecting");
  }
}

Message EdgeTrainer::request(Message message, MessageType expected, const char* waiting_for,
                             std::optional<std::chrono::milliseconds> timeout, const std::atomic<bool>& stop) {
  outstanding_ = transport::copyMessage(message);
  send(std::move(message));
  try {
    auto reply = await(expected, waiting_for, timeout, stop);
    outstanding_.reset();
    return reply;
  } catch (...) {
    outstanding_.reset();
    throw;
  }
}

std::optional<Message> EdgeTrainer::next(std::chrono::milliseconds wait, const std::atomic<bool>& stop) {
  const auto deadline = Clock::now() + wait;
  while (true) {
    // A gradient that arrived ahead of its turn goes first once its turn has come.
    if (!buffer_.empty()) {
      auto early = early_gradients_.find(buffer_.oldestStep());
      if (early != early_gradients_.end()) {
        Message m = std::move(early->second);
        early_gradients_.erase(early);
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
        if (session_ != 0) recover();
        continue;
      }
      message = std::move(std::get<Message>(*incoming));
      bytes_down_ += message->wire_bytes;
    }
    if (!message) return std::nullopt;
    const auto type = message->header.type;
    const auto step = message->header.step;
    if (type == MessageType::kResyncReply) {
      // The cloud's hint that it lost messages from us: resynchronise. (Late replies to
      // an earlier Resync carry its number and are stale.)
      if (std::get<transport::ResyncInfo>(message->body).request == 0 && session_ != 0) recover();
      continue;
    }
    if (type == MessageType::kGradients) {
      if (!buffer_.contains(step)) {
        log_->debug("dropping a duplicate gradient for step {}", step);
        continue;
      }
      if (step != buffer_.oldestStep()) {
        early_gradients_[step] = std::move(*message);
        continue;
      }
    }
    if (type == MessageType::kEvalResult && !eval_in_flight_.count(step)) {
      log_->debug("dropping a duplicate evaluation result for step {}", step);
      continue;
    }
    if (type == MessageType::kEvalResult) eval_in_flight_.erase(step);
    if (isControlReply(type) && !answersOutstanding(*message)) {
      // A reply to a request sent twice across a link outage: the first copy was used.
      log_->debug("dropping a duplicate {}", transport::messageTypeName(type));
      continue;
    }
    (void)stop;
    return message;
  }
}

bool EdgeTrainer::isControlReply(MessageType type) {
  return type == MessageType::kEpochAck || type == MessageType::kCheckpointAck || type == MessageType::kMigrateAck ||
         type == MessageType::kProbeReply || type == MessageType::kShutdownAck;
}

bool EdgeTrainer::answersOutstanding(const Message& reply) const {
  if (!outstanding_) return false;
  switch (outstanding_->header.type) {
    case MessageType::kEpochEnd:
      return reply.header.type == MessageType::kEpochAck && reply.header.epoch == outstanding_->header.epoch;
    case MessageType::kCheckpoint:
      return reply.header.type == MessageType::kCheckpointAck && reply.header.step == outstanding_->header.step;
    case MessageType::kMigrate: return reply.header.type == MessageType::kMigrateAck;
    case MessageType::kShutdown: return reply.header.type == MessageType::kShutdownAck;
    case MessageType::kProbe:
      return reply.header.type == MessageType::kProbeReply &&
             std::get<transport::ProbeInfo>(reply.body).t0 == std::get<transport::ProbeInfo>(outstanding_->body).t0;
    default: return false;
  }
}

void EdgeTrainer::recover() {
  log_->warn("messages lost or the cloud silent: resynchronising ({} batch(es) in flight)", buffer_.size());
  const auto start = Clock::now();
  auto next_ask = start;
  const std::uint64_t request = ++resync_requests_;
  while (true) {
    if (Clock::now() >= next_ask) {
      transport::ResyncInfo info;
      info.request = request;
      info.oldest_step = buffer_.empty() ? next_step_ : buffer_.oldestStep();
      info.next_step = next_step_;
      info.epoch = static_cast<std::uint32_t>(current_epoch_);
      info.epoch_open = epoch_open_;
      Message m(MessageType::kResync, info);
      m.header.session = session_;
      send(std::move(m));
      next_ask = Clock::now() + std::chrono::seconds(2);
    }
    // Throws TransportError once the cloud has been silent past the reconnect grace.
    auto incoming = transport_->receive(std::chrono::milliseconds(100));
    if (!incoming || transport::asEvent(*incoming)) continue;
    auto message = transport::asMessage(*incoming);
    bytes_down_ += message->wire_bytes;
    if (message->header.type == MessageType::kResyncReply) {
      // Only the answer to this request counts: the cloud sent the gradients it has for
      // our batches just before it.
      if (std::get<transport::ResyncInfo>(message->body).request != request) continue;
      if (metrics_) metrics_->errors_reconnect->Increment();
      applyResync(std::get<transport::ResyncInfo>(message->body));
      log_->info("resynchronised with the cloud after {:.1f} s",
                 std::chrono::duration<double>(Clock::now() - start).count());
      return;
    }
    deferred_.push_back(std::move(*message));
  }
}

void EdgeTrainer::sendEpochBegin() {
  Message begin(MessageType::kEpochBegin, transport::EpochInfo{static_cast<std::uint32_t>(current_staleness_),
                                                               train_loader_->batchesPerEpoch(), 0, 0});
  begin.header.session = session_;
  begin.header.epoch = static_cast<std::uint32_t>(current_epoch_);
  send(std::move(begin));
}

void EdgeTrainer::applyResync(const transport::ResyncInfo& cloud) {
  if (epoch_open_ && (static_cast<int>(cloud.epoch) != current_epoch_ || !cloud.epoch_open)) sendEpochBegin();
  std::size_t resent = 0;
  for (const auto& entry : buffer_.entries()) {
    if (entry.step < cloud.next_step) continue;  // applied: the cloud re-sends its gradient
    torch::Tensor activation;
    if (split_ == 0) {
      activation = entry.input.defined() ? entry.input : entry.activation;
    } else if (entry.activation.defined()) {
      activation = entry.activation.detach();
    } else {
      torch::NoGradGuard no_grad;
      activation = model_.forward(entry.input, 0, split_);
    }
    auto message = activationMessage(entry, activation);
    send(std::move(message));
    ++resent;
  }
  for (const auto& [step, batch] : eval_in_flight_) {
    torch::NoGradGuard no_grad;
    Message message(MessageType::kEvalActivations, std::monostate{});
    message.header.session = session_;
    message.header.epoch = static_cast<std::uint32_t>(current_epoch_);
    message.header.step = step;
    addTensor(message, model_.forward(batch.first, 0, split_), uplink_codec_, codecs_);
    addFrame(message, transport::rawFrame(batch.second));
    send(std::move(message));
  }
  if (outstanding_) send(transport::copyMessage(*outstanding_));
  log_->info("resync: the cloud is at step {}; re-sent {} batch(es), {} evaluation batch(es){}", cloud.next_step,
             resent, eval_in_flight_.size(), outstanding_ ? " and the pending request" : "");
}

void EdgeTrainer::send(Message message) {
  bytes_up_ += wireBytes(message);
  transport_->send(std::move(message));
}

void EdgeTrainer::handshake(const std::atomic<bool>& stop) {
  transport::Hello hello;
  hello.edge_name = edgeName();
  hello.run_name = config_.run.name;
  hello.model = config_.model.name;
  hello.fingerprint = model_.fingerprint();
  hello.num_stages = static_cast<std::uint32_t>(model_.numStages());
  hello.split_point = static_cast<std::uint32_t>(split_);
  hello.batch_size = static_cast<std::uint32_t>(config_.data.batch_size);
  hello.staleness = static_cast<std::uint32_t>(config_.split.staleness);
  hello.replay = config::toString(config_.split.replay);
  hello.uplink_codec = config_.compression.uplink;
  hello.downlink_codec = config_.compression.downlink;
  hello.epochs = static_cast<std::uint32_t>(config_.run.epochs);
  if (resume_requested_) {
    hello.resume = true;
    hello.checkpoints = checkpoints_->validSteps();
    log_->info("resuming: {} valid checkpoint(s) in {}", hello.checkpoints.size(), checkpoints_->directory());
  }
  log_->info("connecting to the cloud at {} (model {}, split {}/{}, K {}, replay {}, uplink {}, downlink {})",
             transport_->endpoint(), hello.model, split_, model_.numStages(), config_.split.staleness,
             hello.replay, hello.uplink_codec, hello.downlink_codec);
  send(Message(MessageType::kHello, hello));
  auto welcome = await(MessageType::kWelcome, "a handshake reply", millis(config_.link.connect_timeout_s), stop);
  session_ = welcome.header.session;
  const auto& body = std::get<transport::Welcome>(welcome.body);
  if (body.resumed) {
    const auto c = checkpoints_->load(body.resume_step);
    if (c.split != static_cast<int>(body.split_point)) {
      throw ProtocolError("checkpoint " + std::to_string(c.step) + " has split " + std::to_string(c.split) +
                          " on the edge but " + std::to_string(body.split_point) + " on the cloud");
    }
    if (c.split != split_) {
      split_ = c.split;
      optimizer_ = std::make_unique<optim::StageOptimizers>(config_.optimizer, model_, 0, split_);
    }
    restoreStages(StageState{c.tensors, c.optimizer_layout}, model_, *optimizer_, 0, split_, false);
    next_step_ = c.step;
    updates_ = c.updates;
    if (!c.codec.empty()) uplink_codec_ = c.codec;
    ResumePoint r;
    r.epoch = c.epoch;
    r.batch = c.batch;
    r.stats.loss_sum = c.loss_sum;
    r.stats.correct = c.correct;
    r.stats.samples = c.samples;
    r.stats.steps = c.steps;
    r.epoch_seconds = c.epoch_seconds;
    r.history = telemetry::historyFromJson(nlohmann::json::parse(c.extra).at("history").dump());
    resume_ = std::move(r);
    log_->info("resumed from checkpoint at step {} (epoch {}, batch {}, split {})", c.step, c.epoch + 1, c.batch,
               split_);
  } else if (resume_requested_) {
    log_->warn("no checkpoint in common with the cloud: starting from the beginning");
  }
  // Start from the cloud's initialisation of the edge's stages (none when resuming).
  auto state = body.resumed ? std::vector<torch::Tensor>{} : model_.state(0, split_);
  if (body.weight_tensors != state.size() || welcome.header.tensors.size() != state.size()) {
    throw ProtocolError("the cloud sent " + std::to_string(welcome.header.tensors.size()) +
                        " weight tensors for the edge's stages, expected " + std::to_string(state.size()));
  }
  torch::NoGradGuard no_grad;
  for (std::size_t i = 0; i < state.size(); ++i) {
    const auto& meta = welcome.header.tensors[i];
    if (meta.shape != state[i].sizes().vec() || meta.dtype != transport::toWire(state[i].scalar_type())) {
      throw ProtocolError("weight tensor " + std::to_string(i) + " from the cloud has shape " + shapeString(meta.shape) +
                          ", expected " + shapeString(state[i].sizes().vec()));
    }
    state[i].copy_(transport::frameToTensor(meta, std::move(welcome.payloads[i]), codecs_));
  }
  log_->info("session {:016x} with cloud '{}' at {}", session_, body.cloud_name, transport_->endpoint());

  if (scheduling_) {
    auto profile = scheduler::describeModel(model_, config_.data.batch_size, config_.optimizer.name);
    profile.edge = edge_profile_;
    if (body.cloud_profile.empty()) {
      log_->warn("the cloud sent no stage profile (scheduler off in its config?): assuming it is as fast as the edge");
      profile.cloud = edge_profile_;
    } else {
      try {
        profile.cloud = scheduler::sideFromJson(body.cloud_profile);
      } catch (const std::exception& e) {
        throw ProtocolError(std::string("the cloud's stage profile is unusable: ") + e.what());
      }
      if (static_cast<int>(profile.cloud.forward_seconds.size()) != model_.numStages()) {
        throw ProtocolError("the cloud's stage profile has " + std::to_string(profile.cloud.forward_seconds.size()) +
                            " stages, the model " + std::to_string(model_.numStages()));
      }
    }
    scheduler_ = std::make_unique<EdgeScheduler>(config_, std::move(profile), link_);
    probe(true, stop);
    const auto e = scheduler_->estimate();
    log_->info("link: uplink {:.2f} Mbit/s, downlink {:.2f} Mbit/s, rtt {:.1f} ms", e.uplink_bps / 1e6,
               e.downlink_bps / 1e6, e.rtt_seconds * 1e3);
  } else {
    probe(false, stop);  // a few pings: RTT and clock offset for the link telemetry
  }
}

void EdgeTrainer::probe(bool bandwidth, const std::atomic<bool>& stop) {
  auto& link = link_;
  link.resetSpacing();
  const auto exchange = [&](std::uint64_t up_bytes, std::uint64_t down_bytes) {
    Message m(MessageType::kProbe, transport::ProbeInfo{transport::steadySeconds(), 0, 0, down_bytes});
    m.header.session = session_;
    if (up_bytes > 0) addFrame(m, transport::rawFrame(torch::zeros({static_cast<std::int64_t>(up_bytes)}, torch::kUInt8)));
    const auto wire = wireBytes(m);
    auto& info = std::get<transport::ProbeInfo>(m.body);
    info.t0 = transport::steadySeconds();
    const double t0 = info.t0;
    auto reply = request(std::move(m), MessageType::kProbeReply, "a probe reply", std::chrono::seconds(120), stop);
    const auto& r = std::get<transport::ProbeInfo>(reply.body);
    if (up_bytes == 0 && down_bytes == 0) link.onPing(t0, r.t1, r.t2, reply.received_at);
    if (up_bytes > 0) link.onUplink(wire, t0, r.t1);
    if (down_bytes > 0) link.onDownlink(reply.wire_bytes, r.t2, reply.received_at);
    link.resetSpacing();
    return reply.received_at - t0;
  };
  for (int i = 0; i < 5; ++i) exchange(0, 0);
  if (!bandwidth) return;
  // Grow the probe until it takes long enough to say something about the rate.
  for (std::uint64_t size = 16 * 1024;; size *= 4) {
    const double up = exchange(size, 0);
    const double down = exchange(0, size);
    const double rtt = link.rttSeconds();
    if ((up - rtt > 0.05 && down - rtt > 0.05) || size * 4 > static_cast<std::uint64_t>(config_.scheduler.probe_bytes)) {
      break;
    }
  }
}

void EdgeTrainer::migrate(int epoch, int to, const std::string& codec, const std::string& trigger,
                          telemetry::RunSummary& summary, const std::atomic<bool>& stop) {
  TANDEM_ENFORCE(buffer_.empty(), "migration with batches in flight");
  const int from = split_;
  if (to == from && codec == uplink_codec_) return;
  const auto start = Clock::now();
  const auto bytes_before = bytes_up_ + bytes_down_;
  Message m(MessageType::kMigrate, transport::MigrateInfo{static_cast<std::uint32_t>(from),
                                                          static_cast<std::uint32_t>(to), codec, {}});
  m.header.session = session_;
  if (to < from) packStages(m, model_, *optimizer_, to, from);
  auto ack = request(std::move(m), MessageType::kMigrateAck, "a migration acknowledgement", std::nullopt, stop);
  if (to > from) unpackStages(ack, model_, *optimizer_, from, to, codecs_);
  split_ = to;
  uplink_codec_ = codec;
  telemetry::Repartition r;
  r.epoch = epoch;
  r.step = static_cast<std::int64_t>(next_step_);
  r.from = from;
  r.to = to;
  r.codec = codec;
  r.trigger = trigger;
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  r.bytes = bytes_up_ + bytes_down_ - bytes_before;
  summary.repartitions.push_back(r);
  if (metrics_) {
    metrics_->repartitions->Increment();
    metrics_->migration->Observe(r.seconds);
    metrics_->split_point->Set(to);
    metrics_->setCodec(codec);
  }
  log_->info("re-partitioned ({}): split {} → {}, uplink {}, {} moved in {:.3f} s", trigger, from, to, codec,
             formatBytes(static_cast<double>(r.bytes)), r.seconds);
}

void EdgeTrainer::replan(int epoch, std::int64_t remaining, int staleness, const std::string& trigger,
                         telemetry::RunSummary& summary, const std::atomic<bool>& stop) {
  auto decision = scheduler_->plan(split_, uplink_codec_, staleness, remaining);
  const auto step = static_cast<std::int64_t>(next_step_);
  auto scheduled = config_.scheduler.split_schedule.find(epoch);
  if (trigger != "bandwidth" && scheduled != config_.scheduler.split_schedule.end()) {
    decision.split = scheduled->second;
    decision.codec = uplink_codec_;
    decision.changed = decision.split != split_;
    decision.reason = "scheduled";
    decision.predicted_epoch_seconds =
        scheduler_->predict(decision.split, decision.codec, staleness, remaining) +
        scheduler_->costModel().migrationSeconds(split_, decision.split, scheduler_->estimate());
    const double current = decision.predicted_epoch_seconds;
    migrate(epoch, decision.split, decision.codec, "scheduled", summary, stop);
    scheduler_->begin(std::move(decision), "scheduled", epoch, step, true, current);
    return;
  }
  if (config_.split.automatic) {
    const auto to = decision.split;
    const auto codec = decision.codec;
    const double predicted = decision.predicted_epoch_seconds;
    if (decision.changed) log_->info("planner: {} → split {}, uplink {} ({})", trigger, to, codec, decision.reason);
    migrate(epoch, to, codec, trigger, summary, stop);
    scheduler_->begin(std::move(decision), trigger, epoch, step, true, predicted);
  } else {
    // Advice only: log what the planner would do and what it predicts for the fixed pair.
    const double current = scheduler_->predict(split_, uplink_codec_, staleness, remaining);
    scheduler_->begin(std::move(decision), trigger, epoch, step, false, current);
  }
}

torch::Tensor EdgeTrainer::forwardWithStash(const torch::Tensor& input, ReplayEntry& entry) {
  // retain: run the forward on a deep copy of the edge's stages so the graph's leaves are
  // the weights of this moment; later optimizer steps change the originals, not them.
  torch::Tensor x = input;
  for (int i = 0; i < split_; ++i) {
    auto copy = std::dynamic_pointer_cast<models::StageImpl>(model_.stage(i)->clone());
    TANDEM_ENFORCE(copy != nullptr, "stage ", i, " did not clone into a Stage");
    x = copy->forward(x);
    entry.stash.push_back(copy);
  }
  // The copies updated their BatchNorm statistics: carry them over to the real stages.
  torch::NoGradGuard no_grad;
  auto originals = model_.buffers(0, split_);
  std::size_t k = 0;
  for (const auto& stage : entry.stash) {
    for (const auto& b : stage->buffers()) originals[k++].copy_(b);
  }
  return x;
}

Message EdgeTrainer::activationMessage(const ReplayEntry& entry, const torch::Tensor& activation) {
  Message message(MessageType::kActivations, std::monostate{});
  message.header.session = session_;
  message.header.epoch = static_cast<std::uint32_t>(entry.epoch);
  message.header.step = entry.step;
  const auto& spec = uplink_codec_;
  if (useErrorFeedback()) {
    const auto values = activation.detach().contiguous();
    auto bytes = error_feedback_.encode(codecs_.get(spec), entry.step, values.data_ptr<float>(), values.sizes().vec());
    addFrame(message, transport::payloadFrame(values, codecs_.get(spec).spec(), std::move(bytes)));
  } else {
    addTensor(message, activation, spec, codecs_);
  }
  addFrame(message, transport::rawFrame(entry.labels));
  return message;
}

void EdgeTrainer::sendTrainBatch(int epoch, const data::Batch& batch) {
  ReplayEntry entry;
  entry.step = next_step_++;
  entry.samples = batch.size();
  entry.updates_at_send = updates_;
  const auto forward_start = Clock::now();
  torch::Tensor activation;
  if (split_ == 0) {
    activation = batch.inputs;
  } else if (config_.split.replay == config::Replay::kRetain) {
    activation = forwardWithStash(batch.inputs, entry);
    entry.activation = activation;
  } else {
    torch::NoGradGuard no_grad;
    activation = model_.forward(batch.inputs, 0, split_);
    entry.input = batch.inputs;
  }

  const auto encode_start = Clock::now();
  entry.epoch = epoch;
  entry.labels = batch.labels;
  if (split_ == 0) entry.input = batch.inputs;  // re-sent as is after a link outage
  Message message = activationMessage(entry, activation);
  const auto encode_end = Clock::now();
  const double encoded_bytes = static_cast<double>(message.payloads.front().size());
  entry.wire_bytes = wireBytes(message);
  entry.sent_at = transport::steadySeconds();
  send(std::move(message));
  buffer_.push(std::move(entry));
  const double forward_s = std::chrono::duration<double>(encode_start - forward_start).count();
  const double encode_s = std::chrono::duration<double>(encode_end - encode_start).count();
  pipeline_.edge_compute_s += forward_s + encode_s;
  if (metrics_) {
    metrics_->edge_forward->Observe(forward_s);
    metrics_->encode->Observe(encode_s);
    if (encoded_bytes > 0) {
      metrics_->compression_uplink->Set(static_cast<double>(activation.numel()) * 4.0 / encoded_bytes);
    }
    metrics_->replay_depth->Set(static_cast<double>(buffer_.size()));
  }
}

void EdgeTrainer::applyGradient(Message& message, RunningStats& stats) {
  ReplayEntry entry = buffer_.pop(message.header.step);
  const auto& result = std::get<transport::StepResult>(message.body);
  stats.add(result.loss, result.correct, entry.samples);
  LinkSample sample;
  sample.step = static_cast<std::int64_t>(entry.step);
  sample.seconds = std::chrono::duration<double>(Clock::now() - started_).count();
  sample.epoch = static_cast<int>(message.header.epoch);
  sample.split = split_;
  sample.codec = uplink_codec_;
  sample.loss = result.loss;
  link_.onUplink(entry.wire_bytes, entry.sent_at, result.arrived_at);
  link_.onDownlink(message.wire_bytes, result.replied_at, message.received_at);
  sample.uplink_bps = link_.uplinkBps().value_or(0.0);
  sample.downlink_bps = link_.downlinkBps().value_or(0.0);
  sample.rtt_seconds = link_.rttSeconds();
  link_history_.push_back(sample);
  pipeline_.cloud_compute_s += result.compute_seconds;
  // Transfer time of this step at the link estimate of this moment (a rate that changes
  // mid-run is charged to the steps it applied to).
  if (sample.uplink_bps > 0) pipeline_.upload_s += static_cast<double>(entry.wire_bytes) * 8.0 / sample.uplink_bps;
  if (sample.downlink_bps > 0) {
    pipeline_.download_s += static_cast<double>(message.wire_bytes) * 8.0 / sample.downlink_bps;
  }
  pipeline_samples_ += entry.samples;
  ++pipeline_steps_;
  const auto backward_start = Clock::now();
  const int staleness = static_cast<int>(updates_ - entry.updates_at_send);
  replay_stats_.max_staleness = std::max(replay_stats_.max_staleness, staleness);
  ++replay_stats_.staleness[staleness];

  if (split_ > 0) {
    expectTensorCount(message, 1);
    models::Shape boundary = model_.boundaryShapes()[static_cast<std::size_t>(split_)];
    expectBatchTensor(message, 0, transport::DType::kFloat32, boundary, entry.samples, "activation gradient");
    if (message.header.tensors[0].shape[0] != entry.samples) {
      throw ProtocolError("gradient for step " + std::to_string(entry.step) + " has batch " +
                          std::to_string(message.header.tensors[0].shape[0]) + ", the batch had " +
                          std::to_string(entry.samples));
    }
    const auto decode_start = Clock::now();
    auto grad = transport::frameToTensor(message.header.tensors[0], std::move(message.payloads[0]), codecs_);
    if (metrics_) metrics_->decode->Observe(std::chrono::duration<double>(Clock::now() - decode_start).count());
    if (useErrorFeedback()) {
      grad = grad.contiguous();
      error_feedback_.correct(entry.step, grad.data_ptr<float>(), static_cast<std::size_t>(grad.numel()));
    }
    optimizer_->zeroGrad();
    if (config_.split.replay == config::Replay::kRetain) {
      entry.activation.backward(grad);
      auto params = model_.parameters(0, split_);
      std::size_t k = 0;
      for (const auto& stage : entry.stash) {
        for (const auto& p : stage->parameters()) params[k++].mutable_grad() = p.grad();
      }
    } else {
      // Replay the forward with the current weights. BatchNorm statistics were updated by
      // the first forward; restore them (after backward, which checks they are unchanged)
      // so the replay does not count the batch twice.
      std::vector<torch::Tensor> saved;
      auto buffers = model_.buffers(0, split_);
      for (const auto& b : buffers) saved.push_back(b.clone());
      model_.forward(entry.input, 0, split_).backward(grad);
      torch::NoGradGuard no_grad;
      for (std::size_t i = 0; i < buffers.size(); ++i) buffers[i].copy_(saved[i]);
    }
    if (staleness == 0 || config_.split.compensation == config::Compensation::kNone) {
      optimizer_->step();
    } else if (config_.split.compensation == config::Compensation::kLr || config_.optimizer.name != config::OptimizerKind::kSgd) {
      optimizer_->stepWith(1.0 / (1.0 + staleness), -1.0);
    } else {
      const double s_frac = static_cast<double>(staleness) / (staleness + 1.0);
      optimizer_->stepWith(1.0, std::max(0.0, config_.optimizer.momentum - s_frac));
    }
  } else {
    expectTensorCount(message, 0);
  }
  ++updates_;
  const double backward_s = std::chrono::duration<double>(Clock::now() - backward_start).count();
  pipeline_.edge_compute_s += backward_s;
  if (metrics_) {
    auto& m = *metrics_;
    m.edge_replay_backward->Observe(backward_s);
    m.staleness->Observe(staleness);
    m.steps->Increment();
    m.samples->Increment(static_cast<double>(entry.samples));
    m.train_loss->Set(stats.loss());
    m.train_accuracy->Set(stats.accuracy());
    m.replay_depth->Set(static_cast<double>(buffer_.size()));
    m.split_point->Set(split_);
    m.setCodec(uplink_codec_);
    telemetry::TrainerMetrics::advance(m.bytes_uplink, static_cast<double>(bytes_up_));
    telemetry::TrainerMetrics::advance(m.bytes_downlink, static_cast<double>(bytes_down_));
    m.bandwidth_uplink->Set(sample.uplink_bps / 8.0);
    m.bandwidth_downlink->Set(sample.downlink_bps / 8.0);
    m.rtt->Set(sample.rtt_seconds);
    telemetry::TrainerMetrics::advance(m.errors_rejected, static_cast<double>(transport_->stats().messages_rejected));
    if (updates_ % 16 == 1) telemetry::updateProcessMetrics(m);
  }
}

void EdgeTrainer::trainEpoch(int epoch, int staleness, RunningStats& stats, telemetry::RunSummary& summary,
                             std::int64_t first_batch, double seconds_before, const std::atomic<bool>& stop) {
  const auto epoch_start = Clock::now();
  buffer_.setCapacity(static_cast<std::size_t>(staleness) + 1);
  model_.train(true);
  train_loader_->startEpoch(epoch, first_batch);
  char label[64];
  std::snprintf(label, sizeof label, "epoch %d/%d", epoch + 1, config_.run.epochs);
  telemetry::Progress progress(label, train_loader_->batchesPerEpoch(), telemetry::Progress::stderrIsInteractive());
  const auto drainOne = [&](bool wait) {
    std::optional<Message> message;
    if (wait) {
      message = await(MessageType::kGradients, "a gradient", std::nullopt, stop);
    } else {
      message = next(std::chrono::milliseconds(0), stop);
      if (message && message->header.type != MessageType::kGradients) {
        if (message->header.type == MessageType::kError) {
          const auto& e = std::get<transport::ErrorInfo>(message->body);
          throw ProtocolError(std::string("the cloud reported an error: ") + transport::errorCodeName(e.code) + ": " +
                              e.message);
        }
        throw ProtocolError(std::string("expected Gradients from the cloud, got ") +
                            transport::messageTypeName(message->header.type));
      }
    }
    if (!message) return false;
    applyGradient(*message, stats);
    char status[64];
    std::snprintf(status, sizeof status, "loss %.4f acc %.2f%%", stats.loss(), stats.accuracy() * 100);
    progress.update(stats.steps, stats.samples, status);
    return true;
  };
  const std::int64_t batches = train_loader_->batchesPerEpoch();
  std::int64_t sent = first_batch;
  const auto every = config_.checkpoint.enabled ? config_.checkpoint.every_steps : 0;
  const auto elapsed = [&] { return seconds_before + std::chrono::duration<double>(Clock::now() - epoch_start).count(); };
  while (auto batch = train_loader_->next()) {
    if (stop) break;
    if (every > 0 && sent > first_batch && next_step_ % static_cast<std::uint64_t>(every) == 0) {
      while (!buffer_.empty()) drainOne(true);
      checkpoint(epoch, sent, stats, elapsed(), summary);
    }
    // Apply at most one gradient that has already arrived per batch sent: draining them all
    // at once replays a convoy of batches while the uplink sits idle (the cost model's
    // simulation shows the interleaved loop is never slower).
    if (!buffer_.empty()) drainOne(false);
    while (buffer_.full()) drainOne(true);
    if (scheduler_ && config_.split.automatic && scheduler_->bandwidthMoved()) {
      // The link changed under us: land what is in flight, then re-plan the rest.
      while (!buffer_.empty()) drainOne(true);
      replan(epoch, batches - sent, staleness, "bandwidth", summary, stop);
    }
    sendTrainBatch(epoch, *batch);
    ++sent;
  }
  train_loader_->stop();
  while (!buffer_.empty()) drainOne(true);  // every update lands, also when stopping
  progress.finish();
  if (stop && sent < batches) checkpoint(epoch, sent, stats, elapsed(), summary);  // resume continues here
  replay_stats_.peak_buffer = std::max(replay_stats_.peak_buffer, buffer_.peakSize());
}

RunningStats EdgeTrainer::evaluateEpoch(int epoch, const std::atomic<bool>& stop) {
  torch::NoGradGuard no_grad;
  model_.train(false);
  RunningStats stats;
  std::size_t in_flight = 0;
  std::uint64_t step = 0;
  const auto receiveOne = [&] {
    auto message = await(MessageType::kEvalResult, "an evaluation result", std::nullopt, stop);
    const auto& r = std::get<transport::StepResult>(message.body);
    stats.add(r.loss, r.correct, r.samples);
    --in_flight;
  };
  test_loader_->startEpoch(epoch);
  while (auto batch = test_loader_->next()) {
    if (stop) break;
    while (in_flight >= kEvalWindow) receiveOne();
    Message message(MessageType::kEvalActivations, std::monostate{});
    message.header.session = session_;
    message.header.epoch = static_cast<std::uint32_t>(epoch);
    message.header.step = step;
    addTensor(message, model_.forward(batch->inputs, 0, split_), uplink_codec_, codecs_);
    addFrame(message, transport::rawFrame(batch->labels));
    eval_in_flight_[step++] = {batch->inputs, batch->labels};
    send(std::move(message));
    ++in_flight;
  }
  test_loader_->stop();
  while (in_flight > 0) receiveOne();
  model_.train(true);
  return stats;
}

void EdgeTrainer::checkpoint(int epoch, std::int64_t batch, const RunningStats& stats, double epoch_seconds,
                             const telemetry::RunSummary& summary) {
  if (!checkpoints_) return;
  TANDEM_ENFORCE(buffer_.empty(), "checkpoint with batches in flight");
  // The cloud writes first: a checkpoint only the cloud has is ignored when resuming.
  Message m(MessageType::kCheckpoint, transport::CheckpointInfo{static_cast<std::uint32_t>(epoch), batch});
  m.header.session = session_;
  m.header.step = next_step_;
  std::atomic<bool> no_stop{false};
  request(std::move(m), MessageType::kCheckpointAck, "a checkpoint acknowledgement", std::nullopt, no_stop);
  const auto state = captureStages(model_, *optimizer_, 0, split_);
  checkpoint::Checkpoint c;
  c.role = "edge";
  c.run_name = config_.run.name;
  c.step = next_step_;
  c.epoch = epoch;
  c.batch = batch;
  c.split = split_;
  c.staleness = config_.split.stalenessAt(epoch);
  c.codec = uplink_codec_;
  c.updates = updates_;
  c.loss_sum = stats.loss_sum;
  c.correct = stats.correct;
  c.samples = stats.samples;
  c.steps = stats.steps;
  c.epoch_seconds = epoch_seconds;
  c.optimizer_layout = state.optimizer_layout;
  c.tensors = state.tensors;
  c.extra = nlohmann::json{{"history", nlohmann::json::parse(telemetry::historyToJson(summary.history))}}.dump();
  const auto path = checkpoints_->save(c);
  log_->debug("checkpoint {} (epoch {}, batch {})", path, epoch + 1, batch);
}

void EdgeTrainer::shutdown(bool completed, const std::string& reason) {
  try {
    Message message(MessageType::kShutdown, transport::ShutdownInfo{reason, completed});
    message.header.session = session_;
    std::atomic<bool> no_stop{false};
    request(std::move(message), MessageType::kShutdownAck, "a shutdown acknowledgement", std::chrono::seconds(5),
            no_stop);
  } catch (const std::exception& e) {
    log_->warn("orderly shutdown incomplete: {}", e.what());
  }
  transport_->close(std::chrono::milliseconds(1000));
}

telemetry::RunSummary EdgeTrainer::run(const std::atomic<bool>& stop) {
  const auto start = Clock::now();
  auto summary = newRunSummary(config::Role::kEdge, "split", config_.run.name, config_.model.name, config_.data.dataset,
                               config_.run.epochs);

  started_ = start;
  handshake(stop);
  log_->info("training: {} train / {} test samples, {} batches of {} per epoch", train_set_->size(),
             test_set_->size(), train_loader_->batchesPerEpoch(), config_.data.batch_size);
  int first_epoch = 0;
  if (resume_) {
    first_epoch = resume_->epoch;
    summary.history = resume_->history;
  }
  if (scheduler_ && first_epoch < config_.run.epochs) {
    // The first decision belongs to setting up, like the handshake: moving the chosen
    // stages is not charged to the first epoch's time.
    const std::int64_t remaining = train_loader_->batchesPerEpoch() - (resume_ ? resume_->batch : 0);
    replan(first_epoch, remaining, config_.split.stalenessAt(first_epoch), resume_ ? "resume" : "start", summary,
           stop);
  }
  for (int epoch = first_epoch; epoch < config_.run.epochs && !stop; ++epoch) {
    const auto epoch_start = Clock::now();
    std::int64_t first_batch = 0;
    double seconds_before = 0.0;
    RunningStats train;
    if (resume_ && epoch == resume_->epoch) {
      first_batch = resume_->batch;
      seconds_before = resume_->epoch_seconds;
      train = resume_->stats;
    }
    const auto up_before = bytes_up_;
    const auto down_before = bytes_down_;
    const int staleness = config_.split.stalenessAt(epoch);
    const double lr = optim::learningRate(config_.optimizer, epoch, config_.run.epochs);
    if (scheduler_ && epoch > first_epoch) {
      probe(false, stop);  // the link is idle between epochs: refresh the RTT
      replan(epoch, train_loader_->batchesPerEpoch(), staleness, "epoch", summary, stop);
    }
    optimizer_->setLearningRate(lr);
    current_epoch_ = epoch;
    current_staleness_ = staleness;
    epoch_open_ = true;
    sendEpochBegin();

    trainEpoch(epoch, staleness, train, summary, first_batch, seconds_before, stop);
    const double train_seconds =
        seconds_before + std::chrono::duration<double>(Clock::now() - epoch_start).count();
    if (scheduler_) scheduler_->finish(static_cast<std::int64_t>(next_step_));
    Message end(MessageType::kEpochEnd, transport::EpochInfo{static_cast<std::uint32_t>(staleness), train.steps,
                                                             train.loss(), train.accuracy()});
    end.header.session = session_;
    end.header.epoch = static_cast<std::uint32_t>(epoch);
    epoch_open_ = false;
    auto ack = request(std::move(end), MessageType::kEpochAck, "an end-of-epoch acknowledgement", std::nullopt, stop);
    const auto& cloud = std::get<transport::EpochInfo>(ack.body);
    if (cloud.steps != train.steps) {
      throw ProtocolError("the cloud applied " + std::to_string(cloud.steps) + " steps in epoch " +
                          std::to_string(epoch + 1) + ", the edge " + std::to_string(train.steps));
    }
    if (stop) break;
    const auto test = evaluateEpoch(epoch, stop);
    if (stop) break;

    auto record = epochRecord(epoch, lr, train, test, train_seconds,
                              std::chrono::duration<double>(Clock::now() - epoch_start).count(), split_, staleness);
    record.bytes_uplink = bytes_up_ - up_before;
    record.bytes_downlink = bytes_down_ - down_before;
    summary.history.push_back(record);
    checkpoint(epoch + 1, 0, RunningStats{}, 0.0, summary);
    if (metrics_) {
      metrics_->epoch->Set(epoch + 1);
      metrics_->test_loss->Set(record.test_loss);
      metrics_->test_accuracy->Set(record.test_accuracy);
    }
    log_->info("{} | split {} K {} | up {} down {}", epochLine(record, config_.run.epochs), split_, staleness,
               formatBytes(static_cast<double>(record.bytes_uplink)),
               formatBytes(static_cast<double>(record.bytes_downlink)));
  }
  summary.interrupted = stop.load();
  shutdown(!summary.interrupted, summary.interrupted ? "interrupted" : "completed");
  summary.bytes_uplink = bytes_up_;
  summary.bytes_downlink = bytes_down_;
  if (pipeline_steps_ > 0) {
    auto p = pipeline_;
    const double steps = static_cast<double>(pipeline_steps_);
    p.edge_compute_s /= steps;
    p.cloud_compute_s /= steps;
    p.upload_s /= steps;
    p.download_s /= steps;
    const std::pair<double, const char*> stages[] = {
        {p.edge_compute_s, "edge compute"}, {p.upload_s, "upload"}, {p.cloud_compute_s, "cloud compute"},
        {p.download_s, "download"}};
    const auto* slowest = &stages[0];
    for (const auto& st : stages) {
      if (st.first > slowest->first) slowest = &st;
    }
    p.bottleneck = slowest->second;
    const double samples_per_step = static_cast<double>(pipeline_samples_) / std::max(1.0, steps);
    p.bound_samples_per_second = slowest->first > 0 ? samples_per_step / slowest->first : 0.0;
    p.achieved_ratio = p.bound_samples_per_second > 0 ? summary.trainSamplesPerSecond() / p.bound_samples_per_second
                                                      : 0.0;
    summary.pipeline = p;
  }
  summary.wall_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const auto path = telemetry::writeSummary(config_.run.output_dir, summary);
  std::string timeline = "step,seconds,epoch,split,codec,loss,uplink_mbps,downlink_mbps,rtt_ms\n";
  for (const auto& t : link_history_) {
    timeline += fmt::format("{},{:.4f},{},{},{},{:.5f},{:.3f},{:.3f},{:.3f}\n", t.step, t.seconds, t.epoch, t.split,
                            t.codec, t.loss, t.uplink_bps / 1e6, t.downlink_bps / 1e6, t.rtt_seconds * 1e3);
  }
  telemetry::writeFileAtomically(config_.run.output_dir + "/timeline-edge.csv", timeline);
  log_->info("{}summary written to {} (replay buffer peak {}, max staleness {})",
             summary.interrupted ? "interrupted; " : "", path, replay_stats_.peak_buffer, replay_stats_.max_staleness);
  return summary;
}

}  // namespace tandem::pipeline

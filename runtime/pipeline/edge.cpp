#include "runtime/pipeline/edge.h"

#include <fmt/format.h>
#include <torch/utils.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>

#include "runtime/common/log.h"
#include "runtime/common/strings.h"
#include "runtime/optim/schedule.h"
#include "runtime/pipeline/fleet.h"
#include "runtime/pipeline/link.h"
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

double since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

}  // namespace

double EdgeEpoch::trainSeconds() const { return seconds_before + since(start); }

EdgeTrainer::EdgeTrainer(config::Config config, std::unique_ptr<transport::Transport> transport,
                         telemetry::Metrics* metrics, bool resume)
    : config_(std::move(config)),
      log_(log::get("edge.pipeline")),
      metrics_(metrics ? &metrics->forEdge(config_.run.name) : nullptr),
      session_(std::make_unique<session::EdgeSession>(std::move(transport), metrics_)),
      model_(buildModel(config_)),
      // With split.point: auto the session starts with every stage on the cloud; the
      // planner's first decision then ships exactly the stages the edge will run.
      split_(config_.split.automatic ? 0 : initialSplitPoint(config_, model_)),
      replay_(config_.split, config_.optimizer, config_.compression.error_feedback) {
  train_set_ = loadDataset(config_, data::Split::kTrain);
  test_set_ = loadDataset(config_, data::Split::kTest);
  train_loader_ = makeLoader(config_, train_set_, data::Split::kTrain);
  test_loader_ = makeLoader(config_, test_set_, data::Split::kTest);
  optimizer_ = std::make_unique<optim::StageOptimizers>(config_.optimizer, model_, 0, split_);
  uplink_codec_ = config_.compression.uplink;
  downlink_codec_ = config_.compression.downlink;
  resume_requested_ = resume;
  if (config_.checkpoint.enabled) {
    checkpoints_ =
        std::make_unique<checkpoint::CheckpointStore>(config_.checkpoint.dir + "/edge", config_.checkpoint.keep);
  }
  if (resume && !checkpoints_) config::failAt(config_, "checkpoint.enabled", "--resume needs checkpoints enabled");
  if (metrics_) {
    metrics_->split_point->Set(split_);
    metrics_->setCodec(uplink_codec_);
    telemetry::updateProcessMetrics(*metrics_);
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

EdgeTrainer::~EdgeTrainer() {
  if (train_loader_) train_loader_->stop();
  if (test_loader_) test_loader_->stop();
}

Message EdgeTrainer::newMessage(MessageType type, transport::Body body, int epoch) const {
  Message message(type, std::move(body));
  message.header.epoch = static_cast<std::uint32_t>(epoch);
  return message;
}

void EdgeTrainer::handshake(const std::atomic<bool>& stop) {
  transport::Hello hello = helloFor(config_, model_, split_, edgeName());
  if (resume_requested_) {
    hello.resume = true;
    hello.checkpoints = checkpoints_->validSteps();
    log_->info("resuming: {} valid checkpoint(s) in {}", hello.checkpoints.size(), checkpoints_->directory());
  }
  log_->info("connecting to the cloud at {} (model {}, split {}/{}, K {}, replay {}, uplink {}, downlink {})",
             session_->endpoint(), hello.model, split_, model_.numStages(), config_.split.staleness, hello.replay,
             hello.uplink_codec, hello.downlink_codec);
  auto welcome = session_->connect(Message(MessageType::kHello, hello), millis(config_.link.connect_timeout_s), stop);
  installWelcome(welcome);
  const auto& body = std::get<transport::Welcome>(welcome.body);
  log_->info("session {:016x} with cloud '{}' at {}", session_->id(), body.cloud_name, session_->endpoint());
  setUpScheduler(body, stop);
}

void EdgeTrainer::installWelcome(Message& welcome) {
  const auto& body = std::get<transport::Welcome>(welcome.body);
  fleet_ = body.fleet;
  average_every_ = body.average_every;
  if (fleet_ && (config_.split.automatic || !config_.scheduler.split_schedule.empty())) {
    config::failAt(config_, config_.split.automatic ? "split.point" : "scheduler.split_schedule",
                   "the cloud trains a shared fleet (fleet.mode: shared), where an edge cannot re-partition yet: "
                   "give it a fixed split.point");
  }
  if (fleet_) {
    log_->info("the cloud trains a shared fleet: this edge's stages are averaged with the others' {}",
               average_every_ > 0 ? fmt::format("every {} steps and at each epoch's end", average_every_)
                                  : std::string("at each epoch's end"));
  }
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
    resume_ = restoreRun(c, model_, *optimizer_, 0, split_);
    next_step_ = c.step;
    replay_.setUpdates(c.updates);
    session_->setNextTrainStep(c.step);
    if (!c.codec.empty()) uplink_codec_ = c.codec;
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
      throw ProtocolError("weight tensor " + std::to_string(i) + " from the cloud has shape " +
                          shapeString(meta.shape) + ", expected " + shapeString(state[i].sizes().vec()));
    }
    state[i].copy_(transport::frameToTensor(meta, std::move(welcome.payloads[i]), codecs_));
  }
}

void EdgeTrainer::sendTrainBatch(int epoch, const data::Batch& batch) {
  const auto step = next_step_++;
  const auto forward_start = Clock::now();
  const auto activation = replay_.forward(model_, split_, batch, step, epoch);
  const auto encode_start = Clock::now();
  Message message = newMessage(MessageType::kActivations, std::monostate{}, epoch);
  message.header.step = step;
  // At p = 0 without a codec the input goes as the dataset's own bytes (uint8 pixels: a
  // quarter of float32); the cloud normalises them as the edge would have.
  const bool pixels = split_ == 0 && uplink_codec_ == "none" && batch.pixels.defined();
  addFrame(message, pixels ? transport::rawFrame(batch.pixels)
                           : replay_.encode(step, activation, uplink_codec_, split_, codecs_));
  addFrame(message, transport::rawFrame(batch.labels));
  const auto encode_end = Clock::now();
  const double encoded_bytes = static_cast<double>(message.payloads.front().size());
  const double sent_at = transport::steadySeconds();
  replay_.markSent(sent_at, session_->post(std::move(message)));
  const double forward_s = std::chrono::duration<double>(encode_start - forward_start).count();
  const double encode_s = std::chrono::duration<double>(encode_end - encode_start).count();
  pipeline_.edge_compute_s += forward_s + encode_s;
  if (scheduler_) scheduler_->noteCompute(forward_s + encode_s, 0.0);
  if (metrics_) {
    metrics_->edge_forward->Observe(forward_s);
    metrics_->encode->Observe(encode_s);
    if (encoded_bytes > 0) {
      metrics_->compression_uplink->Set(static_cast<double>(activation.numel()) * 4.0 / encoded_bytes);
    }
    metrics_->replay_depth->Set(static_cast<double>(replay_.inFlight()));
  }
}

std::optional<EdgeTrainer::Failure> EdgeTrainer::applyGradient(Message& message, RunningStats& stats) {
  const auto backward_start = Clock::now();
  const auto step = message.header.step;
  const auto samples = replay_.oldest(step).samples;
  const auto& result = std::get<transport::StepResult>(message.body);
  torch::Tensor grad;
  if (split_ > 0) {
    expectTensorCount(message, 1);
    models::Shape boundary = model_.boundaryShapes()[static_cast<std::size_t>(split_)];
    expectBatchTensor(message, 0, transport::DType::kFloat32, boundary, samples, "activation gradient");
    if (message.header.tensors[0].shape[0] != samples) {
      throw ProtocolError("gradient for step " + std::to_string(step) + " has batch " +
                          std::to_string(message.header.tensors[0].shape[0]) + ", the batch had " +
                          std::to_string(samples));
    }
    const auto decode_start = Clock::now();
    grad = transport::frameToTensor(message.header.tensors[0], std::move(message.payloads[0]), codecs_);
    if (metrics_) metrics_->decode->Observe(since(decode_start));
  } else {
    expectTensorCount(message, 0);
  }
  // The divergence guard: the cloud's verdict on its part of the step, then the loss it
  // reports, then (in apply) the returned gradient and the edge stages' own gradients.
  if (result.verdict != static_cast<std::uint8_t>(Verdict::kOk) || !std::isfinite(result.loss)) {
    replay_.discard(step);
    const auto reason = result.verdict != 0 ? static_cast<Verdict>(result.verdict) : Verdict::kNonFinite;
    return Failure{step, result.verdict != 0 ? "cloud" : "edge", reason, result.loss};
  }
  const bool poison = injectNanAt(config_.guard, config::Role::kEdge, step);
  const auto applied = replay_.apply(step, grad, model_, split_, *optimizer_, poison);
  if (!applied.applied) return Failure{step, "edge", Verdict::kNonFinite, result.loss};
  stats.add(result.loss, result.correct, applied.entry.samples);
  ++steps_since_round_;
  samples_since_round_ += applied.entry.samples;
  recordStep(applied, message, stats, since(backward_start));
  const auto every = static_cast<std::uint64_t>(config_.guard.snapshot_every_steps);
  if (current_ && (step + 1) % every == 0) takeSnapshot(step + 1, current_->epoch, applied.entry.batch + 1, stats);
  return std::nullopt;
}

RunPosition EdgeTrainer::positionAt(std::uint64_t step, int epoch, std::int64_t batch,
                                    const RunningStats& stats) const {
  RunPosition position;
  position.step = step;
  position.epoch = epoch;
  position.batch = batch;
  position.split = split_;
  position.staleness = stalenessFor(epoch);
  position.codec = uplink_codec_;
  position.updates = replay_.updates();
  position.stats = stats;
  return position;
}

void EdgeTrainer::takeSnapshot(std::uint64_t step, int epoch, std::int64_t batch, const RunningStats& stats) {
  snapshots_.add(
      captureRun("edge", config_.run.name, positionAt(step, epoch, batch, stats), model_, *optimizer_, 0, split_));
}

void EdgeTrainer::recordStep(const AppliedGradient& applied, const Message& message, const RunningStats& stats,
                             double backward_seconds) {
  const auto& entry = applied.entry;
  const auto& result = std::get<transport::StepResult>(message.body);
  link_.onUplink(entry.wire_bytes, entry.sent_at, result.arrived_at);
  link_.onDownlink(message.wire_bytes, result.replied_at, message.received_at);
  LinkSample sample;
  sample.step = static_cast<std::int64_t>(entry.step);
  sample.seconds = since(started_);
  sample.epoch = static_cast<int>(message.header.epoch);
  sample.split = split_;
  sample.codec = uplink_codec_;
  sample.loss = result.loss;
  sample.uplink_bps = link_.uplinkBps().value_or(0.0);
  sample.downlink_bps = link_.downlinkBps().value_or(0.0);
  sample.rtt_seconds = link_.rttSeconds();
  link_history_.push_back(sample);
  // Transfer time of this step at the link estimate of this moment (a rate that changes
  // mid-run is charged to the steps it applied to).
  pipeline_.cloud_compute_s += result.compute_seconds;
  if (sample.uplink_bps > 0) pipeline_.upload_s += static_cast<double>(entry.wire_bytes) * 8.0 / sample.uplink_bps;
  if (sample.downlink_bps > 0) {
    pipeline_.download_s += static_cast<double>(message.wire_bytes) * 8.0 / sample.downlink_bps;
  }
  pipeline_.edge_compute_s += backward_seconds;
  if (scheduler_) scheduler_->noteCompute(backward_seconds, result.compute_seconds);
  pipeline_.samples += entry.samples;
  ++pipeline_.steps;
  if (!metrics_) return;
  auto& m = *metrics_;
  m.edge_replay_backward->Observe(backward_seconds);
  m.staleness->Observe(applied.staleness);
  m.steps->Increment();
  m.samples->Increment(static_cast<double>(entry.samples));
  m.train_loss->Set(stats.loss());
  m.train_accuracy->Set(stats.accuracy());
  m.replay_depth->Set(static_cast<double>(replay_.inFlight()));
  m.split_point->Set(split_);
  m.setCodec(uplink_codec_);
  telemetry::TrainerMetrics::advance(m.bytes_uplink, static_cast<double>(session_->bytesUp()));
  telemetry::TrainerMetrics::advance(m.bytes_downlink, static_cast<double>(session_->bytesDown()));
  const auto bytes_per_second = [](std::optional<double> bps) {
    return bps ? std::optional<double>(*bps / 8.0) : std::nullopt;
  };
  telemetry::TrainerMetrics::setKnown(m.bandwidth_uplink, bytes_per_second(link_.uplinkBps()));
  telemetry::TrainerMetrics::setKnown(m.bandwidth_downlink, bytes_per_second(link_.downlinkBps()));
  telemetry::TrainerMetrics::setKnown(m.rtt, link_.hasRtt() ? std::optional<double>(link_.rttSeconds()) : std::nullopt);
  telemetry::TrainerMetrics::advance(m.errors_rejected,
                                     static_cast<double>(session_->transportStats().messages_rejected));
  if (replay_.updates() % 16 == 1) telemetry::updateProcessMetrics(m);
}

void EdgeTrainer::trainEpoch(EdgeEpoch& e, telemetry::RunSummary& summary, const std::atomic<bool>& stop) {
  replay_.setStaleness(warmedUp(e.staleness));
  model_.train(true);
  train_loader_->startEpoch(e.epoch, e.sent);
  telemetry::Progress progress("edge.pipeline", e.epoch + 1, config_.run.epochs, train_loader_->batchesPerEpoch());
  // Each returns false when a step failed the divergence guard and the run rolled back: the
  // loader then restarts at the snapshot's batch and the batch in hand is dropped.
  const auto drain_one = [&](bool wait) {
    auto message = wait ? std::optional<Message>(session_->await(MessageType::kGradients, "a gradient"))
                        : session_->next(std::chrono::milliseconds(0));
    if (!message) return true;
    if (message->header.type != MessageType::kGradients) {
      throw ProtocolError(std::string("expected Gradients from the cloud, got ") +
                          transport::messageTypeName(message->header.type));
    }
    if (auto failure = applyGradient(*message, e.stats)) {
      rollback(e, *failure, summary);
      return false;
    }
    progress.update(e.stats.steps, e.stats.samples, e.stats.loss(), e.stats.accuracy());
    return true;
  };
  const auto drain_all = [&] {
    while (!replay_.empty()) {
      if (!drain_one(true)) return false;
    }
    return true;
  };
  const std::int64_t batches = train_loader_->batchesPerEpoch();
  const std::int64_t first_batch = e.sent;
  const auto every = config_.checkpoint.enabled ? config_.checkpoint.every_steps : 0;
  for (;;) {
    while (auto batch = train_loader_->next()) {
      if (stop) break;
      if (every > 0 && e.sent > first_batch && next_step_ % static_cast<std::uint64_t>(every) == 0) {
        if (!drain_all()) continue;
        checkpoint(e.epoch, e.sent, e.stats, e.trainSeconds(), summary);
      }
      // Apply at most one gradient that has already arrived per batch sent: draining them
      // all at once replays a convoy of batches while the uplink sits idle (the cost model's
      // simulation shows the interleaved loop is never slower).
      if (!replay_.empty() && !drain_one(false)) continue;
      const int k_now = warmedUp(e.staleness);
      replay_.raiseStaleness(k_now);
      if (scheduler_) scheduler_->noteStaleness(k_now);
      bool rolled_back = false;
      while (replay_.full() && !rolled_back) rolled_back = !drain_one(true);
      if (rolled_back) continue;
      if (scheduler_ && config_.split.automatic && scheduler_->bandwidthMoved(static_cast<std::int64_t>(next_step_))) {
        // The link changed under us: land what is in flight, then re-plan the rest.
        if (!drain_all()) continue;
        replan(e.epoch, batches - e.sent, e.staleness, "bandwidth", summary);
      }
      if (fleet_ && average_every_ > 0 && static_cast<std::uint64_t>(steps_since_round_) >= average_every_) {
        if (!drain_all()) continue;
        averageWithFleet(e.epoch);
      }
      sendTrainBatch(e.epoch, *batch);
      ++e.sent;
    }
    train_loader_->stop();
    if (drain_all() || stop) break;  // every update lands, also when stopping
  }
  if (!stop) averageWithFleet(e.epoch);  // evaluated, and the next epoch begun, on the fleet's model
  progress.finish();
  if (stop && e.sent < batches) checkpoint(e.epoch, e.sent, e.stats, e.trainSeconds(), summary);  // resume here
}

void EdgeTrainer::averageWithFleet(int epoch) {
  if (!fleet_ || split_ == 0 || samples_since_round_ == 0) return;
  TANDEM_ENFORCE(replay_.empty(), "averaging with batches in flight");
  const auto start = Clock::now();
  Message request =
      newMessage(MessageType::kAverage,
                 transport::AverageInfo{rounds_, static_cast<std::uint64_t>(samples_since_round_), 0, {}}, epoch);
  request.header.step = next_step_;
  addStages(request, model_, *optimizer_, split_);
  auto reply = session_->request(std::move(request), MessageType::kAverageReply, "the fleet's averaging round");
  const auto& info = std::get<transport::AverageInfo>(reply.body);
  if (static_cast<int>(info.stages) != split_) {
    throw ProtocolError("the fleet's average has " + std::to_string(info.stages) + " stages, this edge runs " +
                        std::to_string(split_));
  }
  const auto stages = stagesFromMessage(reply, model_, config_.optimizer.name, codecs_);
  for (int s = 0; s < split_; ++s) installStage(stages[static_cast<std::size_t>(s)], model_, *optimizer_, s);
  ++rounds_;
  log_->debug("fleet round {}: {} steps ({} samples) of this edge averaged with the fleet's ({} samples) in {:.3f} s",
              rounds_, steps_since_round_, samples_since_round_, info.samples, since(start));
  steps_since_round_ = 0;
  samples_since_round_ = 0;
}

int EdgeTrainer::warmedUp(int k) const {
  const auto warmup = static_cast<std::uint64_t>(config_.split.staleness_warmup_steps);
  if (warmup == 0 || next_step_ >= warmup) return k;
  return static_cast<int>(static_cast<std::uint64_t>(k) * next_step_ / warmup);
}

int EdgeTrainer::stalenessFor(int epoch) const {
  const int k = config_.split.stalenessAt(epoch);
  return staleness_cap_ ? std::min(k, *staleness_cap_) : k;
}

void EdgeTrainer::rollback(EdgeEpoch& e, const Failure& failure, telemetry::RunSummary& summary) {
  // Nothing more is applied: the batches still in flight ran on the failing path.
  while (!replay_.empty()) {
    auto message = session_->await(MessageType::kGradients, "a gradient");
    replay_.discard(message.header.step);
  }
  telemetry::Intervention record;
  record.epoch = e.epoch;
  record.step = static_cast<std::int64_t>(failure.step);
  record.side = failure.side;
  record.reason = verdictName(failure.reason);
  record.loss = failure.loss;
  if (metrics_)
    (failure.reason == Verdict::kSpike ? metrics_->guard_loss_spike : metrics_->guard_non_finite)->Increment();
  const auto stop_run = [&](const std::string& why) {
    record.action = "stopped: " + why;
    summary.interventions.push_back(record);
    summary.diverged = true;
    if (metrics_) metrics_->guard_stopped->Increment();
    throw TrainingDiverged(fmt::format("training diverged at step {} (epoch {}): {} on the {} (loss {:.4g}); {}",
                                       failure.step, e.epoch + 1, verdictName(failure.reason), failure.side,
                                       failure.loss, why));
  };
  if (rollbacks_ >= config_.guard.max_rollbacks) {
    stop_run(
        fmt::format("{} rollback(s) already made, guard.max_rollbacks = {}", rollbacks_, config_.guard.max_rollbacks));
  }
  if (snapshots_.empty()) stop_run("no snapshot to roll back to");
  const auto target =
      snapshots_.target(failure.step, static_cast<std::uint64_t>(config_.guard.snapshot_every_steps) / 2);
  // Safer than what was in force: the warmed-up K, if the warm-up was not over.
  TrainingSetting current{warmedUp(e.staleness), uplink_codec_, downlink_codec_, lr_scale_};
  std::string action;
  const auto safer = saferSetting(current, config_.guard, action);
  transport::RollbackInfo info{target,
                               static_cast<std::uint32_t>(safer.staleness),
                               safer.uplink_codec,
                               safer.downlink_codec,
                               safer.lr_scale,
                               std::string(verdictName(failure.reason)),
                               0};
  Message request = newMessage(MessageType::kRollback, info, e.epoch);
  request.header.step = next_step_;
  auto ack = session_->request(std::move(request), MessageType::kRollbackAck, "a rollback acknowledgement");
  const auto& restored = std::get<transport::RollbackInfo>(ack.body);
  if (restored.to_step != target) {
    throw ProtocolError("the cloud rolled back to step " + std::to_string(restored.to_step) + ", asked for " +
                        std::to_string(target));
  }
  const auto* snapshot = snapshots_.find(target);
  const auto position = restoreRun(*snapshot, model_, *optimizer_, 0, split_);
  if (restored.steps != position.stats.steps) {
    throw ProtocolError("after the rollback the cloud counts " + std::to_string(restored.steps) +
                        " steps in the epoch, the edge " + std::to_string(position.stats.steps));
  }
  snapshots_.dropAfter(target);
  replay_.setUpdates(position.updates);
  ++rollbacks_;
  // The planner learns from it: this pair at this K (or more) is not chosen again.
  if (scheduler_) scheduler_->markUnstable(split_, current.uplink_codec, current.staleness);
  staleness_cap_ = safer.staleness;
  e.staleness = safer.staleness;
  replay_.setStaleness(warmedUp(e.staleness));
  uplink_codec_ = safer.uplink_codec;
  downlink_codec_ = safer.downlink_codec;
  lr_scale_ = safer.lr_scale;
  e.learning_rate = optim::learningRate(config_.optimizer, e.epoch, config_.run.epochs) * lr_scale_;
  optimizer_->setLearningRate(e.learning_rate);
  e.sent = position.batch;
  e.stats = position.stats;
  train_loader_->stop();
  train_loader_->startEpoch(e.epoch, e.sent);
  record.rolled_back_to = static_cast<std::int64_t>(target);
  record.action = action;
  summary.interventions.push_back(record);
  if (metrics_) {
    metrics_->guard_rollback->Increment();
    metrics_->setCodec(uplink_codec_);
  }
  log_->warn(
      "divergence guard: step {} failed on the {} ({}, loss {:.4g}); rolled back to step {} (epoch {}, batch "
      "{}) and continuing with {} ({} of {} rollbacks)",
      failure.step, failure.side, verdictName(failure.reason), failure.loss, target, e.epoch + 1, e.sent, action,
      rollbacks_, config_.guard.max_rollbacks);
}

RunningStats EdgeTrainer::evaluateEpoch(int epoch, const std::atomic<bool>& stop) {
  torch::NoGradGuard no_grad;
  model_.train(false);
  RunningStats stats;
  std::uint64_t step = 0;
  const auto receive_one = [&] {
    auto message = session_->await(MessageType::kEvalResult, "an evaluation result");
    const auto& r = std::get<transport::StepResult>(message.body);
    stats.add(r.loss, r.correct, r.samples);
  };
  test_loader_->startEpoch(epoch);
  while (auto batch = test_loader_->next()) {
    if (stop) break;
    while (session_->evaluationInFlight() >= kEvalWindow) receive_one();
    Message message = newMessage(MessageType::kEvalActivations, std::monostate{}, epoch);
    message.header.step = step++;
    if (split_ == 0 && uplink_codec_ == "none" && batch->pixels.defined()) {
      addFrame(message, transport::rawFrame(batch->pixels));
    } else {
      addTensor(message, model_.forward(batch->inputs, 0, split_), uplink_codec_, codecs_);
    }
    addFrame(message, transport::rawFrame(batch->labels));
    session_->post(std::move(message));
  }
  test_loader_->stop();
  while (session_->evaluationInFlight() > 0) receive_one();
  model_.train(true);
  return stats;
}

void EdgeTrainer::checkpoint(int epoch, std::int64_t batch, const RunningStats& stats, double epoch_seconds,
                             const telemetry::RunSummary& summary) {
  if (!checkpoints_) return;
  TANDEM_ENFORCE(replay_.empty(), "checkpoint with batches in flight");
  // The cloud writes first: a checkpoint only the cloud has is ignored when resuming.
  Message m(MessageType::kCheckpoint, transport::CheckpointInfo{static_cast<std::uint32_t>(epoch), batch});
  m.header.step = next_step_;
  session_->request(std::move(m), MessageType::kCheckpointAck, "a checkpoint acknowledgement");
  auto position = positionAt(next_step_, epoch, batch, stats);
  position.epoch_seconds = epoch_seconds;
  position.history = summary.history;
  const auto path = checkpoints_->save(captureRun("edge", config_.run.name, position, model_, *optimizer_, 0, split_));
  log_->debug("checkpoint {} (epoch {}, batch {})", path, epoch + 1, batch);
}

void EdgeTrainer::recordEpoch(const RunningStats* test, telemetry::RunSummary& summary, std::uint64_t up_before,
                              std::uint64_t down_before) {
  const auto& e = *current_;
  const bool complete = test != nullptr && e.sent >= train_loader_->batchesPerEpoch();
  auto record = epochRecord(e.epoch, e.learning_rate, e.stats, test ? *test : RunningStats{},
                            e.train_seconds.value_or(e.trainSeconds()), since(e.start), split_, e.staleness);
  record.bytes_uplink = session_->bytesUp() - up_before;
  record.bytes_downlink = session_->bytesDown() - down_before;
  record.partial = !complete;
  if (!test) {
    record.test_loss = std::numeric_limits<double>::quiet_NaN();
    record.test_accuracy = std::numeric_limits<double>::quiet_NaN();
  }
  summary.history.push_back(record);
  if (complete) {
    checkpoint(e.epoch + 1, 0, RunningStats{}, 0.0, summary);
    if (metrics_) {
      metrics_->epoch->Set(e.epoch + 1);
      metrics_->test_loss->Set(record.test_loss);
      metrics_->test_accuracy->Set(record.test_accuracy);
    }
    logEpoch(*log_, record, config_.run.epochs,
             {"",
              fmt::format(" | split {} K {} | up {} down {}", split_, e.staleness,
                          formatBytes(static_cast<double>(record.bytes_uplink)),
                          formatBytes(static_cast<double>(record.bytes_downlink))),
              {}});
  } else {
    log_->info("epoch {}/{} stopped after {} of {} steps: train loss {:.4f} acc {:.2f}% (not evaluated)", e.epoch + 1,
               config_.run.epochs, e.stats.steps, train_loader_->batchesPerEpoch(), record.train_loss,
               record.train_accuracy * 100);
  }
  current_.reset();
}

telemetry::RunSummary EdgeTrainer::run(const std::atomic<bool>& stop, const std::atomic<bool>* abort) {
  const auto start = Clock::now();
  auto summary = newRunSummary(config::Role::kEdge, "split", config_.run.name, config_.model.name, config_.data.dataset,
                               config_.run.epochs);
  started_ = start;
  session_->setAbort(abort);
  std::uint64_t up_before = 0;
  std::uint64_t down_before = 0;
  try {
    handshake(stop);
    log_->info("training: {} train / {} test samples, {} batches of {} per epoch", train_set_->size(),
               test_set_->size(), train_loader_->batchesPerEpoch(), config_.data.batch_size);
    const int first_epoch = resume_ ? resume_->epoch : 0;
    if (resume_) summary.history = resume_->history;
    if (scheduler_ && first_epoch < config_.run.epochs && !stop) {
      // The first decision belongs to setting up, like the handshake: moving the chosen
      // stages is not charged to the first epoch's time.
      const std::int64_t remaining = train_loader_->batchesPerEpoch() - (resume_ ? resume_->batch : 0);
      replan(first_epoch, remaining, stalenessFor(first_epoch), resume_ ? "resume" : "start", summary);
    }
    for (int epoch = first_epoch; epoch < config_.run.epochs && !stop; ++epoch) {
      auto& e = current_.emplace();
      e.epoch = epoch;
      e.staleness = stalenessFor(epoch);
      e.learning_rate = optim::learningRate(config_.optimizer, epoch, config_.run.epochs) * lr_scale_;
      e.start = Clock::now();
      if (resume_ && epoch == resume_->epoch) {
        e.sent = resume_->batch;
        e.seconds_before = resume_->epoch_seconds;
        e.stats = resume_->stats;
      }
      up_before = session_->bytesUp();
      down_before = session_->bytesDown();
      if (scheduler_ && epoch > first_epoch) {
        probe(false);  // the link is idle between epochs: refresh the RTT
        replan(epoch, train_loader_->batchesPerEpoch(), e.staleness, "epoch", summary);
      }
      optimizer_->setLearningRate(e.learning_rate);
      session_->openEpoch(
          newMessage(MessageType::kEpochBegin,
                     transport::EpochInfo{static_cast<std::uint32_t>(e.staleness), train_loader_->batchesPerEpoch(), 0,
                                          0, static_cast<std::uint32_t>(config_.guard.snapshot_every_steps)},
                     epoch));
      // Both sides keep a snapshot of the epoch's start (the cloud on EpochBegin).
      snapshots_.clear();
      takeSnapshot(next_step_, epoch, e.sent, e.stats);
      trainEpoch(e, summary, stop);
      e.train_seconds = e.trainSeconds();
      if (scheduler_) scheduler_->finish(static_cast<std::int64_t>(next_step_));
      session_->closeEpoch();
      auto ack = session_->request(newMessage(MessageType::kEpochEnd,
                                              transport::EpochInfo{static_cast<std::uint32_t>(e.staleness),
                                                                   e.stats.steps, e.stats.loss(), e.stats.accuracy()},
                                              epoch),
                                   MessageType::kEpochAck, "an end-of-epoch acknowledgement");
      const auto& cloud = std::get<transport::EpochInfo>(ack.body);
      if (cloud.steps != e.stats.steps) {
        throw ProtocolError("the cloud applied " + std::to_string(cloud.steps) + " steps in epoch " +
                            std::to_string(epoch + 1) + ", the edge " + std::to_string(e.stats.steps));
      }
      if (stop) break;
      const auto test = evaluateEpoch(epoch, stop);
      recordEpoch(stop ? nullptr : &test, summary, up_before, down_before);
    }
    if (current_) recordEpoch(nullptr, summary, up_before, down_before);  // stopped during the epoch
    summary.interrupted = summary.history.empty() || summary.history.back().partial ||
                          static_cast<int>(summary.history.size()) < config_.run.epochs;
    session_->shutdown(!summary.interrupted, summary.interrupted ? "interrupted" : "completed",
                       std::chrono::seconds(5));
  } catch (const session::Interrupted& e) {
    log_->warn("{}", e.what());
    summary.interrupted = true;
    session_->shutdown(false, "interrupted", std::chrono::milliseconds(0));
  } catch (const TrainingDiverged& e) {
    log_->error("{}", e.what());
    if (current_ && current_->stats.steps > 0) recordEpoch(nullptr, summary, up_before, down_before);
    summary.interrupted = true;
    session_->shutdown(false, std::string("diverged: ") + e.what(), std::chrono::seconds(5));
    finishSummary(summary, start);
    throw;
  } catch (const session::Aborted& e) {
    log_->warn("{}: telling the cloud and writing the summary", e.what());
    if (current_ && current_->stats.steps > 0) recordEpoch(nullptr, summary, up_before, down_before);
    summary.interrupted = true;
    session_->shutdown(false, "aborted", std::chrono::milliseconds(0));
  }
  finishSummary(summary, start);
  return summary;
}

void EdgeTrainer::finishSummary(telemetry::RunSummary& summary, Clock::time_point start) {
  summary.bytes_uplink = session_->bytesUp();
  summary.bytes_downlink = session_->bytesDown();
  summary.pipeline = pipeline_.bound(summary.trainSamplesPerSecond());
  summary.wall_seconds = since(start);
  const auto path = telemetry::writeSummary(config_.run.output_dir, summary);
  writeTimeline(config_.run.output_dir, link_history_);
  const auto& replay = replay_.stats();
  log_->info("{}summary written to {} (replay buffer peak {}, max staleness {})",
             summary.interrupted ? "interrupted; " : "", path, replay.peak_buffer, replay.max_staleness);
}

}  // namespace tandem::pipeline

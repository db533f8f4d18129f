#include "runtime/pipeline/cloud.h"

#include <fmt/format.h>
#include <torch/utils.h>

#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <limits>
#include <map>
#include <optional>
#include <utility>

#include "runtime/common/log.h"
#include "runtime/common/strings.h"
#include "runtime/common/watchdog.h"
#include "runtime/optim/schedule.h"
#include "runtime/pipeline/cloud_step.h"
#include "runtime/pipeline/fleet.h"
#include "runtime/pipeline/link.h"
#include "runtime/pipeline/migration.h"
#include "runtime/pipeline/run_state.h"
#include "runtime/scheduler/profiler.h"
#include "runtime/session/admission.h"
#include "runtime/session/cloud_session.h"
#include "runtime/session/handshake.h"
#include "runtime/telemetry/progress.h"
#include "runtime/transport/frame_socket.h"

namespace tandem::pipeline {

using Clock = std::chrono::steady_clock;
using transport::ErrorCode;
using transport::Message;
using transport::MessageType;
using transport::peerName;
using transport::WireError;

// One edge's session: the conversation (exactly-once checks, reply cache, position) and
// the stages [p, n) with their optimizer and statistics.
struct CloudTrainer::Session {
  Session(std::uint64_t id, std::string peer, transport::Transport& transport) : link(id, std::move(peer), transport) {}

  session::CloudSession link;
  std::string origin;  // the peer's key or address (Message::origin), for the per-peer limit
  bool begun = false;  // an epoch has begun (until then the session counts as pending)
  transport::Hello hello;
  std::unique_ptr<models::StageModel> model;
  int stages = 0;
  std::unique_ptr<optim::StageOptimizers> optimizer;
  transport::CodecCache codecs;
  int staleness = 0;
  double lr = 0.0;
  RunningStats train;
  RunningStats eval;
  Clock::time_point start;
  Clock::time_point epoch_start;
  double train_seconds = 0.0;
  telemetry::RunSummary summary;
  telemetry::TrainerMetrics* metrics = nullptr;
  std::unique_ptr<telemetry::Progress> progress;
  std::unique_ptr<checkpoint::CheckpointStore> checkpoints;
  std::optional<RunningStats> resume_stats;  // a resumed epoch's statistics so far
  double resume_seconds = 0.0;
  // Divergence guard: the recent losses, this epoch's snapshots (a few more than the edge
  // keeps: the cloud is up to K steps ahead), and the setting the edge moved to.
  std::unique_ptr<LossWatch> watch;
  Snapshots snapshots{6};
  std::uint32_t snapshot_every = 0;
  std::string downlink_codec;
  double lr_scale = 1.0;
  // Shared fleet: the rounds the fleet had closed when this edge last got the average (or
  // its first weights); whether a batch of it waits for a joint step, and whether its
  // contribution to a round is held.
  std::uint64_t round_seen = 0;
  bool batch_waiting = false;
  bool averaging = false;
  double cloud_samples = 0.0;      // per_edge: samples its copy of the cloud's stages trained on since the last round
  std::optional<Message> welcome;  // held until fleet.min_edges edges are there

  std::uint64_t id() const { return link.id(); }
  int split() const { return link.position().split; }
};

// A shared fleet: one copy of every stage and its optimizer for all sessions, the batches
// waiting for a joint step, and the averaging round under way.
struct CloudTrainer::Fleet {
  std::unique_ptr<models::StageModel> model;
  std::unique_ptr<optim::StageOptimizers> optimizer;  // every stage
  std::unique_ptr<LossWatch> watch;                   // the joint steps' losses
  // Per stage: samples the cloud's copy trained on since the last round, and the samples
  // behind the current average (what a straggler's stale replica is weighed against).
  std::vector<double> trained;
  std::vector<double> averaged;
  struct Waiting {
    Session* session;
    Message message;
    CloudBatch batch;
  };
  std::vector<Waiting> batches;
  std::int64_t waiting_samples = 0;
  Clock::time_point gather_until;
  struct Contribution {
    Session* session;
    Message request;  // without its payloads: the key the reply is cached under
    std::vector<StageReplica> stages;
    double samples = 0.0;
  };
  std::vector<Contribution> round;
  Clock::time_point round_started;
  std::uint64_t rounds = 0;
  bool started = false;  // fleet.min_edges edges have come
};

CloudTrainer::CloudTrainer(config::Config config, std::unique_ptr<transport::Transport> transport, CloudOptions options,
                           telemetry::Metrics* metrics)
    : config_(std::move(config)),
      options_(options),
      metrics_(metrics),
      log_(log::get("cloud.pipeline")),
      limited_(log_),
      transport_(std::move(transport)) {
  // Validate what this side owns now, pointing at the keys, rather than at the first edge.
  auto reference = buildModel(config_);
  initialSplitPoint(config_, reference);
  fingerprint_ = reference.fingerprint();
  num_stages_ = reference.numStages();
  data_info_ = data::datasetInfo(config_.data);
  // A session's own copy of the stages and its optimizer state must fit in its memory
  // limit with room for the reply cache.
  session_model_bytes_ = session::sessionModelBytes(reference, config_.optimizer);
  const double limit = config_.limits.session_memory_mb * 1024 * 1024;
  if (session_model_bytes_ > limit / 2) {
    config::failAt(config_, "limits.session_memory_mb",
                   fmt::format("{:.0f} MB is too little for model {}: one session needs about {:.0f} MB for its "
                               "stages and optimizer state, and as much again for the replies it keeps",
                               config_.limits.session_memory_mb, config_.model.name, session_model_bytes_ / 1048576.0));
  }
  if (config_.fleet.mode != config::FleetMode::kOff) {
    if (config_.fleet.min_edges > config_.limits.max_pending_sessions ||
        config_.fleet.min_edges > config_.limits.max_sessions) {
      config::failAt(
          config_, "fleet.min_edges",
          fmt::format("{} edges cannot wait for each other: limits.max_pending_sessions is {} and "
                      "limits.max_sessions {}",
                      config_.fleet.min_edges, config_.limits.max_pending_sessions, config_.limits.max_sessions));
    }
    fleet_ = std::make_unique<Fleet>();
    fleet_->model = std::make_unique<models::StageModel>(buildModel(config_));
    fleet_->optimizer =
        std::make_unique<optim::StageOptimizers>(config_.optimizer, *fleet_->model, 0, fleet_->model->numStages());
    fleet_->watch = std::make_unique<LossWatch>(config_.guard);
    fleet_->trained.assign(static_cast<std::size_t>(num_stages_), 0.0);
    fleet_->averaged.assign(static_cast<std::size_t>(num_stages_), 0.0);
    fleet_->started = config_.fleet.min_edges <= 1;
  }
  if (config_.scheduler.active(config_.split)) {
    // The cloud has no data: its stages are timed on random inputs of the right shape.
    const auto& shape = reference.boundaryShapes().front();
    std::vector<std::int64_t> batch{config_.data.batch_size};
    batch.insert(batch.end(), shape.begin(), shape.end());
    cloud_profile_ =
        scheduler::toJson(scheduler::sideProfile(config_, reference, torch::randn(batch), config::Role::kCloud));
  }
}

CloudTrainer::~CloudTrainer() = default;

models::StageModel* CloudTrainer::lastModel() { return fleet_ ? fleet_->model.get() : last_model_.get(); }

std::uint64_t CloudTrainer::fleetRounds() const { return fleet_ ? fleet_->rounds : 0; }

bool CloudTrainer::shared() const { return fleet_ && config_.fleet.mode == config::FleetMode::kShared; }

models::StageModel& CloudTrainer::modelOf(Session& s) { return shared() ? *fleet_->model : *s.model; }

optim::StageOptimizers& CloudTrainer::optimizerOf(Session& s) { return shared() ? *fleet_->optimizer : *s.optimizer; }

void CloudTrainer::replyError(const std::string& peer, ErrorCode code, const std::string& text, std::uint64_t session) {
  Message message(MessageType::kError, transport::ErrorInfo{code, text});
  message.header.session = session;
  message.peer = peer;
  transport_->send(std::move(message));
}

bool CloudTrainer::makeRoom(const std::string& origin, const std::string& who) {
  while (true) {
    session::SessionCounts counts{sessions_.size(), 0, 0};
    for (const auto& entry : sessions_) {
      counts.same_peer += entry.second->origin == origin ? 1 : 0;
      counts.pending += entry.second->begun ? 0 : 1;
    }
    const auto busy = session::admissionRefusal(config_.limits, counts);
    if (!busy) return true;
    if (metrics_) metrics_->limitHit(busy->limit);
    // A session that has not begun an epoch is the cheapest to lose and, under a flood of
    // Hellos that disconnect, a dead one. The oldest of them makes room, so that a flood
    // cannot lock out an edge that arrives later: of this peer when the per-peer limit is
    // the one hit, else of the peer with the most such sessions (the flooder, not an edge
    // that is starting).
    std::map<std::string, int> pending_of;
    for (const auto& entry : sessions_) pending_of[entry.second->origin] += entry.second->begun ? 0 : 1;
    std::string from = origin;
    if (std::string(busy->limit) != "sessions_per_peer") {
      int most = 0;
      for (const auto& [peer, n] : pending_of) {
        if (n > most) {
          from = peer;
          most = n;
        }
      }
    }
    Session* victim = nullptr;
    for (const auto& entry : sessions_) {
      Session& candidate = *entry.second;
      if (candidate.begun || candidate.origin != from) continue;
      if (!victim || candidate.start < victim->start) victim = &candidate;
    }
    if (!victim) {
      ++refused_;
      last_refusal_ = busy->text;
      limited_.log(spdlog::level::warn, who, "busy", "refused a Hello from {}: {}", who, busy->text);
      return false;
    }
    limited_.log(spdlog::level::warn, who, "evicted",
                 "session {:016x} ({}) ended before its first epoch to make room: {}", victim->id(), victim->origin,
                 busy->text);
    replyError(victim->link.peer(), ErrorCode::kBusy,
               "session ended before its first epoch to make room: " + busy->text, victim->id());
    const std::string victim_peer = victim->link.peer();
    endSession(victim_peer, SessionEnd::kFailed, "evicted");
  }
}

void CloudTrainer::onHello(Message& message) {
  const auto& hello = std::get<transport::Hello>(message.body);
  if (sessions_.count(message.peer)) {
    throw WireError(ErrorCode::kUnexpected, "this edge already has a session; Hello is sent once");
  }
  const std::string who = message.origin.empty() ? peerName(message.peer) : message.origin;
  if (!makeRoom(message.origin, who)) {
    replyError(message.peer, ErrorCode::kBusy, last_refusal_, 0);
    return;
  }
  // Everything that needs no memory is checked before anything is allocated for the edge.
  auto differences = session::handshakeDifferences(hello, config_, fingerprint_, num_stages_, hello.resume);
  session::ResumeChoice resume;
  if (differences.empty()) {
    resume = session::chooseResume(hello, config_);
    if (hello.resume && !resume.checkpoint) {
      differences = session::handshakeDifferences(hello, config_, fingerprint_, num_stages_, false);
    }
  }
  if (differences.empty() && fleet_ && hello.resume) {
    const std::string text =
        "resume: this cloud trains a shared fleet (fleet.mode: shared), where --resume is not supported yet; start "
        "the edge without it: it gets the fleet's current model";
    differences.push_back({text, text});
  }
  if (!differences.empty()) {
    ++refused_;
    const bool authenticated = message.origin.rfind("key:", 0) == 0;
    limited_.log(spdlog::level::err, who, "handshake refused", "edge '{}' ({}): {}", hello.edge_name, who,
                 session::refusalText(differences, true));
    replyError(message.peer, ErrorCode::kHandshake, session::refusalText(differences, authenticated), 0);
    return;
  }
  auto& store = resume.store;
  auto& resume_from = resume.checkpoint;
  // In a shared fleet the session trains the fleet's stages: it gets no copy of its own.
  auto model = shared() ? nullptr : std::make_unique<models::StageModel>(buildModel(config_));
  if (model && fleet_) {
    // per_edge: the session's copy starts from the fleet's current average.
    torch::NoGradGuard no_grad;
    const auto mine = model->state(0, num_stages_);
    const auto fleet = fleet_->model->state(0, num_stages_);
    for (std::size_t i = 0; i < mine.size(); ++i) mine[i].copy_(fleet[i]);
  }

  auto s = std::make_unique<Session>(session::newSessionId(), message.peer, *transport_);
  s->origin = message.origin;
  s->link.setReplyBudget(
      static_cast<std::uint64_t>(std::max(0.0, config_.limits.session_memory_mb * 1048576.0 - session_model_bytes_)));
  s->link.admit(message);  // counts the Hello's bytes
  s->hello = hello;
  s->link.position().split = resume_from ? resume_from->split : static_cast<int>(hello.split_point);
  s->stages = num_stages_;
  s->model = std::move(model);
  if (!shared()) {
    s->optimizer = std::make_unique<optim::StageOptimizers>(config_.optimizer, *s->model, s->split(), s->stages);
  }
  if (fleet_) s->round_seen = fleet_->rounds;
  s->watch = std::make_unique<LossWatch>(config_.guard);
  s->downlink_codec = config_.compression.downlink;
  s->checkpoints = std::move(store);
  s->summary = newRunSummary(config::Role::kCloud, "split", hello.run_name, hello.model, config_.data.dataset,
                             static_cast<int>(hello.epochs));
  if (resume_from) {
    const auto position = restoreRun(*resume_from, modelOf(*s), optimizerOf(*s), s->split(), s->stages);
    s->link.position().next_step = position.step;
    s->link.position().epoch = position.epoch - 1;  // the edge begins epoch `position.epoch` again
    if (position.batch > 0) {
      s->resume_stats = position.stats;
      s->resume_seconds = position.epoch_seconds;
    }
    s->summary.history = position.history;  // after newRunSummary: the epochs before the resume stay
  }
  s->start = Clock::now();
  if (metrics_) {
    s->metrics = &metrics_->forEdge(hello.run_name);  // the label the edge gives itself
    s->metrics->split_point->Set(s->split());
    s->metrics->setCodec(hello.uplink_codec);
  }

  Message welcome(MessageType::kWelcome, transport::Welcome{});
  auto& body = std::get<transport::Welcome>(welcome.body);
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  body.cloud_name = host;
  body.split_point = static_cast<std::uint32_t>(s->split());
  body.resumed = resume_from.has_value();
  body.resume_step = resume_from ? resume_from->step : 0;
  // A fleet's edge starts from the fleet's current average of its stages.
  const auto state = resume_from ? std::vector<torch::Tensor>{} : modelOf(*s).state(0, s->split());
  body.weight_tensors = static_cast<std::uint32_t>(state.size());
  body.cloud_profile = cloud_profile_;
  body.fleet = fleet_ != nullptr;
  body.average_every = fleet_ ? static_cast<std::uint64_t>(config_.fleet.average_every) : 0;
  for (const auto& t : state) addFrame(welcome, transport::rawFrame(t));
  limited_.log(spdlog::level::info, who, "session opened",
               "session {:016x} for edge '{}' (run '{}', {}): model {}, split {}/{}, K {}, replay {}, uplink {}, {} "
               "epochs{}",
               s->id(), hello.edge_name, hello.run_name, who, hello.model, s->split(), s->stages, hello.staleness,
               hello.replay, hello.uplink_codec, hello.epochs,
               resume_from ? ", resumed from step " + std::to_string(resume_from->step) : std::string());
  Session* raw = s.get();
  sessions_[message.peer] = std::move(s);
  if (fleet_ && metrics_) metrics_->fleetEdges(static_cast<double>(sessions_.size()));
  if (fleet_ && !fleet_->started) {
    // The fleet starts together: Welcomes wait until fleet.min_edges edges are there (each
    // edge waits up to link.connect_timeout_s).
    raw->welcome = std::move(welcome);
    if (static_cast<int>(sessions_.size()) < config_.fleet.min_edges) {
      log_->info("fleet: {} of {} edges (fleet.min_edges) are here; the others are waited for", sessions_.size(),
                 config_.fleet.min_edges);
      return;
    }
    fleet_->started = true;
    log_->info("fleet: {} edges are here; training starts", sessions_.size());
    for (auto& entry : sessions_) {
      if (entry.second->welcome) {
        entry.second->link.send(std::move(*entry.second->welcome));
        entry.second->welcome.reset();
      }
    }
    return;
  }
  raw->link.send(std::move(welcome));
}

void CloudTrainer::onActivations(Session& s, Message& message, bool train) {
  auto& position = s.link.position();
  if (train && !position.epoch_open) throw WireError(ErrorCode::kUnexpected, "training batch outside an epoch");
  auto& model = modelOf(s);
  auto batch = decodeBatch(message, model, s.split(), train ? config_.data.batch_size : config_.data.test_batch_size,
                           s.codecs, data_info_);
  if (s.metrics) s.metrics->decode->Observe(batch.decode_seconds);
  if (!train) {
    const auto outcome = evaluateStep(model, s.split(), s.stages, batch);
    s.eval.add(outcome.loss, outcome.correct, batch.size);
    Message result(MessageType::kEvalResult,
                   transport::StepResult{outcome.loss, outcome.correct, batch.size, message.received_at, 0.0});
    result.header.epoch = message.header.epoch;
    result.header.step = message.header.step;
    s.link.answer(message, std::move(result));
    return;
  }
  if (shared()) {
    // The step waits for other edges' batches (stepBatches); the session's position moves
    // on now, so that its next batch is admitted.
    if (s.batch_waiting || fleet_->waiting_samples + batch.size > std::max(config_.fleet.max_cloud_batch, batch.size)) {
      stepBatches();
    }
    if (fleet_->batches.empty()) {
      fleet_->gather_until = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                std::chrono::duration<double, std::milli>(config_.fleet.gather_ms));
    }
    ++position.next_step;
    s.batch_waiting = true;
    fleet_->waiting_samples += batch.size;
    fleet_->batches.push_back({&s, std::move(message), std::move(batch)});
    return;
  }
  const auto step = message.header.step;
  const auto outcome = trainStep(model, *s.optimizer, s.split(), s.stages, batch,
                                 StepGuard{s.watch.get(), injectNanAt(config_.guard, config::Role::kCloud, step)});
  ++position.next_step;
  if (fleet_ && outcome.verdict == Verdict::kOk) s.cloud_samples += static_cast<double>(batch.size);
  replyTraining(s, message, outcome, batch);
}

void CloudTrainer::replyTraining(Session& s, Message& message, const StepOutcome& outcome, const CloudBatch& batch) {
  auto& position = s.link.position();
  const auto step = message.header.step;
  if (outcome.verdict == Verdict::kOk) {
    s.train.add(outcome.loss, outcome.correct, batch.size);
    if (s.snapshot_every > 0 && position.next_step % s.snapshot_every == 0) takeSnapshot(s);
  } else {
    limited_.log(spdlog::level::warn, s.origin, "step failed the guard",
                 "session {:016x}: step {} not applied: {} (loss {:.4g}); the edge rolls back", s.id(), step,
                 verdictName(outcome.verdict), outcome.loss);
    if (s.metrics) {
      (outcome.verdict == Verdict::kSpike ? s.metrics->guard_loss_spike : s.metrics->guard_non_finite)->Increment();
    }
  }
  if (s.progress) {
    s.progress->update(s.train.steps, s.train.samples, s.train.loss(), s.train.accuracy());
  }
  Message result(MessageType::kGradients,
                 transport::StepResult{outcome.loss, outcome.correct, batch.size, message.received_at, 0.0,
                                       outcome.compute_seconds, static_cast<std::uint8_t>(outcome.verdict)});
  result.header.epoch = message.header.epoch;
  result.header.step = message.header.step;
  const auto encode_start = Clock::now();
  if (s.split() > 0) addTensor(result, outcome.boundary_gradient, s.downlink_codec, s.codecs);
  std::get<transport::StepResult>(result.body).replied_at = transport::steadySeconds();
  if (s.metrics) {
    auto& m = *s.metrics;
    m.encode->Observe(std::chrono::duration<double>(Clock::now() - encode_start).count());
    m.cloud_step->Observe(outcome.compute_seconds);
    m.steps->Increment();
    m.samples->Increment(static_cast<double>(batch.size));
    m.train_loss->Set(s.train.loss());
    m.train_accuracy->Set(s.train.accuracy());
    m.split_point->Set(s.split());
    const double raw_bytes = static_cast<double>(batch.activation.numel()) * 4.0;  // float32, as the model uses
    m.compression_uplink->Set(raw_bytes / std::max<double>(1.0, static_cast<double>(message.header.tensors[0].bytes)));
    if (!result.payloads.empty()) {
      m.compression_downlink->Set(raw_bytes / std::max<double>(1.0, static_cast<double>(result.payloads[0].size())));
    }
    advanceByteMetrics(m, s);
    if (position.next_step % 16 == 1) telemetry::updateProcessMetrics(m);
  }
  s.link.answer(message, std::move(result));
}

bool CloudTrainer::batchesComplete() const {
  if (!fleet_ || fleet_->batches.empty()) return false;
  if (fleet_->waiting_samples >= config_.fleet.max_cloud_batch) return true;
  // No point waiting when every session that could send a batch has one waiting: not one
  // in an averaging round or evaluating, but one about to begin its first epoch (the
  // members of a fleet start together, and the gather time bounds the wait).
  for (const auto& entry : sessions_) {
    const Session& s = *entry.second;
    const bool evaluating = s.begun && !s.link.position().epoch_open;
    const bool may_send = !s.averaging && !evaluating && !s.welcome;
    if (may_send && !s.batch_waiting) return false;
  }
  return true;
}

void CloudTrainer::stepBatches() {
  if (!fleet_ || fleet_->batches.empty()) return;
  auto waiting = std::move(fleet_->batches);
  fleet_->batches.clear();
  fleet_->waiting_samples = 0;
  std::vector<StepPart> parts;
  for (auto& w : waiting) {
    parts.push_back({&w.batch, w.session->split()});
    w.session->batch_waiting = false;
  }
  // The learning rate of the first edge's epoch (every session follows the same schedule).
  Session& first = *waiting.front().session;
  fleet_->optimizer->setLearningRate(first.lr);
  if (metrics_) metrics_->fleetStep(static_cast<double>(waiting.size()));
  const auto outcomes =
      trainJointStep(*fleet_->model, *fleet_->optimizer, parts, num_stages_,
                     StepGuard{fleet_->watch.get(),
                               injectNanAt(config_.guard, config::Role::kCloud, waiting.front().message.header.step)});
  for (std::size_t i = 0; i < waiting.size(); ++i) {
    auto& w = waiting[i];
    if (outcomes[i].verdict == Verdict::kOk) {
      for (int j = w.session->split(); j < num_stages_; ++j) {
        fleet_->trained[static_cast<std::size_t>(j)] += static_cast<double>(w.batch.size);
      }
    }
    replyTraining(*w.session, w.message, outcomes[i], w.batch);
  }
}

void CloudTrainer::onAverage(Session& s, Message& message) {
  if (!fleet_) throw WireError(ErrorCode::kUnexpected, "averaging rounds are for a fleet (fleet.mode)");
  const auto& info = std::get<transport::AverageInfo>(message.body);
  if (static_cast<int>(info.stages) != s.split()) {
    throw WireError(ErrorCode::kUnexpected, "averaging " + std::to_string(info.stages) + " stages, but the edge runs " +
                                                std::to_string(s.split()));
  }
  if (s.averaging) throw WireError(ErrorCode::kUnexpected, "a second averaging request while one is held");
  // An edge cannot have trained on more samples than it has sent since it began.
  const auto most = static_cast<double>(s.link.position().next_step) * static_cast<double>(config_.data.batch_size);
  if (static_cast<double>(info.samples) > most) {
    throw WireError(ErrorCode::kUnexpected,
                    "averaging claims " + std::to_string(info.samples) + " samples, more than the edge's steps hold");
  }
  Fleet::Contribution c;
  c.session = &s;
  c.stages = stagesFromMessage(message, *fleet_->model, config_.optimizer.name, s.codecs);
  c.samples = static_cast<double>(info.samples);
  c.request = Message(message.header.type, message.body);
  c.request.header = message.header;
  c.request.header.tensors.clear();
  if (fleet_->round.empty()) fleet_->round_started = Clock::now();
  fleet_->round.push_back(std::move(c));
  s.averaging = true;
  s.link.holdAverage(info.round);
  closeRoundIfDue(false);
}

void CloudTrainer::closeRoundIfDue(bool timed_out_only) {
  if (!fleet_ || fleet_->round.empty()) return;
  const bool timed_out =
      std::chrono::duration<double>(Clock::now() - fleet_->round_started).count() >= config_.fleet.round_timeout_s;
  if (!timed_out) {
    if (timed_out_only) return;
    // Every edge that trains stages of its own must have come, also one welcomed that has
    // not begun its first epoch yet (a member that never begins costs a round timeout).
    for (const auto& entry : sessions_) {
      const Session& s = *entry.second;
      if (s.split() > 0 && !s.averaging && !s.welcome) return;  // begun, or about to begin
    }
  } else {
    std::vector<std::string> missing;
    for (const auto& entry : sessions_) {
      const Session& s = *entry.second;
      if (s.split() > 0 && !s.averaging && !s.welcome) missing.push_back("'" + s.hello.edge_name + "'");
    }
    if (!missing.empty()) {
      log_->warn("fleet: averaging round {} goes ahead after {} s without {} (fleet.round_timeout_s)",
                 fleet_->rounds + 1, config_.fleet.round_timeout_s, join(missing));
    }
  }
  closeRound();
}

void CloudTrainer::closeRound() {
  auto& f = *fleet_;
  auto round = std::move(f.round);
  f.round.clear();
  // A contributor that missed a round trained from an older average: its replicas are
  // weighed against the fleet's current one (and the samples behind it), so that a
  // straggler cannot overwrite what the others learnt since.
  bool stale = false;
  for (const auto& c : round) stale = stale || c.session->round_seen < f.rounds;
  double total_samples = 0.0;
  for (int j = 0; j < num_stages_; ++j) {
    const auto sj = static_cast<std::size_t>(j);
    const double own_weight = stale ? std::max(f.trained[sj], f.averaged[sj]) : f.trained[sj];
    std::vector<const StageReplica*> replicas;
    for (auto& c : round) {
      if (j < static_cast<int>(c.stages.size()) && c.samples > 0) {
        c.stages[sj].weight = c.samples;
        replicas.push_back(&c.stages[sj]);
      }
    }
    // per_edge: each session's own copy of the cloud's stages is a replica too.
    std::vector<Session*> holders;
    std::vector<StageReplica> copies;
    if (!shared()) {
      for (auto& entry : sessions_) {
        Session& s = *entry.second;
        if (!s.model || s.split() > j) continue;
        holders.push_back(&s);
        if (s.cloud_samples <= 0) continue;
        copies.push_back(captureStage(*s.model, *s.optimizer, j));
        copies.back().weight = s.cloud_samples;
      }
      for (const auto& copy : copies) replicas.push_back(&copy);
    }
    if (replicas.empty()) {
      // Only the cloud's copy (or nobody) trained the stage: nothing changes, and it is not
      // copied (a round would otherwise clone every cloud stage).
      if (own_weight > 0) f.averaged[sj] = own_weight;
      continue;
    }
    StageReplica own;
    if (own_weight > 0) {
      own = captureStage(*f.model, *f.optimizer, j);
      own.weight = own_weight;
      replicas.push_back(&own);
    }
    f.averaged[sj] = 0.0;
    for (const auto* r : replicas) f.averaged[sj] += r->weight;
    const auto average = averageReplicas(replicas);
    installStage(average, *f.model, *f.optimizer, j);
    for (auto* s : holders) installStage(average, *s->model, *s->optimizer, j);
  }
  for (auto& v : f.trained) v = 0.0;
  for (auto& entry : sessions_) entry.second->cloud_samples = 0.0;
  for (const auto& c : round) total_samples += c.samples;
  ++f.rounds;
  if (metrics_) metrics_->fleetRound();
  for (auto& c : round) {
    Session& s = *c.session;
    auto info = std::get<transport::AverageInfo>(c.request.body);
    transport::AverageInfo reply_info{info.round, static_cast<std::uint64_t>(total_samples), 0, {}};
    Message reply(MessageType::kAverageReply, reply_info);
    reply.header.epoch = c.request.header.epoch;
    reply.header.step = c.request.header.step;
    addStages(reply, *f.model, *f.optimizer, static_cast<int>(c.stages.size()));
    s.averaging = false;
    s.round_seen = f.rounds;
    s.link.answer(c.request, std::move(reply));
  }
  log_->debug("fleet: averaging round {} over {} edge(s), {:.0f} samples", f.rounds, round.size(), total_samples);
}

void CloudTrainer::advanceByteMetrics(telemetry::TrainerMetrics& m, const Session& s) {
  telemetry::TrainerMetrics::advance(m.bytes_uplink, static_cast<double>(s.link.bytesUp()));
  telemetry::TrainerMetrics::advance(m.bytes_downlink, static_cast<double>(s.link.bytesDown()));
  telemetry::TrainerMetrics::advance(m.errors_rejected, static_cast<double>(transport_->stats().messages_rejected));
}

void CloudTrainer::countTransportLimits() {
  if (!metrics_) return;
  const auto stats = transport_->stats();
  metrics_->limitHit("peer_rate", static_cast<double>(stats.messages_rate_limited - counted_rate_limited_));
  metrics_->limitHit("peer_queue", static_cast<double>(stats.messages_overflowed - counted_overflowed_));
  counted_rate_limited_ = stats.messages_rate_limited;
  counted_overflowed_ = stats.messages_overflowed;
  std::uint64_t evictions = 0;
  for (const auto& entry : sessions_) evictions += entry.second->link.memoryEvictions();
  evictions += ended_evictions_;
  metrics_->limitHit("session_memory", static_cast<double>(evictions - counted_evictions_));
  counted_evictions_ = evictions;
}

void CloudTrainer::onProbe(Session& s, Message& message) {
  const auto info = std::get<transport::ProbeInfo>(message.body);
  if (info.reply_bytes > static_cast<std::uint64_t>(config_.scheduler.probe_bytes) * 4) {
    throw WireError(ErrorCode::kTooLarge, "probe asks for " + std::to_string(info.reply_bytes) + " bytes back");
  }
  Message reply(MessageType::kProbeReply, transport::ProbeInfo{info.t0, message.received_at, 0.0, 0});
  if (info.reply_bytes > 0) {
    addFrame(reply, transport::rawFrame(torch::zeros({static_cast<std::int64_t>(info.reply_bytes)}, torch::kUInt8)));
  }
  std::get<transport::ProbeInfo>(reply.body).t2 = transport::steadySeconds();
  s.link.send(std::move(reply));
}

void CloudTrainer::onMigrate(Session& s, Message& message) {
  if (fleet_) {
    throw WireError(ErrorCode::kUnexpected,
                    "re-partitioning in a shared fleet is not supported yet: give each edge a fixed split.point");
  }
  const auto info = std::get<transport::MigrateInfo>(message.body);
  const int from = static_cast<int>(info.from);
  const int to = static_cast<int>(info.to);
  if (from != s.split()) {
    throw WireError(ErrorCode::kUnexpected,
                    "migration from split " + std::to_string(from) + " but the split is " + std::to_string(s.split()));
  }
  if (to > s.stages) {
    throw WireError(ErrorCode::kUnexpected, "migration to split " + std::to_string(to) + " beyond the " +
                                                std::to_string(s.stages) + " stages");
  }
  if (info.codec != "none") {
    try {
      s.codecs.get(info.codec);
    } catch (const std::exception& e) {
      throw WireError(ErrorCode::kUnexpected, std::string("migration to an unknown codec: ") + e.what());
    }
  }
  Message ack(MessageType::kMigrateAck, transport::MigrateInfo{info.from, info.to, info.codec, {}});
  if (to < from) {
    unpackStages(message, *s.model, *s.optimizer, to, from, s.codecs);
  } else if (to > from) {
    if (!message.header.tensors.empty()) {
      throw WireError(ErrorCode::kInvalidTensor, "stages move to the edge: no tensors expected");
    }
    packStages(ack, *s.model, *s.optimizer, from, to);
  }
  log_->info("session {:016x}: split {} → {} (uplink {})", s.id(), from, to, info.codec);
  s.link.position().split = to;
  // Snapshots hold the old split's stages: start again from this point (the edge does too).
  s.snapshots.clear();
  takeSnapshot(s);
  if (s.metrics) {
    s.metrics->repartitions->Increment();
    s.metrics->split_point->Set(to);
    s.metrics->setCodec(info.codec);
  }
  ack.header.epoch = message.header.epoch;
  s.link.answer(message, std::move(ack));
}

void CloudTrainer::onCheckpoint(Session& s, Message& message) {
  const auto info = std::get<transport::CheckpointInfo>(message.body);
  const auto& position = s.link.position();
  if (message.header.step != position.next_step) {
    throw WireError(ErrorCode::kUnexpected, "checkpoint at step " + std::to_string(message.header.step) +
                                                " but the cloud has applied " + std::to_string(position.next_step));
  }
  if (!s.checkpoints) throw WireError(ErrorCode::kUnexpected, "checkpoints are disabled on the cloud");
  const bool epoch_end = info.batch == 0 && static_cast<int>(info.epoch) > position.epoch;
  if (epoch_end) closeEpoch(s);  // records the finished epoch, evaluation included
  RunPosition run;
  run.step = position.next_step;
  run.epoch = static_cast<int>(info.epoch);
  run.batch = info.batch;
  run.split = s.split();
  run.staleness = s.staleness;
  if (!epoch_end) {
    run.stats = s.train;
    run.epoch_seconds = std::chrono::duration<double>(Clock::now() - s.epoch_start).count();
  }
  run.history = s.summary.history;
  s.checkpoints->save(captureRun("cloud", s.hello.run_name, run, modelOf(s), optimizerOf(s), s.split(), s.stages));
  Message ack(MessageType::kCheckpointAck, info);
  ack.header.step = message.header.step;
  s.link.answer(message, std::move(ack));
}

void CloudTrainer::takeSnapshot(Session& s) {
  RunPosition run;
  run.step = s.link.position().next_step;
  run.epoch = s.link.position().epoch;
  run.split = s.split();
  run.staleness = s.staleness;
  run.stats = s.train;
  // A fleet's stages are not rolled back for one edge (the step that failed was not
  // applied; the others' steps since must stay): its snapshots hold the statistics only.
  const int first = shared() ? s.stages : s.split();
  s.snapshots.add(captureRun("cloud", s.hello.run_name, run, modelOf(s), optimizerOf(s), first, s.stages));
}

void CloudTrainer::onRollback(Session& s, Message& message) {
  const auto info = std::get<transport::RollbackInfo>(message.body);
  auto& position = s.link.position();
  if (!position.epoch_open) throw WireError(ErrorCode::kUnexpected, "rollback outside an epoch");
  if (message.header.step != position.next_step) {
    throw WireError(ErrorCode::kUnexpected, "rollback at step " + std::to_string(message.header.step) +
                                                " but the cloud has handled " + std::to_string(position.next_step));
  }
  if (static_cast<int>(info.staleness) > s.staleness) {
    throw WireError(ErrorCode::kUnexpected, "a rollback may lower K, not raise it (" + std::to_string(s.staleness) +
                                                " to " + std::to_string(info.staleness) + ")");
  }
  const auto* snapshot = s.snapshots.find(info.to_step);
  if (snapshot == nullptr) {
    std::string held;
    for (auto step : s.snapshots.steps()) held += (held.empty() ? "" : ", ") + std::to_string(step);
    throw WireError(ErrorCode::kUnexpected, "rollback to step " + std::to_string(info.to_step) +
                                                ": no snapshot there (held: " + (held.empty() ? "none" : held) + ")");
  }
  const auto restored = restoreRun(*snapshot, modelOf(s), optimizerOf(s), shared() ? s.stages : s.split(), s.stages);
  s.snapshots.dropAfter(info.to_step);
  s.train = restored.stats;
  s.staleness = static_cast<int>(info.staleness);
  s.downlink_codec = info.downlink_codec;
  s.lr_scale = info.lr_scale;
  s.lr = optim::learningRate(config_.optimizer, position.epoch, static_cast<int>(s.hello.epochs)) * s.lr_scale;
  if (!shared()) s.optimizer->setLearningRate(s.lr);  // a shared fleet's joint step sets its own
  if (s.metrics) {
    s.metrics->guard_rollback->Increment();
    s.metrics->setCodec(info.uplink_codec);
  }
  limited_.log(spdlog::level::warn, s.origin, "rollback",
               "session {:016x}: divergence guard ({}): rolled back to step {}; K {}, codecs {}/{}, learning rate "
               "x{:g}",
               s.id(), info.reason, info.to_step, info.staleness, info.uplink_codec, info.downlink_codec,
               info.lr_scale);
  telemetry::Intervention record;
  record.epoch = position.epoch;
  record.step = static_cast<std::int64_t>(message.header.step);
  record.side = "edge";  // the edge decides every rollback; `reason` says what failed
  record.reason = info.reason;
  record.loss = std::numeric_limits<double>::quiet_NaN();
  record.rolled_back_to = static_cast<std::int64_t>(info.to_step);
  record.action = fmt::format("K {}, codecs {}/{}, learning rate x{:g}", info.staleness, info.uplink_codec,
                              info.downlink_codec, info.lr_scale);
  s.summary.interventions.push_back(record);
  auto reply = info;
  reply.steps = s.train.steps;
  Message ack(MessageType::kRollbackAck, reply);
  ack.header.epoch = message.header.epoch;
  ack.header.step = message.header.step;
  s.link.answer(message, std::move(ack));
}

void CloudTrainer::closeEpoch(Session& s) {
  const auto& position = s.link.position();
  if (position.epoch < 0 || s.train.steps == 0) return;
  auto record =
      epochRecord(position.epoch, s.lr, s.train, s.eval, s.train_seconds,
                  std::chrono::duration<double>(Clock::now() - s.epoch_start).count(), s.split(), s.staleness);
  std::tie(record.bytes_uplink, record.bytes_downlink) = s.link.takeEpochBytes();
  if (s.eval.samples == 0) {  // the edge stopped before evaluating
    record.partial = true;
    record.test_loss = std::numeric_limits<double>::quiet_NaN();
    record.test_accuracy = std::numeric_limits<double>::quiet_NaN();
  }
  s.summary.history.push_back(record);
  if (s.metrics && !record.partial) {
    s.metrics->epoch->Set(position.epoch + 1);
    s.metrics->test_loss->Set(record.test_loss);
    s.metrics->test_accuracy->Set(record.test_accuracy);
  }
  if (record.partial) {
    log_->info("session {:016x} epoch {}/{} stopped after {} steps: train loss {:.4f} acc {:.2f}% (not evaluated)",
               s.id(), position.epoch + 1, s.hello.epochs, s.train.steps, record.train_loss,
               record.train_accuracy * 100);
  } else {
    logEpoch(*log_, record, static_cast<int>(s.hello.epochs),
             {fmt::format("session {:016x} ", s.id()),
              "",
              {{"session", fmt::format("{:016x}", s.id())}, {"edge", s.hello.edge_name}}});
  }
  s.train = {};
  s.eval = {};
}

void CloudTrainer::onEpochBegin(Session& s, Message& message) {
  closeEpoch(s);
  auto& position = s.link.position();
  const auto& info = std::get<transport::EpochInfo>(message.body);
  const int epoch = static_cast<int>(message.header.epoch);
  if (epoch <= position.epoch || epoch >= static_cast<int>(s.hello.epochs)) {
    throw WireError(ErrorCode::kUnexpected, "epoch " + std::to_string(epoch) + " after epoch " +
                                                std::to_string(position.epoch) + " of " +
                                                std::to_string(s.hello.epochs));
  }
  position.epoch = epoch;
  position.epoch_open = true;
  s.begun = true;
  s.staleness = static_cast<int>(info.staleness);
  s.link.noteStaleness(s.staleness);
  s.link.forgetEvaluationReplies();
  s.lr = optim::learningRate(config_.optimizer, epoch, static_cast<int>(s.hello.epochs)) * s.lr_scale;
  if (!shared()) s.optimizer->setLearningRate(s.lr);  // a shared fleet's joint step sets its own
  if (s.resume_stats) {
    s.train = *s.resume_stats;
    s.resume_stats.reset();
  }
  s.snapshot_every = info.snapshot_every;
  s.snapshots.clear();
  takeSnapshot(s);
  s.progress =
      std::make_unique<telemetry::Progress>("cloud.pipeline", epoch + 1, static_cast<int>(s.hello.epochs),
                                            std::max<std::int64_t>(1, info.steps), "edge " + s.hello.edge_name + " ");
  s.epoch_start = Clock::now() - std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(std::exchange(s.resume_seconds, 0.0)));
}

void CloudTrainer::onEpochEnd(Session& s, Message& message) {
  auto& position = s.link.position();
  if (!position.epoch_open || static_cast<int>(message.header.epoch) != position.epoch) {
    throw WireError(ErrorCode::kUnexpected, "EpochEnd for epoch " + std::to_string(message.header.epoch) +
                                                " which is not in progress");
  }
  position.epoch_open = false;
  if (s.progress) s.progress->finish();
  s.progress.reset();
  s.train_seconds = std::chrono::duration<double>(Clock::now() - s.epoch_start).count();
  Message ack(MessageType::kEpochAck, transport::EpochInfo{static_cast<std::uint32_t>(s.staleness), s.train.steps,
                                                           s.train.loss(), s.train.accuracy()});
  ack.header.epoch = message.header.epoch;
  s.link.answer(message, std::move(ack));
}

void CloudTrainer::endSession(const std::string& peer, SessionEnd end, const std::string& reason) {
  auto it = sessions_.find(peer);
  if (it == sessions_.end()) return;
  Session& s = *it->second;
  if (fleet_) {
    // Its waiting batch is stepped (the edge may be gone: the reply is then dropped), its
    // held contribution leaves the round, and the round may now be complete.
    if (s.batch_waiting) stepBatches();
    auto& round = fleet_->round;
    round.erase(std::remove_if(round.begin(), round.end(), [&](const auto& c) { return c.session == &s; }),
                round.end());
    s.averaging = false;
  }
  closeEpoch(s);
  ended_evictions_ += s.link.memoryEvictions();
  s.summary.interrupted = end != SessionEnd::kCompleted;
  s.summary.diverged = end == SessionEnd::kDiverged;
  s.summary.wall_seconds = std::chrono::duration<double>(Clock::now() - s.start).count();
  s.summary.bytes_uplink = s.link.bytesUp();
  s.summary.bytes_downlink = s.link.bytesDown();
  if (!s.begun && s.summary.history.empty()) {
    // Nothing was trained: no summary replaces the last real one (and a flood of Hellos
    // writes nothing to disk).
    limited_.log(spdlog::level::info, s.origin, "ended before training",
                 "session {:016x} of edge '{}' ended ({}) before training: no summary written", s.id(),
                 s.hello.edge_name, reason);
  } else {
    try {
      // A fleet's sessions each keep their own summary too (the top-level one is the last
      // session's, as for one edge).
      if (fleet_) {
        telemetry::writeSummary(config_.run.output_dir + "/edges/" + session::directoryName(s.hello.run_name),
                                s.summary);
      }
      const auto path = telemetry::writeSummary(config_.run.output_dir, s.summary);
      log_->info("session {:016x} ended ({}) after {} steps: summary written to {}", s.id(), reason,
                 s.link.position().next_step, path);
    } catch (const std::exception& e) {
      log_->error("session {:016x} ended ({}) but its summary could not be written: {}", s.id(), reason, e.what());
    }
  }
  (end == SessionEnd::kFailed ? failed_ : completed_)++;
  last_end_ = end;
  last_summary_ = s.summary;
  if (s.begun && s.model) last_model_ = std::move(s.model);
  sessions_.erase(it);
  if (fleet_) {
    if (metrics_) metrics_->fleetEdges(static_cast<double>(sessions_.size()));
    closeRoundIfDue(false);
  }
  // The session's tensors went back to the allocator; hand the free pages back to the
  // system too, so that the resident size falls again after many sessions.
  ::malloc_trim(0);
}

void CloudTrainer::onLinkEvent(const transport::LinkEvent& event) {
  auto it = sessions_.find(event.peer);
  if (it == sessions_.end()) return;
  Session& s = *it->second;
  if (event.kind == transport::LinkEvent::Kind::kTrouble) {
    s.link.hintResync();  // messages from this edge were lost: tell it where we stand
    return;
  }
  limited_.log(spdlog::level::err, s.origin, "edge went silent",
               "edge '{}' is gone in epoch {} (its connection closed, or no message for {} s); ending its session",
               s.hello.edge_name, s.link.position().epoch + 1, config_.link.peer_timeout_s);
  if (s.metrics) s.metrics->errors_timeout->Increment();
  endSession(event.peer, SessionEnd::kFailed, "edge went silent");
}

void CloudTrainer::handle(Message& message) {
  const std::string peer = message.peer;
  auto it = sessions_.find(peer);
  Session* s = it == sessions_.end() ? nullptr : it->second.get();
  const auto type = message.header.type;
  try {
    if (type == MessageType::kError) {
      const auto& e = std::get<transport::ErrorInfo>(message.body);
      limited_.log(spdlog::level::warn, peerName(peer), "edge reported an error", "{} reported an error: {}: {}",
                   s ? "edge '" + s->hello.edge_name + "'" : peerName(peer), transport::errorCodeName(e.code),
                   e.message);
      return;
    }
    if (type == MessageType::kHello) {
      onHello(message);
      return;
    }
    if (!s) {
      throw WireError(ErrorCode::kNoSession,
                      std::string(transport::messageTypeName(type)) + " without a session; send Hello first");
    }
    if (message.header.session != s->id()) {
      throw WireError(ErrorCode::kNoSession, "session " + std::to_string(message.header.session) +
                                                 " is not this edge's session");
    }
    // A fleet's waiting batches are stepped before anything else of the same edge is
    // handled, so that each edge's requests are answered in order.
    if (fleet_ && s->batch_waiting && type != MessageType::kActivations) stepBatches();
    if (s->link.admit(message) != session::CloudSession::Admission::kHandle) return;
    switch (type) {
      case MessageType::kActivations: onActivations(*s, message, true); break;
      case MessageType::kEvalActivations: onActivations(*s, message, false); break;
      case MessageType::kEpochBegin: onEpochBegin(*s, message); break;
      case MessageType::kEpochEnd: onEpochEnd(*s, message); break;
      case MessageType::kProbe: onProbe(*s, message); break;
      case MessageType::kMigrate: onMigrate(*s, message); break;
      case MessageType::kRollback: onRollback(*s, message); break;
      case MessageType::kCheckpoint: onCheckpoint(*s, message); break;
      case MessageType::kAverage: onAverage(*s, message); break;
      case MessageType::kResync: s->link.onResync(message); break;
      case MessageType::kShutdown: {
        const auto info = std::get<transport::ShutdownInfo>(message.body);
        s->link.answer(message, Message(MessageType::kShutdownAck, std::monostate{}));
        if (!info.completed) {
          log_->warn("edge '{}' stopped its run early ({}): an orderly end", s->hello.edge_name, info.reason);
        }
        const bool diverged = info.reason.rfind("diverged", 0) == 0;
        endSession(peer,
                   info.completed ? SessionEnd::kCompleted
                   : diverged     ? SessionEnd::kDiverged
                                  : SessionEnd::kStopped,
                   info.reason);
        break;
      }
      default:
        throw WireError(ErrorCode::kUnexpected,
                        std::string(transport::messageTypeName(type)) + " is not something an edge sends");
    }
  } catch (const WireError& e) {
    limited_.log(spdlog::level::warn, peerName(peer), std::string("rejected: ") + transport::errorCodeName(e.code()),
                 "rejected {} from {}: {}: {}", transport::messageTypeName(type),
                 s ? "edge '" + s->hello.edge_name + "'" : peerName(peer) + " (no session)",
                 transport::errorCodeName(e.code()), e.what());
    replyError(peer, e.code(), e.what(), s ? s->id() : 0);
  } catch (const std::exception& e) {
    limited_.log(spdlog::level::err, peerName(peer), "failed to handle", "failed to handle {}: {}",
                 transport::messageTypeName(type), e.what());
    replyError(peer, ErrorCode::kInternal, e.what(), s ? s->id() : 0);
  }
}

CloudOutcome CloudTrainer::run(const std::atomic<bool>& stop) {
  const auto start = Clock::now();
  log_->info("serving model {} (split {}) at {}", config_.model.name,
             config_.split.automatic ? std::string("auto") : std::to_string(config_.split.point), transport_->endpoint());
  bool seen_session = false;
  auto beat = watchdog::beat("cloud compute");
  auto next_tick = Clock::now();
  while (true) {
    beat.beat();
    if (Clock::now() >= next_tick) {
      next_tick = Clock::now() + std::chrono::seconds(1);
      limited_.tick();
      countTransportLimits();
    }
    if (stop) {
      for (const auto& [peer, s] : sessions_)
        replyError(peer, ErrorCode::kInternal, "the cloud is shutting down", s->id());
      while (!sessions_.empty()) endSession(sessions_.begin()->first, SessionEnd::kFailed, "cloud interrupted");
      transport_->close(std::chrono::milliseconds(1000));
      return CloudOutcome::kInterrupted;
    }
    auto wait = std::chrono::milliseconds(100);
    if (fleet_ && !fleet_->batches.empty()) {
      // Batches wait for others until the gather time is up.
      wait = std::min(
          wait, std::max(std::chrono::milliseconds(0),
                         std::chrono::duration_cast<std::chrono::milliseconds>(fleet_->gather_until - Clock::now())));
    }
    auto incoming = transport_->receive(wait);
    if (incoming) {
      if (auto* event = transport::asEvent(*incoming)) {
        onLinkEvent(*event);
      } else {
        handle(*transport::asMessage(*incoming));
      }
    } else if (fleet_ && Clock::now() >= fleet_->gather_until) {
      stepBatches();  // nothing more came in time
    }
    if (fleet_) {
      if (batchesComplete()) stepBatches();
      closeRoundIfDue(true);
    }
    if (!sessions_.empty()) seen_session = true;
    if (!options_.keep_serving && sessions_.empty() && completed_ + failed_ > 0) break;
    if (!seen_session && config_.link.accept_timeout_s > 0 &&
        std::chrono::duration<double>(Clock::now() - start).count() > config_.link.accept_timeout_s) {
      transport_->close(std::chrono::milliseconds(0));
      return CloudOutcome::kNoEdge;
    }
  }
  transport_->close(std::chrono::milliseconds(1000));
  switch (last_end_) {
    case SessionEnd::kCompleted: return CloudOutcome::kCompleted;
    case SessionEnd::kStopped: return CloudOutcome::kEdgeStopped;
    case SessionEnd::kDiverged: return CloudOutcome::kDiverged;
    case SessionEnd::kFailed: break;
  }
  return CloudOutcome::kFailed;
}

}  // namespace tandem::pipeline

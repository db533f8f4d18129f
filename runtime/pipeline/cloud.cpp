#include "runtime/pipeline/cloud.h"

#include <torch/nn/functional/loss.h>
#include <torch/utils.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <limits>
#include <map>
#include <optional>
#include <utility>
#include <random>
#include <unistd.h>

#include "runtime/common/log.h"
#include "runtime/common/strings.h"
#include "runtime/optim/schedule.h"
#include "runtime/pipeline/link.h"
#include "runtime/pipeline/migration.h"
#include "runtime/scheduler/profiler.h"
#include "runtime/telemetry/progress.h"

#include <nlohmann/json.hpp>

namespace tandem::pipeline {

using Clock = std::chrono::steady_clock;
using transport::ErrorCode;
using transport::Message;
using transport::MessageType;
using transport::WireError;

struct CloudTrainer::Session {
  std::uint64_t id = 0;
  std::string peer;
  transport::Hello hello;
  std::unique_ptr<models::StageModel> model;
  int split = 0;
  int stages = 0;
  std::unique_ptr<optim::StageOptimizers> optimizer;
  transport::CodecCache codecs;
  std::uint64_t next_step = 0;
  int epoch = -1;
  int staleness = 0;
  bool epoch_open = false;
  double lr = 0.0;
  RunningStats train;
  RunningStats eval;
  Clock::time_point start;
  Clock::time_point epoch_start;
  double train_seconds = 0.0;
  std::uint64_t bytes_up = 0;
  std::uint64_t bytes_down = 0;
  std::uint64_t epoch_bytes_up = 0;
  std::uint64_t epoch_bytes_down = 0;
  telemetry::RunSummary summary;
  telemetry::TrainerMetrics* metrics = nullptr;
  std::unique_ptr<telemetry::Progress> progress;
  std::unique_ptr<checkpoint::CheckpointStore> checkpoints;
  std::optional<RunningStats> resume_stats;  // a resumed epoch's statistics so far
  double resume_seconds = 0.0;
  // Replies kept to send again after a link outage (requests are idempotent by step).
  std::map<std::uint64_t, Message> replies;       // recent Gradients, by step
  std::map<std::uint64_t, Message> eval_replies;  // this epoch's EvalResults, by step
  std::optional<Message> epoch_ack;
  std::optional<Message> checkpoint_ack;
  std::optional<Message> migrate_ack;
  std::uint64_t checkpoint_step = std::numeric_limits<std::uint64_t>::max();
  std::pair<int, int> last_migration{-1, -1};
  int max_staleness = 0;
};

namespace {

std::uint64_t randomSessionId() {
  std::random_device device;
  std::uint64_t id = 0;
  while (id == 0) id = (std::uint64_t{device()} << 32) | device();
  return id;
}

}  // namespace

CloudTrainer::CloudTrainer(config::Config config, std::unique_ptr<transport::Transport> transport,
                           CloudOptions options, telemetry::Metrics* metrics)
    : config_(std::move(config)),
      options_(options),
      metrics_(metrics),
      log_(log::get("cloud.pipeline")),
      transport_(std::move(transport)) {
  // Validate what this side owns now, pointing at the keys, rather than at the first edge.
  auto reference = buildModel(config_);
  initialSplitPoint(config_, reference);
  if (config_.scheduler.active(config_.split)) {
    // The cloud has no data: its stages are timed on random inputs of the right shape.
    const auto& shape = reference.boundaryShapes().front();
    std::vector<std::int64_t> batch{config_.data.batch_size};
    batch.insert(batch.end(), shape.begin(), shape.end());
    cloud_profile_ = scheduler::toJson(scheduler::sideProfile(config_, reference, torch::randn(batch), config::Role::kCloud));
  }
  if (config_.compression.downlink != "none") {
    try {
      transport::CodecCache codecs;
      codecs.get(config_.compression.downlink);
    } catch (const std::exception& e) {
      config::failAt(config_, "compression.downlink", e.what());
    }
  }
}

CloudTrainer::~CloudTrainer() = default;

void CloudTrainer::reply(Session* s, const std::string& peer, Message message) {
  message.peer = peer;
  if (s) {
    message.header.session = s->id;
    const auto bytes = wireBytes(message);
    s->bytes_down += bytes;
    s->epoch_bytes_down += bytes;
  }
  transport_->send(std::move(message));
}

void CloudTrainer::replyError(const std::string& peer, ErrorCode code, const std::string& text, std::uint64_t session) {
  Message message(MessageType::kError, transport::ErrorInfo{code, text});
  message.header.session = session;
  message.peer = peer;
  transport_->send(std::move(message));
}

void CloudTrainer::onHello(Message& message) {
  const auto& hello = std::get<transport::Hello>(message.body);
  if (sessions_.count(message.peer)) {
    throw WireError(ErrorCode::kUnexpected, "this edge already has a session; Hello is sent once");
  }
  auto model = std::make_unique<models::StageModel>(buildModel(config_));
  // A resumed run continues from the newest checkpoint both sides hold.
  std::unique_ptr<checkpoint::CheckpointStore> store;
  std::optional<checkpoint::Checkpoint> resume_from;
  if (config_.checkpoint.enabled) {
    std::string run = hello.run_name;
    for (auto& ch : run) {
      if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '-' && ch != '_' && ch != '.') ch = '_';
    }
    store = std::make_unique<checkpoint::CheckpointStore>(config_.checkpoint.dir + "/cloud/" + run,
                                                          config_.checkpoint.keep);
    if (hello.resume) {
      const auto mine = store->validSteps();
      for (auto it = mine.rbegin(); it != mine.rend() && !resume_from; ++it) {
        if (std::find(hello.checkpoints.begin(), hello.checkpoints.end(), *it) != hello.checkpoints.end()) {
          resume_from = store->load(*it);
        }
      }
    }
  }
  std::vector<std::string> differences;
  const auto differ = [&](const std::string& what, const std::string& edge, const std::string& cloud) {
    if (edge != cloud) differences.push_back(what + ": edge " + edge + ", cloud " + cloud);
  };
  differ("model", "'" + hello.model + "'", "'" + config_.model.name + "'");
  if (hello.model == config_.model.name) {
    differ("architecture fingerprint (input shape or classes differ)", hello.fingerprint, model->fingerprint());
  }
  differ("stages", std::to_string(hello.num_stages), std::to_string(model->numStages()));
  if (!config_.split.automatic && !resume_from && config_.scheduler.split_schedule.empty()) {
    differ("split point", std::to_string(hello.split_point), std::to_string(config_.split.point));
  }
  differ("batch size", std::to_string(hello.batch_size), std::to_string(config_.data.batch_size));
  if (hello.split_point > static_cast<std::uint32_t>(model->numStages())) {
    differences.push_back("split point " + std::to_string(hello.split_point) + " is beyond the model");
  }
  if (hello.epochs == 0) differences.push_back("epochs: edge asks for 0");
  if (!differences.empty()) {
    ++refused_;
    const std::string text = "handshake refused: " + join(differences, "; ");
    log_->error("edge '{}': {}", hello.edge_name, text);
    replyError(message.peer, ErrorCode::kHandshake, text, 0);
    return;
  }

  auto s = std::make_unique<Session>();
  s->id = randomSessionId();
  s->peer = message.peer;
  s->hello = hello;
  s->split = resume_from ? resume_from->split : static_cast<int>(hello.split_point);
  s->stages = model->numStages();
  s->model = std::move(model);
  s->optimizer = std::make_unique<optim::StageOptimizers>(config_.optimizer, *s->model, s->split, s->stages);
  s->checkpoints = std::move(store);
  if (resume_from) {
    const auto& c = *resume_from;
    restoreStages(StageState{c.tensors, c.optimizer_layout}, *s->model, *s->optimizer, s->split, s->stages, false);
    s->next_step = c.step;
    s->epoch = c.epoch - 1;  // the edge begins epoch c.epoch again
    if (c.batch > 0) {
      RunningStats stats;
      stats.loss_sum = c.loss_sum;
      stats.correct = c.correct;
      stats.samples = c.samples;
      stats.steps = c.steps;
      s->resume_stats = stats;
      s->resume_seconds = c.epoch_seconds;
    }
    s->summary.history = telemetry::historyFromJson(nlohmann::json::parse(c.extra).at("history").dump());
  }
  s->start = Clock::now();
  s->bytes_up = message.wire_bytes;
  if (metrics_) {
    s->metrics = &metrics_->forEdge(hello.run_name);  // the label the edge gives itself
    s->metrics->split_point->Set(s->split);
    s->metrics->setCodec(hello.uplink_codec);
  }
  s->summary = newRunSummary(config::Role::kCloud, "split", hello.run_name, hello.model, config_.data.dataset,
                             static_cast<int>(hello.epochs));

  Message welcome(MessageType::kWelcome, transport::Welcome{});
  auto& body = std::get<transport::Welcome>(welcome.body);
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  body.cloud_name = host;
  body.split_point = static_cast<std::uint32_t>(s->split);
  body.resumed = resume_from.has_value();
  body.resume_step = resume_from ? resume_from->step : 0;
  const auto state = resume_from ? std::vector<torch::Tensor>{} : s->model->state(0, s->split);
  body.weight_tensors = static_cast<std::uint32_t>(state.size());
  body.cloud_profile = cloud_profile_;
  for (const auto& t : state) addFrame(welcome, transport::rawFrame(t));
  log_->info("session {:016x} for edge '{}' (run '{}'): model {}, split {}/{}, K {}, replay {}, uplink {}, {} epochs{}",
             s->id, hello.edge_name, hello.run_name, hello.model, s->split, s->stages, hello.staleness, hello.replay,
             hello.uplink_codec, hello.epochs,
             resume_from ? ", resumed from step " + std::to_string(resume_from->step) : std::string());
  Session* raw = s.get();
  sessions_[message.peer] = std::move(s);
  reply(raw, message.peer, std::move(welcome));
}

void CloudTrainer::resendCached(Session& s, const Message* cached, const char* what, std::uint64_t step) {
  if (cached == nullptr) {
    log_->debug("session {:016x}: duplicate {} {} with nothing cached", s.id, what, step);
    return;
  }
  reply(&s, s.peer, transport::copyMessage(const_cast<Message&>(*cached)));
}

void CloudTrainer::sendResync(Session& s, std::uint64_t request) {
  transport::ResyncInfo info;
  info.request = request;
  info.next_step = s.next_step;
  info.epoch = static_cast<std::uint32_t>(std::max(0, s.epoch));
  info.epoch_open = s.epoch_open;
  reply(&s, s.peer, Message(MessageType::kResyncReply, info));
}

void CloudTrainer::onResync(Session& s, Message& message) {
  const auto info = std::get<transport::ResyncInfo>(message.body);
  std::size_t resent = 0;
  for (auto& [step, cached] : s.replies) {
    if (step >= info.oldest_step && step < s.next_step) {
      reply(&s, s.peer, transport::copyMessage(cached));
      ++resent;
    }
  }
  log_->info("session {:016x}: resync, at step {} (edge sent up to {}); re-sent {} gradient(s)", s.id, s.next_step,
             info.next_step, resent);
  sendResync(s, info.request);
}

void CloudTrainer::onActivations(Session& s, Message& message, bool train) {
  const std::int64_t max_batch = train ? config_.data.batch_size : config_.data.test_batch_size;
  // After lost messages a step may come twice (answer from the cache) or early (tell the
  // edge where we stand); each batch's update is applied exactly once.
  if (train && message.header.step < s.next_step) {
    auto it = s.replies.find(message.header.step);
    resendCached(s, it == s.replies.end() ? nullptr : &it->second, "training step", message.header.step);
    return;
  }
  if (train && message.header.step > s.next_step) {
    log_->warn("session {:016x}: step {} arrived, expected {}: asking the edge to resend", s.id, message.header.step,
               s.next_step);
    sendResync(s);
    return;
  }
  if (!train && s.eval_replies.count(message.header.step)) {
    resendCached(s, &s.eval_replies.at(message.header.step), "evaluation step", message.header.step);
    return;
  }
  expectTensorCount(message, 2);
  const auto& boundary = s.model->boundaryShapes()[static_cast<std::size_t>(s.split)];
  const auto batch = expectBatchTensor(message, 0, transport::DType::kFloat32, boundary, max_batch, "activation");
  const auto labels_batch = expectBatchTensor(message, 1, transport::DType::kInt64, {}, max_batch, "labels");
  if (labels_batch != batch) {
    throw WireError(ErrorCode::kInvalidTensor, "labels for " + std::to_string(labels_batch) + " samples, activation for " +
                                                   std::to_string(batch));
  }
  if (train && message.header.step != s.next_step) {
    throw WireError(ErrorCode::kUnexpected, "training step " + std::to_string(message.header.step) + ", expected " +
                                                std::to_string(s.next_step));
  }
  if (train && !s.epoch_open) throw WireError(ErrorCode::kUnexpected, "training batch outside an epoch");
  const auto decode_start = Clock::now();
  auto activation = transport::frameToTensor(message.header.tensors[0], std::move(message.payloads[0]), s.codecs);
  if (s.metrics) s.metrics->decode->Observe(std::chrono::duration<double>(Clock::now() - decode_start).count());
  auto labels = transport::frameToTensor(message.header.tensors[1], std::move(message.payloads[1]), s.codecs);
  const auto classes = s.model->spec().num_classes;
  if (labels.min().item<std::int64_t>() < 0 || labels.max().item<std::int64_t>() >= classes) {
    throw WireError(ErrorCode::kInvalidTensor, "labels outside 0.." + std::to_string(classes - 1));
  }

  if (!train) {
    torch::NoGradGuard no_grad;
    s.model->train(false);
    const auto logits = s.model->forward(activation, s.split, s.stages);
    const double loss = torch::nn::functional::cross_entropy(logits, labels).item<double>();
    const auto correct = logits.argmax(1).eq(labels).sum().item<std::int64_t>();
    s.eval.add(loss, correct, batch);
    s.model->train(true);
    Message result(MessageType::kEvalResult, transport::StepResult{loss, correct, batch, message.received_at, 0.0});
    result.header.epoch = message.header.epoch;
    result.header.step = message.header.step;
    result.header.session = s.id;
    s.eval_replies[message.header.step] = transport::copyMessage(result);
    reply(&s, s.peer, std::move(result));
    return;
  }

  const auto step_start = Clock::now();
  s.model->train(true);
  s.optimizer->zeroGrad();
  if (s.split > 0) activation = activation.detach().requires_grad_(true);
  const auto logits = s.model->forward(activation, s.split, s.stages);
  const auto loss_tensor = torch::nn::functional::cross_entropy(logits, labels);
  loss_tensor.backward();
  s.optimizer->step();
  const double loss = loss_tensor.item<double>();
  const auto correct = logits.detach().argmax(1).eq(labels).sum().item<std::int64_t>();
  s.train.add(loss, correct, batch);
  ++s.next_step;
  if (s.progress) {
    char status[64];
    std::snprintf(status, sizeof status, "loss %.4f acc %.2f%%", s.train.loss(), s.train.accuracy() * 100);
    s.progress->update(s.train.steps, s.train.samples, status);
  }
  const double compute = std::chrono::duration<double>(Clock::now() - step_start).count();

  Message result(MessageType::kGradients,
                 transport::StepResult{loss, correct, batch, message.received_at, 0.0, compute});
  result.header.epoch = message.header.epoch;
  result.header.step = message.header.step;
  const auto encode_start = Clock::now();
  if (s.split > 0) addTensor(result, activation.grad(), config_.compression.downlink, s.codecs);
  std::get<transport::StepResult>(result.body).replied_at = transport::steadySeconds();
  if (s.metrics) {
    auto& m = *s.metrics;
    m.encode->Observe(std::chrono::duration<double>(Clock::now() - encode_start).count());
    m.cloud_step->Observe(compute);
    m.steps->Increment();
    m.samples->Increment(static_cast<double>(batch));
    m.train_loss->Set(s.train.loss());
    m.train_accuracy->Set(s.train.accuracy());
    m.split_point->Set(s.split);
    m.compression_uplink->Set(static_cast<double>(activation.numel()) * 4.0 /
                              std::max<double>(1.0, static_cast<double>(message.header.tensors[0].bytes)));
    if (!result.payloads.empty()) {
      m.compression_downlink->Set(static_cast<double>(activation.numel()) * 4.0 /
                                  std::max<double>(1.0, static_cast<double>(result.payloads[0].size())));
    }
    TrainerMetricsAdvance(m, s);
    if (s.next_step % 16 == 1) telemetry::updateProcessMetrics(m);
  }
  result.header.session = s.id;
  s.replies[message.header.step] = transport::copyMessage(result);
  const std::size_t keep = static_cast<std::size_t>(2 * (s.max_staleness + 2));
  while (s.replies.size() > keep) s.replies.erase(s.replies.begin());
  reply(&s, s.peer, std::move(result));
}

void CloudTrainer::TrainerMetricsAdvance(telemetry::TrainerMetrics& m, const Session& s) {
  telemetry::TrainerMetrics::advance(m.bytes_uplink, static_cast<double>(s.bytes_up));
  telemetry::TrainerMetrics::advance(m.bytes_downlink, static_cast<double>(s.bytes_down));
  telemetry::TrainerMetrics::advance(m.errors_rejected, static_cast<double>(transport_->stats().messages_rejected));
}

void CloudTrainer::onProbe(Session& s, Message& message) {
  const auto info = std::get<transport::ProbeInfo>(message.body);
  if (info.reply_bytes > static_cast<std::uint64_t>(config_.scheduler.probe_bytes) * 4) {
    throw WireError(ErrorCode::kTooLarge, "probe asks for " + std::to_string(info.reply_bytes) + " bytes back");
  }
  Message reply_message(MessageType::kProbeReply, transport::ProbeInfo{info.t0, message.received_at, 0.0, 0});
  if (info.reply_bytes > 0) {
    addFrame(reply_message,
             transport::rawFrame(torch::zeros({static_cast<std::int64_t>(info.reply_bytes)}, torch::kUInt8)));
  }
  std::get<transport::ProbeInfo>(reply_message.body).t2 = transport::steadySeconds();
  reply(&s, s.peer, std::move(reply_message));
}

void CloudTrainer::onMigrate(Session& s, Message& message) {
  const auto info = std::get<transport::MigrateInfo>(message.body);
  const int from = static_cast<int>(info.from);
  const int to = static_cast<int>(info.to);
  if (s.last_migration == std::make_pair(from, to) && s.split == to && s.migrate_ack) {
    resendCached(s, &*s.migrate_ack, "migration", message.header.step);
    return;
  }
  if (from != s.split) {
    throw WireError(ErrorCode::kUnexpected, "migration from split " + std::to_string(from) + " but the split is " +
                                                std::to_string(s.split));
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
    if (!message.header.tensors.empty()) throw WireError(ErrorCode::kInvalidTensor, "stages move to the edge: no tensors expected");
    packStages(ack, *s.model, *s.optimizer, from, to);
  }
  log_->info("session {:016x}: split {} → {} (uplink {})", s.id, from, to, info.codec);
  s.split = to;
  s.last_migration = {from, to};
  s.replies.clear();  // gradients of the old split are never asked for again (the edge drained)
  if (s.metrics) {
    s.metrics->repartitions->Increment();
    s.metrics->split_point->Set(to);
    s.metrics->setCodec(info.codec);
  }
  ack.header.epoch = message.header.epoch;
  ack.header.session = s.id;
  s.migrate_ack = transport::copyMessage(ack);
  reply(&s, s.peer, std::move(ack));
}

void CloudTrainer::onCheckpoint(Session& s, Message& message) {
  const auto info = std::get<transport::CheckpointInfo>(message.body);
  if (message.header.step == s.checkpoint_step && s.checkpoint_ack) {
    resendCached(s, &*s.checkpoint_ack, "checkpoint", message.header.step);
    return;
  }
  if (message.header.step != s.next_step) {
    throw WireError(ErrorCode::kUnexpected, "checkpoint at step " + std::to_string(message.header.step) +
                                                " but the cloud has applied " + std::to_string(s.next_step));
  }
  if (!s.checkpoints) throw WireError(ErrorCode::kUnexpected, "checkpoints are disabled on the cloud");
  const bool epoch_end = info.batch == 0 && static_cast<int>(info.epoch) > s.epoch;
  if (epoch_end) closeEpoch(s);  // records the finished epoch, evaluation included
  const auto state = captureStages(*s.model, *s.optimizer, s.split, s.stages);
  checkpoint::Checkpoint c;
  c.role = "cloud";
  c.run_name = s.hello.run_name;
  c.step = s.next_step;
  c.epoch = static_cast<int>(info.epoch);
  c.batch = info.batch;
  c.split = s.split;
  c.staleness = s.staleness;
  if (!epoch_end) {
    c.loss_sum = s.train.loss_sum;
    c.correct = s.train.correct;
    c.samples = s.train.samples;
    c.steps = s.train.steps;
    c.epoch_seconds = std::chrono::duration<double>(Clock::now() - s.epoch_start).count();
  }
  c.optimizer_layout = state.optimizer_layout;
  c.tensors = state.tensors;
  c.extra = nlohmann::json{{"history", nlohmann::json::parse(telemetry::historyToJson(s.summary.history))}}.dump();
  s.checkpoints->save(c);
  Message ack(MessageType::kCheckpointAck, info);
  ack.header.step = message.header.step;
  ack.header.session = s.id;
  s.checkpoint_step = message.header.step;
  s.checkpoint_ack = transport::copyMessage(ack);
  reply(&s, s.peer, std::move(ack));
}

void CloudTrainer::closeEpoch(Session& s) {
  if (s.epoch < 0 || s.train.steps == 0) return;
  auto record = epochRecord(s.epoch, s.lr, s.train, s.eval, s.train_seconds,
                            std::chrono::duration<double>(Clock::now() - s.epoch_start).count(), s.split, s.staleness);
  record.bytes_uplink = s.epoch_bytes_up;
  record.bytes_downlink = s.epoch_bytes_down;
  s.summary.history.push_back(record);
  if (s.metrics) {
    s.metrics->epoch->Set(s.epoch + 1);
    s.metrics->test_loss->Set(record.test_loss);
    s.metrics->test_accuracy->Set(record.test_accuracy);
  }
  log_->info("session {:016x} {}", s.id, epochLine(record, static_cast<int>(s.hello.epochs)));
  s.train = {};
  s.eval = {};
  s.epoch_bytes_up = 0;
  s.epoch_bytes_down = 0;
}

void CloudTrainer::onEpochBegin(Session& s, Message& message) {
  closeEpoch(s);
  const auto& info = std::get<transport::EpochInfo>(message.body);
  const int epoch = static_cast<int>(message.header.epoch);
  if (epoch == s.epoch) return;  // sent again after a link outage
  if (epoch <= s.epoch || epoch >= static_cast<int>(s.hello.epochs)) {
    throw WireError(ErrorCode::kUnexpected, "epoch " + std::to_string(epoch) + " after epoch " + std::to_string(s.epoch) +
                                                " of " + std::to_string(s.hello.epochs));
  }
  s.epoch = epoch;
  s.staleness = static_cast<int>(info.staleness);
  s.max_staleness = std::max(s.max_staleness, s.staleness);
  s.eval_replies.clear();
  s.lr = optim::learningRate(config_.optimizer, epoch, static_cast<int>(s.hello.epochs));
  s.optimizer->setLearningRate(s.lr);
  s.epoch_open = true;
  if (s.resume_stats) {
    s.train = *s.resume_stats;
    s.resume_stats.reset();
  }
  char label[96];
  std::snprintf(label, sizeof label, "edge %s epoch %d/%u", s.hello.edge_name.c_str(), epoch + 1, s.hello.epochs);
  s.progress = std::make_unique<telemetry::Progress>(label, std::max<std::int64_t>(1, info.steps),
                                                     telemetry::Progress::stderrIsInteractive());
  s.epoch_start = Clock::now() - std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(std::exchange(s.resume_seconds, 0.0)));
}

void CloudTrainer::onEpochEnd(Session& s, Message& message) {
  if (!s.epoch_open && static_cast<int>(message.header.epoch) == s.epoch && s.epoch_ack) {
    resendCached(s, &*s.epoch_ack, "end of epoch", message.header.epoch);
    return;
  }
  if (!s.epoch_open || static_cast<int>(message.header.epoch) != s.epoch) {
    throw WireError(ErrorCode::kUnexpected, "EpochEnd for epoch " + std::to_string(message.header.epoch) +
                                                " which is not in progress");
  }
  s.epoch_open = false;
  if (s.progress) s.progress->finish();
  s.progress.reset();
  s.train_seconds = std::chrono::duration<double>(Clock::now() - s.epoch_start).count();
  Message ack(MessageType::kEpochAck, transport::EpochInfo{static_cast<std::uint32_t>(s.staleness), s.train.steps,
                                                           s.train.loss(), s.train.accuracy()});
  ack.header.epoch = message.header.epoch;
  ack.header.session = s.id;
  s.epoch_ack = transport::copyMessage(ack);
  reply(&s, s.peer, std::move(ack));
}

void CloudTrainer::endSession(const std::string& peer, bool completed, const std::string& reason) {
  auto it = sessions_.find(peer);
  if (it == sessions_.end()) return;
  Session& s = *it->second;
  closeEpoch(s);
  s.summary.interrupted = !completed;
  s.summary.wall_seconds = std::chrono::duration<double>(Clock::now() - s.start).count();
  s.summary.bytes_uplink = s.bytes_up;
  s.summary.bytes_downlink = s.bytes_down;
  try {
    const auto path = telemetry::writeSummary(config_.run.output_dir, s.summary);
    log_->info("session {:016x} ended ({}): summary written to {}", s.id, reason, path);
  } catch (const std::exception& e) {
    log_->error("session {:016x} ended ({}) but its summary could not be written: {}", s.id, reason, e.what());
  }
  (completed ? completed_ : failed_)++;
  last_completed_ = completed;
  last_summary_ = s.summary;
  last_model_ = std::move(s.model);
  sessions_.erase(it);
}

void CloudTrainer::onLinkEvent(const transport::LinkEvent& event) {
  auto it = sessions_.find(event.peer);
  Session* s = it == sessions_.end() ? nullptr : it->second.get();
  if (event.kind == transport::LinkEvent::Kind::kTrouble) {
    if (s) sendResync(*s);  // messages from this edge were lost: tell it where we stand
    return;
  }
  {
    const std::string& peer = event.peer;
    if (s) {
      log_->error("edge '{}' went silent in epoch {} (no message for {} s); ending its session", s->hello.edge_name,
                  s->epoch + 1, config_.link.peer_timeout_s);
      if (s->metrics) s->metrics->errors_timeout->Increment();
      endSession(peer, false, "edge went silent");
    }
  }
}

void CloudTrainer::handle(Message& message) {
  const std::string peer = message.peer;
  auto it = sessions_.find(peer);
  Session* s = it == sessions_.end() ? nullptr : it->second.get();
  const auto type = message.header.type;
  try {
    if (type == MessageType::kError) {
      const auto& e = std::get<transport::ErrorInfo>(message.body);
      log_->warn("edge reported an error: {}: {}", transport::errorCodeName(e.code), e.message);
      return;
    }
    if (type == MessageType::kHello) {
      onHello(message);
      return;
    }
    if (!s) throw WireError(ErrorCode::kNoSession, std::string(transport::messageTypeName(type)) + " without a session; send Hello first");
    if (message.header.session != s->id) {
      throw WireError(ErrorCode::kNoSession, "session " + std::to_string(message.header.session) +
                                                 " is not this edge's session");
    }
    s->bytes_up += message.wire_bytes;
    s->epoch_bytes_up += message.wire_bytes;
    switch (type) {
      case MessageType::kActivations: onActivations(*s, message, true); break;
      case MessageType::kEvalActivations: onActivations(*s, message, false); break;
      case MessageType::kEpochBegin: onEpochBegin(*s, message); break;
      case MessageType::kEpochEnd: onEpochEnd(*s, message); break;
      case MessageType::kProbe: onProbe(*s, message); break;
      case MessageType::kMigrate: onMigrate(*s, message); break;
      case MessageType::kCheckpoint: onCheckpoint(*s, message); break;
      case MessageType::kResync: onResync(*s, message); break;
      case MessageType::kShutdown: {
        const auto info = std::get<transport::ShutdownInfo>(message.body);
        reply(s, peer, Message(MessageType::kShutdownAck, std::monostate{}));
        endSession(peer, info.completed, info.reason);
        break;
      }
      default:
        throw WireError(ErrorCode::kUnexpected,
                        std::string(transport::messageTypeName(type)) + " is not something an edge sends");
    }
  } catch (const WireError& e) {
    log_->warn("rejected {} from {}: {}: {}", transport::messageTypeName(type),
               s ? "edge '" + s->hello.edge_name + "'" : std::string("an unknown peer"), transport::errorCodeName(e.code()),
               e.what());
    replyError(peer, e.code(), e.what(), s ? s->id : 0);
  } catch (const std::exception& e) {
    log_->error("failed to handle {}: {}", transport::messageTypeName(type), e.what());
    replyError(peer, ErrorCode::kInternal, e.what(), s ? s->id : 0);
  }
}

CloudOutcome CloudTrainer::run(const std::atomic<bool>& stop) {
  const auto start = Clock::now();
  log_->info("serving model {} (split {}) at {}", config_.model.name,
             config_.split.automatic ? std::string("auto") : std::to_string(config_.split.point), transport_->endpoint());
  bool seen_session = false;
  while (true) {
    if (stop) {
      for (const auto& [peer, s] : sessions_) replyError(peer, ErrorCode::kInternal, "the cloud is shutting down", s->id);
      while (!sessions_.empty()) endSession(sessions_.begin()->first, false, "cloud interrupted");
      transport_->close(std::chrono::milliseconds(1000));
      return CloudOutcome::kInterrupted;
    }
    auto incoming = transport_->receive(std::chrono::milliseconds(100));
    if (incoming) {
      if (auto* event = transport::asEvent(*incoming)) {
        onLinkEvent(*event);
      } else {
        handle(*transport::asMessage(*incoming));
      }
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
  return last_completed_ ? CloudOutcome::kCompleted : CloudOutcome::kFailed;
}

}  // namespace tandem::pipeline

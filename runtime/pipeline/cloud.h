#pragma once
// The cloud side of split training: serves one or more edges, each in its own session
// with its own copy of stages [p, n) and their optimizer, or, in a shared fleet
// (fleet.mode: shared), with one copy of every stage for all of them. For every training
// batch it runs its stages and the loss, steps its optimizer and sends back the activation
// gradient; in a fleet, batches of several edges that wait at once make one step, and the
// edges' stages are averaged in rounds (runtime/pipeline/fleet.h). Messages are handled
// one at a time, in arrival order; the transport's socket thread receives the next batch
// meanwhile.

#include <atomic>
#include <map>
#include <memory>
#include <string>

#include "runtime/checkpoint/checkpoint.h"
#include "runtime/common/log_limiter.h"
#include "runtime/config/config.h"
#include "runtime/data/dataset.h"
#include "runtime/models/stage_model.h"
#include "runtime/optim/stage_optimizers.h"
#include "runtime/pipeline/setup.h"
#include "runtime/telemetry/metrics.h"
#include "runtime/telemetry/summary.h"
#include "runtime/transport/tensor_frames.h"
#include "runtime/transport/transport.h"

namespace spdlog {
class logger;
}

namespace tandem::pipeline {

struct CloudBatch;   // runtime/pipeline/cloud_step.h
struct StepOutcome;  // runtime/pipeline/cloud_step.h

struct CloudOptions {
  // Keep serving new edges after the last session ended (otherwise return then).
  bool keep_serving = false;
};

enum class CloudOutcome {
  kCompleted,    // the last session's run completed (orderly shutdown)
  kEdgeStopped,  // the last session's edge stopped its run early (interrupted), orderly
  kDiverged,     // the last session's training diverged and the edge's guard stopped it
  kFailed,       // the last session's edge went silent
  kInterrupted,  // `stop` was set
  kNoEdge,       // link.accept_timeout_s passed without an edge
};

class CloudTrainer {
 public:
  // `metrics` (optional) must outlive the trainer.
  CloudTrainer(config::Config config, std::unique_ptr<transport::Transport> transport, CloudOptions options = {},
               telemetry::Metrics* metrics = nullptr);
  ~CloudTrainer();

  CloudOutcome run(const std::atomic<bool>& stop);

  // Where the cloud listens (the bound port when link.endpoint used tcp://host:*).
  std::string endpoint() const { return transport_->endpoint(); }

  // The stages of the session that ended last (tests compare parameters with it); in a
  // shared fleet, the fleet's model.
  models::StageModel* lastModel();
  // A shared fleet's averaging rounds so far (0 otherwise).
  std::uint64_t fleetRounds() const;
  const telemetry::RunSummary& lastSummary() const { return last_summary_; }
  std::uint64_t sessionsRefused() const { return refused_; }

 private:
  struct Session;
  struct Fleet;
  enum class SessionEnd { kCompleted, kStopped, kDiverged, kFailed };

  void handle(transport::Message& message);
  // The transport's and sessions' limit counts into the metrics.
  void countTransportLimits();
  void onLinkEvent(const transport::LinkEvent& event);
  void onHello(transport::Message& message);
  // Admits one more session of `origin` under limits.*, ending the oldest sessions that
  // have not begun an epoch when that makes room; false (last_refusal_ says why) when not.
  bool makeRoom(const std::string& origin, const std::string& who);
  void onActivations(Session& s, transport::Message& message, bool train);
  // The reply to a training batch, after its step (alone or in a fleet's joint step).
  void replyTraining(Session& s, transport::Message& message, const StepOutcome& outcome, const CloudBatch& batch);
  // A fleet with one copy of the stages for all sessions (fleet.mode: shared).
  bool shared() const;
  // The stages that serve session `s` (its own, or a shared fleet's).
  models::StageModel& modelOf(Session& s);
  optim::StageOptimizers& optimizerOf(Session& s);
  // Shared fleet: a training batch waits for others to share its step; the waiting ones
  // are stepped together when the step is full, every training session has one waiting,
  // the gather time is up, or a message must be handled after them.
  void queueBatch(Session& s, transport::Message& message);
  bool batchesComplete() const;
  void stepBatches();
  // Shared fleet: an edge's contribution to the averaging round; the round closes when
  // every training edge has contributed or fleet.round_timeout_s passed.
  void onAverage(Session& s, transport::Message& message);
  void closeRoundIfDue(bool timed_out_only);
  void closeRound();
  void onEpochBegin(Session& s, transport::Message& message);
  void onEpochEnd(Session& s, transport::Message& message);
  void onProbe(Session& s, transport::Message& message);
  void onMigrate(Session& s, transport::Message& message);
  void onCheckpoint(Session& s, transport::Message& message);
  // Divergence guard: an in-memory snapshot at the step the session has reached, and the
  // edge's request to go back to one.
  void takeSnapshot(Session& s);
  void onRollback(Session& s, transport::Message& message);
  void closeEpoch(Session& s);
  void endSession(const std::string& peer, SessionEnd end, const std::string& reason);
  void advanceByteMetrics(telemetry::TrainerMetrics& m, const Session& s);
  void replyError(const std::string& peer, transport::ErrorCode code, const std::string& text, std::uint64_t session);

  config::Config config_;
  CloudOptions options_;
  telemetry::Metrics* metrics_;
  std::shared_ptr<spdlog::logger> log_;
  log::LogLimiter limited_;  // lines a peer can cause
  std::unique_ptr<transport::Transport> transport_;
  std::map<std::string, std::unique_ptr<Session>> sessions_;  // by peer routing id
  std::unique_ptr<Fleet> fleet_;                              // fleet.mode: shared
  std::unique_ptr<models::StageModel> last_model_;
  telemetry::RunSummary last_summary_;
  std::uint64_t completed_ = 0;  // sessions that ended in order (completed or stopped early)
  std::uint64_t failed_ = 0;
  std::uint64_t refused_ = 0;
  std::string cloud_profile_;  // JSON of this side's stage times, sent in Welcome
  std::string fingerprint_;    // of the model, for the handshake (no copy built per Hello)
  int num_stages_ = 0;
  data::DatasetInfo data_info_;       // normalises the pixels edges send at p = 0
  double session_model_bytes_ = 0.0;  // one session's stages and optimizer state (estimate)
  std::string last_refusal_;
  std::uint64_t counted_rate_limited_ = 0;
  std::uint64_t counted_overflowed_ = 0;
  std::uint64_t counted_evictions_ = 0;
  std::uint64_t ended_evictions_ = 0;
  SessionEnd last_end_ = SessionEnd::kFailed;
};

}  // namespace tandem::pipeline

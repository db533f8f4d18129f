#pragma once
// The edge's side of context-aware partitioning: link telemetry, the cost model and the
// planner, and the decision log (<run.output_dir>/decisions.jsonl). The edge pipeline
// feeds it timestamps, asks it for decisions, and carries them out (migration).
//
// Threading: the edge compute thread only.

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "runtime/config/config.h"
#include "runtime/scheduler/cost_model.h"
#include "runtime/scheduler/planner.h"
#include "runtime/telemetry/link_estimator.h"

namespace tandem::pipeline {

class EdgeScheduler {
 public:
  // `link` (owned by the edge pipeline, which feeds it) must outlive this object.
  EdgeScheduler(const config::Config& config, scheduler::ModelProfile profile, const telemetry::LinkEstimator& link);
  ~EdgeScheduler();

  // The current estimate; bandwidths the estimator has not measured yet are taken as
  // `fallback_bps` (probes normally measure them at start).
  scheduler::LinkEstimate estimate() const;

  // Plans the rest of an epoch (`iterations` batches) from the current pair.
  scheduler::Decision plan(int current_split, const std::string& current_codec, int staleness,
                           std::int64_t iterations) const;
  // The cost model's prediction for keeping `split`/`codec` for `iterations` batches.
  double predict(int split, const std::string& codec, int staleness, std::int64_t iterations) const;

  // `decision` governs from now (trigger: start, epoch, bandwidth, scheduled, advice);
  // closes and logs the previous one. `epoch` is 0-based; decisions.jsonl shows it 1-based.
  void begin(scheduler::Decision decision, const std::string& trigger, int epoch, std::int64_t step, bool applied,
             double predicted_current_seconds);
  // Closes the decision in force at global training step `step`, logging its measured
  // time over the batches since it began.
  void finish(std::int64_t step);

  // True when the bandwidth estimate moved by more than scheduler.replan_threshold since
  // the decision in force was made.
  bool bandwidthMoved() const;

  const scheduler::CostModel& costModel() const { return *cost_model_; }
  std::size_t decisionsLogged() const { return logged_; }

 private:
  struct Open {
    scheduler::Decision decision;
    std::string trigger;
    int epoch = 0;
    std::int64_t step = 0;
    bool applied = false;
    double predicted_current_seconds = 0.0;
    std::chrono::steady_clock::time_point started;
    scheduler::LinkEstimate link_at_decision;
  };

  const config::Config& config_;
  std::unique_ptr<scheduler::CostModel> cost_model_;
  std::unique_ptr<scheduler::Planner> planner_;
  const telemetry::LinkEstimator& link_;
  std::optional<Open> open_;
  std::string path_;
  std::size_t logged_ = 0;
};

}  // namespace tandem::pipeline

#pragma once
// The edge's side of context-aware partitioning: link telemetry, the cost model and the
// planner, and the decision log (<run.output_dir>/decisions.jsonl). The edge pipeline
// feeds it timestamps, asks it for decisions, and carries them out (migration).
//
// What it adds to the planner:
// - the link's recent states (linkStates(): time-weighted quantiles of the estimator's
//   history), so plans are robust to a link that fluctuates;
// - a bandwidth trigger that only fires when a re-plan would change the pair
//   (bandwidthMoved(step)), so a link that jitters between states the plan already covers
//   does not drain the pipeline again and again;
// - a check of the profile against what was measured: when the compute measured in a
//   decision's window (noteCompute(); without it, the window's time against the
//   prediction re-made over the link seen meanwhile) disagrees with the profile by more than
//   kProfileDisagreement for kProfileStreak decisions in a row, the stage times are
//   rescaled to match and the log says so ({"event": "profile_rescaled", ...});
// - pairs that diverged in this run (markUnstable()), infeasible from then on.
//
// Threading: the edge compute thread only.

#include <chrono>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/config/config.h"
#include "runtime/scheduler/cost_model.h"
#include "runtime/scheduler/planner.h"
#include "runtime/telemetry/link_estimator.h"

namespace tandem::pipeline {

// The dataset's native bytes per input element on the wire at split 0 with codec none:
// 1 for the uint8 image datasets (fashion_mnist, cifar10), 4 (float32) otherwise.
std::int64_t inputElementBytes(const std::string& dataset);

// The link states the planner weighs (PlannerOptions, PlanInput::link_states): the
// time-weighted quantiles kStateQuantiles of the uplink and downlink histories, paired
// by rank (both directions fade together on the links we model), with equal weights, and
// `rtt` for all. Empty while the uplink history has fewer than kMinHistorySamples
// samples: the planner then uses the median estimate alone. A downlink with too short a
// history (a pair whose downlink carries only small replies measures it only in the
// start-up probe) follows the uplink: each state's uplink × `downlink_per_uplink`
// (LinkEstimator::downlinkPerUplink), or `fallback`'s downlink in every state when that is
// not positive. After a regime change (the
// last kMinHistorySamples samples all outside the 5–95% range of the earlier ones: a step
// to a state never seen) only the history since the change counts, so a lasting drop is
// followed instead of being averaged away.
std::vector<scheduler::LinkState> linkStates(const telemetry::RateHistory& uplink,
                                             const telemetry::RateHistory& downlink,
                                             const scheduler::LinkEstimate& fallback, double downlink_per_uplink = 0.0);

// The order in which the link went through `states` (linkStates() of the same uplink
// history): each sample of the history linkStates() used goes to the state nearest its
// rate (on a log scale), for the time it stands for; consecutive samples of one state
// merge. PlanInput::link_segments, for pricing the work-ahead of the pipeline. Empty
// when `states` is.
std::vector<scheduler::LinkSegment> linkSegments(const telemetry::RateHistory& uplink,
                                                 const std::vector<scheduler::LinkState>& states);

class EdgeScheduler {
 public:
  static constexpr std::size_t kMinHistorySamples = 8;
  static constexpr double kStateQuantiles[] = {0.1, 0.3, 0.5, 0.7, 0.9};
  // Measured / predicted outside [1/k, k] counts as a disagreement...
  static constexpr double kProfileDisagreement = 1.5;
  // ...and this many in a row (decisions of at least kProfileCheckIterations) rescale.
  static constexpr int kProfileStreak = 2;
  static constexpr std::int64_t kProfileCheckIterations = 16;

  using ClockFn = std::function<double()>;  // seconds, the clock the estimator's history uses

  // `link` (owned by the edge pipeline, which feeds it) must outlive this object. `clock`
  // defaults to transport::steadySeconds (the edge clock of the link estimator); a replay
  // passes its simulated time.
  EdgeScheduler(const config::Config& config, scheduler::ModelProfile profile, const telemetry::LinkEstimator& link,
                ClockFn clock = {});
  ~EdgeScheduler();

  // The current estimate; bandwidths the estimator has not measured yet are 0 (probes
  // normally measure them at start). While the downlink history is shorter than
  // kMinHistorySamples, the downlink is the uplink × LinkEstimator::downlinkPerUplink.
  scheduler::LinkEstimate estimate() const;
  // linkStates() of the estimator's history now.
  std::vector<scheduler::LinkState> states() const;

  // Plans the rest of an epoch (`iterations` batches) from the current pair.
  scheduler::Decision plan(int current_split, const std::string& current_codec, int staleness,
                           std::int64_t iterations) const;
  // The cost model's prediction for keeping `split`/`codec` for `iterations` batches: the
  // expected time over the link states seen, working ahead included (the median estimate
  // while there are none).
  double predict(int split, const std::string& codec, int staleness, std::int64_t iterations) const;

  // `decision` governs from now (trigger: start, epoch, bandwidth, scheduled, advice);
  // closes and logs the previous one. `epoch` is 0-based; decisions.jsonl shows it 1-based.
  void begin(scheduler::Decision decision, const std::string& trigger, int epoch, std::int64_t step, bool applied,
             double predicted_current_seconds);
  // Closes the decision in force at global training step `step`, logging its measured
  // time over the batches since it began, and checks it against the profile (see above).
  void finish(std::int64_t step);

  // True when the bandwidth estimate moved by more than scheduler.replan_threshold since
  // the last check (at first: since the decision in force was made), or is still away from
  // the decision's (or the link states' mean moved that much) and kMinHistorySamples
  // samples came since the last check, and a plan for the
  // rest of the decision's iterations would change the pair. `step` is the training step
  // now, on the counter begin() was given: the rest is the decision's iterations less
  // those done since it began. (It used to be estimated from the time elapsed at the
  // predicted rate; after a drop to a slower link that took the slow iterations for many
  // and planned for almost none, so a migration that paid never looked worth it.) A move
  // the plan absorbs is counted in the decision's log line ("bandwidth_checks",
  // "bandwidth_kept") and not reported.
  bool bandwidthMoved(std::int64_t step) const;

  // A (split, codec) diverged at `staleness` in this run: from now on the planner treats
  // it at that staleness or larger as infeasible ("unstable in this run"). Logged in
  // decisions.jsonl as {"event": "unstable", ...}. Throws tandem::Error for a split
  // outside the model or an unknown codec.
  void markUnstable(int split, const std::string& codec, int staleness);
  const std::vector<scheduler::UnstablePair>& unstable() const { return unstable_; }

  // The K the edge runs with now (below the planned K during the staleness warm-up or
  // after a rollback halved it). A decision whose window ran below its planned K is not
  // checked against the profile: the slower steps are the warm-up's, not the profile's.
  void noteStaleness(int staleness);
  // Compute measured in the current decision's window: the edge's forward, encoding,
  // replay and backward, and the cloud's step time its replies report. With it, the
  // profile check compares compute with the profile's compute (immune to time spent
  // waiting on the link); without it, step times with the prediction over the link seen.
  void noteCompute(double edge_seconds, double cloud_seconds);

  const scheduler::CostModel& costModel() const { return *cost_model_; }
  std::size_t decisionsLogged() const { return logged_; }
  // Product of the rescalings applied to the stage times so far (1: the profile as measured).
  double profileScale() const { return profile_scale_; }

 private:
  struct Open {
    scheduler::Decision decision;
    std::string trigger;
    int epoch = 0;
    std::int64_t step = 0;
    bool applied = false;
    double predicted_current_seconds = 0.0;
    double started = 0.0;  // clock_()
    scheduler::LinkEstimate link_at_decision;
    double states_uplink_at_decision = 0.0;  // mean uplink over linkStates() at the decision
    int bandwidth_checks = 0;
    int bandwidth_kept = 0;
    int min_staleness = std::numeric_limits<int>::max();  // the lowest K noted in this window
    std::int64_t last_check_iterations = 0;               // the rest the last bandwidth check planned for
    std::string last_check_why;                           // and what that plan said
    double edge_compute_seconds = 0.0;                    // noteCompute() in this window
    double cloud_compute_seconds = 0.0;
  };
  void rebuild(scheduler::ModelProfile profile);
  double expectedSeconds(const scheduler::CostModel& model, int split, const std::string& codec, int staleness,
                         std::int64_t iterations, const std::vector<scheduler::LinkState>& states,
                         const std::vector<scheduler::LinkSegment>& segments,
                         const scheduler::LinkEstimate& link) const;
  void append(const std::string& line);

  const config::Config& config_;
  scheduler::CostModelOptions cost_options_;
  std::unique_ptr<scheduler::CostModel> cost_model_;
  std::unique_ptr<scheduler::Planner> planner_;
  const telemetry::LinkEstimator& link_;
  ClockFn clock_;
  mutable std::optional<Open> open_;
  mutable std::optional<scheduler::LinkEstimate> last_checked_;
  mutable std::size_t checked_samples_ = 0;  // link_.uplinkSamples() at the last check
  std::vector<scheduler::UnstablePair> unstable_;
  std::string path_;
  std::size_t logged_ = 0;
  int disagreements_ = 0;
  double profile_scale_ = 1.0;
};

}  // namespace tandem::pipeline

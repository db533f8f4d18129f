#pragma once
// The planner: ranks every (split point, uplink codec) pair by predicted time for the rest
// of the epoch plus the one-off migration from the current split, drops those whose edge
// memory exceeds the budget or that diverged in this run (PlanInput::unstable), and keeps
// the current pair unless another is better by more than the hysteresis margin (so a
// noisy bandwidth estimate near a decision boundary does not make it flap).
//
// Robust to a fluctuating link: when the input carries the link states seen recently
// (PlanInput::link_states, time-weighted, e.g. quantiles of the estimator's history), a
// pair is ranked by its expected time across them, not at the latest median:
//   expected = 1 / Σ_s w_s / epoch_s        (the link spends a fraction w_s of the time in
//                                            state s, where the pair runs N iterations in
//                                            epoch_s: throughputs average over time)
//   score    = 1 / Σ ŵ_s / epoch_s,  ŵ_s = (1 − λ) w_s + λ [s is the slowest state]
// (λ = low_state_weight: the score expects the link to spend λ more of its time in the
// slowest state than it did), so a pair that is good in every state beats one that is
// best only in the state the link happens to be in now, and a link flipping between
// states it has already shown does not change the ranking. The caution is weighted in
// time, not added in seconds: in an outage every pair nearly stalls, and adding
// λ · epoch_low ranked pairs by the bytes they would move at the outage's rate (auto then
// left the best pair for raw inputs on links with short outages).
//
// Working ahead: with K > 0 the edge may run up to K batches ahead of the link, so when
// the link visits a slow state only briefly (PlanInput::link_segments: the order and the
// dwell of the states it went through) a pair that is link-bound there and compute-bound
// in the fast state loses less than the per-state expectation says: the backlog queued in
// the slow state drains in the fast one while the edge keeps computing. workAheadGain()
// prices this with a fluid model of the recorded sequence (compute rate c, link rate u_s
// per state, a queue of at most K batches); its iterations per second are added to both
// rates above. Without segments (or at K = 0) the gain is 0. A link that stays in one
// state for a long time gains only K batches per visit, a link that flips quickly acts
// like its time-average rate.
//
// Pure logic; the edge pipeline calls it and carries out the decision.

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/scheduler/cost_model.h"

namespace tandem::scheduler {

struct PlannerOptions {
  std::vector<std::string> codecs{"none"};  // uplink codecs the planner may choose from
  std::vector<int> splits;                  // allowed split points; empty: 0..n
  double memory_budget_bytes = 0.0;         // 0: no budget
  double hysteresis = 0.10;                 // required relative improvement to switch
  bool error_feedback = false;
  // Weight of the slowest link state in the score (see the header comment); 0 ranks by
  // the expectation alone. Only used when PlanInput::link_states is not empty.
  double low_state_weight = 0.2;
};

// A state of the link and the fraction of the time it holds (weights need not sum to 1).
struct LinkState {
  LinkEstimate link;
  double weight = 1.0;
};

// A stretch of the link's recent history spent in one of PlanInput::link_states, in time
// order (PlanInput::link_segments).
struct LinkSegment {
  std::size_t state = 0;  // index into PlanInput::link_states
  double seconds = 0.0;
};

// Iterations per second that working ahead adds to the per-state expectation (see the
// header comment): a fluid model over `segments` (played twice, the second pass counted,
// so the queue starts where a cycle leaves it) of a pipeline that computes at most
// `compute_rate` iterations per second, a link that carries link_rates[state] (infinite:
// no limit) and a queue of at most `buffer` iterations between them: (iterations carried
// with the queue − Σ min(compute, link) × seconds) / total seconds. 0 without a buffer,
// with fewer than two segments, or with a non-positive compute rate. Throws tandem::Error
// on a segment whose state is not an index into `link_rates`.
double workAheadGain(double compute_rate, const std::vector<double>& link_rates,
                     const std::vector<LinkSegment>& segments, double buffer);

// A (split, codec) that diverged in this run at staleness `staleness`: infeasible from then
// on at that staleness or larger. `marks` counts how often it was reported.
struct UnstablePair {
  int split = 0;
  std::string codec;
  int staleness = 0;
  int marks = 1;
};

struct Candidate {
  int split = 0;
  std::string codec;
  IterationTimes times;
  double epoch_seconds = 0.0;           // the ranking score for the remaining iterations, without migration
  double median_epoch_seconds = 0.0;    // at PlanInput::link (the latest median estimate)
  double expected_epoch_seconds = 0.0;  // expectation over PlanInput::link_states (= median without)
  double low_epoch_seconds = 0.0;       // at the slowest link state (= median without)
  double work_ahead_rate = 0.0;         // iterations per second from workAheadGain() in both
  double seed_epoch_seconds = 0.0;   // the same by the seed formula (CostModel::seedEpochSeconds)
  double migration_seconds = 0.0;    // from the current split
  double total_seconds = 0.0;        // epoch + migration
  std::int64_t migration_bytes = 0;  // stage state moved from the current split
  std::int64_t uplink_bytes = 0;     // per iteration (CostModel::uplinkBytes)
  std::int64_t edge_memory_bytes = 0;
  bool feasible = true;
  // Why not feasible: "over the memory budget", "unstable in this run" (or both, "; ").
  std::string excluded;
  bool over_budget = false;
  int unstable_marks = 0;  // UnstablePair::marks covering this pair at this staleness
};

struct PlanInput {
  LinkEstimate link;
  int current_split = 0;
  std::string current_codec = "none";
  int staleness = 0;
  std::int64_t iterations = 0;  // remaining in the epoch being planned
  // The link states seen recently (empty: plan at `link` alone). `link` is still used for
  // the migration, which happens now.
  std::vector<LinkState> link_states;
  // The order and dwell of those states in the history (empty: no working ahead priced).
  std::vector<LinkSegment> link_segments;
  std::vector<UnstablePair> unstable;
};

// One pair's times over link states, as the planner ranks it (the edge scheduler's
// predictions and profile check use the same): `expected` = N / (Σ w_s N / epoch_s + gain),
// `cautious` the same with λ = low_state_weight more weight on the slowest state (least
// uplink, then downlink), `low` the time at that state, gain = workAheadGain() with a
// queue of `staleness` batches. Without states (or with zero total weight) all three are
// the time at `link`. A state where the pair takes no time at all is skipped; if that
// leaves no rate, the times are 0.
struct StateExpectation {
  double median_seconds = 0.0;  // at `link`
  double expected_seconds = 0.0;
  double cautious_seconds = 0.0;
  double low_seconds = 0.0;
  double work_ahead_rate = 0.0;
};
StateExpectation expectOverStates(const CostModel& model, int split, const std::string& codec, std::int64_t iterations,
                                  int staleness, const LinkEstimate& link, const std::vector<LinkState>& states,
                                  const std::vector<LinkSegment>& segments, double low_state_weight);

struct Decision {
  PlanInput input;
  // Every candidate, best first (infeasible last). Feasible ones by total_seconds; ties
  // (equal totals) by fewer migration bytes, then fewer uplink bytes per iteration, then
  // smaller split, then the order of PlannerOptions::codecs. Infeasible ones: those that
  // fit the memory budget (excluded only as unstable) first, by fewest unstable marks then
  // total_seconds; then those over the budget by edge memory, smallest first.
  std::vector<Candidate> candidates;
  int split = 0;
  std::string codec;
  // Of the chosen pair, including its migration: its expected time (not the score).
  double predicted_epoch_seconds = 0.0;
  bool changed = false;
  // Why this pair: "best"; "kept: within hysteresis" (the current pair, which the best
  // beats by less than the margin); "only feasible"; "best; current pair over the memory
  // budget"; "best; current pair unstable in this run"; "least excluded: every candidate
  // unstable in this run" (the fallback when every pair that fits the budget diverged).
  std::string reason;
  // The numbers behind a switch or a keep (current pair feasible and not the best):
  // gain = current score − best's score without migration, to be weighed against the
  // best's migration plus margin = hysteresis × current score. 0 otherwise.
  double gain_seconds = 0.0;
  double margin_seconds = 0.0;
  std::string why;  // one human-readable sentence with these numbers
};

class Planner {
 public:
  // Keeps a reference to `model`, which must outlive the planner. Throws tandem::Error on
  // options it cannot honour: no codecs, a split outside 0..n, hysteresis outside [0, 1).
  Planner(const CostModel& model, PlannerOptions options);

  // Throws tandem::Error when no candidate fits the memory budget (the message names the
  // smallest requirement and the budget). When every candidate that fits is unstable, it
  // does not throw: it falls back to the least excluded one (fewest marks, then fastest).
  //
  // Hysteresis: when the current pair is a feasible candidate and the best one's total
  // is not below current.total × (1 − hysteresis), the current pair is kept. The current
  // pair pays no migration, so the margin comes on top of the migration cost the others
  // already carry: a re-partition is chosen only when its gain over the remaining
  // iterations exceeds its migration plus a margin relative to the remaining time.
  Decision plan(const PlanInput& input) const;

  // One JSON object (single line) describing `decision` with its top `top` candidates
  // (all when top <= 0; the chosen one is always included, and each carries its "rank"):
  //   {"input": {uplink_mbps, downlink_mbps, rtt_ms, current_split, current_codec,
  //              staleness, iterations},
  //    "link_states": [{uplink_mbps, downlink_mbps, weight}, ...], "link_segments": count,
  //    "link_segment_s": mean seconds per segment (0 without),
  //    "unstable": [{split, codec, staleness, marks}, ...],
  //    "candidates": [{rank, split, codec, t_edge, t_up, t_cloud, t_down, latency, epoch_s,
  //                    median_epoch_s, expected_epoch_s, low_epoch_s, work_ahead_it_s, seed_epoch_s,
  //                    migration_s, migration_mb, uplink_mb, total_s, edge_memory_mb,
  //                    feasible, excluded}, ...],
  //    "num_candidates", "num_feasible", "choice": {split, codec}, "predicted_epoch_s",
  //    "changed", "reason", "why", "gain_s", "margin_s"}
  // Times in seconds, sizes in MiB (2^20 bytes, as scheduler.memory_budget_mb).
  static std::string toJson(const Decision& decision, int top = 5);

 private:
  const CostModel& model_;
  PlannerOptions options_;
};

}  // namespace tandem::scheduler

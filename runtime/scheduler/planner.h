#pragma once
// The planner: ranks every (split point, uplink codec) pair by predicted time for the rest
// of the epoch plus the one-off migration from the current split, drops those whose edge
// memory exceeds the budget, and keeps the current pair unless another is better by more
// than the hysteresis margin (so a noisy bandwidth estimate near a decision boundary does
// not make it flap).
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
};

struct Candidate {
  int split = 0;
  std::string codec;
  IterationTimes times;
  double epoch_seconds = 0.0;        // for the remaining iterations, without migration
  double seed_epoch_seconds = 0.0;   // the same by the seed formula (CostModel::seedEpochSeconds)
  double migration_seconds = 0.0;    // from the current split
  double total_seconds = 0.0;        // epoch + migration
  std::int64_t migration_bytes = 0;  // stage state moved from the current split
  std::int64_t uplink_bytes = 0;     // per iteration (CostModel::uplinkBytes)
  std::int64_t edge_memory_bytes = 0;
  bool feasible = true;
};

struct PlanInput {
  LinkEstimate link;
  int current_split = 0;
  std::string current_codec = "none";
  int staleness = 0;
  std::int64_t iterations = 0;  // remaining in the epoch being planned
};

struct Decision {
  PlanInput input;
  // Every candidate, best first (infeasible last). Feasible ones by total_seconds; ties
  // (equal totals) by fewer migration bytes, then fewer uplink bytes per iteration, then
  // smaller split, then the order of PlannerOptions::codecs. Infeasible ones by edge
  // memory, smallest first, then the same.
  std::vector<Candidate> candidates;
  int split = 0;
  std::string codec;
  double predicted_epoch_seconds = 0.0;  // of the chosen pair, including its migration
  bool changed = false;
  // Why this pair: "best"; "kept: within hysteresis" (the current pair, which the best
  // beats by less than the margin); "only feasible"; "best; current pair over the memory
  // budget".
  std::string reason;
};

class Planner {
 public:
  // Keeps a reference to `model`, which must outlive the planner. Throws tandem::Error on
  // options it cannot honour: no codecs, a split outside 0..n, hysteresis outside [0, 1).
  Planner(const CostModel& model, PlannerOptions options);

  // Throws tandem::Error when no candidate fits the memory budget (the message names the
  // smallest requirement and the budget).
  //
  // Hysteresis: when the current pair is a feasible candidate and the best one's total
  // is not below current.total × (1 − hysteresis), the current pair is kept. The current
  // pair pays no migration, so the margin comes on top of the migration cost the others
  // already carry.
  Decision plan(const PlanInput& input) const;

  // One JSON object (single line) describing `decision` with its top `top` candidates
  // (all when top <= 0; the chosen one is always included, and each carries its "rank"):
  //   {"input": {uplink_mbps, downlink_mbps, rtt_ms, current_split, current_codec,
  //              staleness, iterations},
  //    "candidates": [{rank, split, codec, t_edge, t_up, t_cloud, t_down, latency, epoch_s,
  //                    seed_epoch_s, migration_s, migration_mb, uplink_mb, total_s,
  //                    edge_memory_mb, feasible}, ...],
  //    "num_candidates", "num_feasible", "choice": {split, codec}, "predicted_epoch_s",
  //    "changed", "reason"}
  // Times in seconds, sizes in MiB (2^20 bytes, as scheduler.memory_budget_mb).
  static std::string toJson(const Decision& decision, int top = 5);

 private:
  const CostModel& model_;
  PlannerOptions options_;
};

}  // namespace tandem::scheduler

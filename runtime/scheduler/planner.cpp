#include "runtime/scheduler/planner.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

#include "runtime/common/error.h"

namespace tandem::scheduler {

namespace {

constexpr double kMiB = 1024.0 * 1024.0;

std::string mib(double bytes) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(2) << bytes / kMiB << " MiB";
  return out.str();
}

}  // namespace

Planner::Planner(const CostModel& model, PlannerOptions options) : model_(model), options_(std::move(options)) {
  if (options_.codecs.empty()) throw Error("planner: no uplink codecs to choose from");
  for (std::size_t i = 0; i < options_.codecs.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      if (options_.codecs[i] == options_.codecs[j]) {
        throw Error(detail::concat("planner: codec \"", options_.codecs[i], "\" listed twice"));
      }
    }
  }
  if (options_.splits.empty()) {
    for (int p = 0; p <= model_.numStages(); ++p) options_.splits.push_back(p);
  }
  std::sort(options_.splits.begin(), options_.splits.end());
  options_.splits.erase(std::unique(options_.splits.begin(), options_.splits.end()), options_.splits.end());
  for (int p : options_.splits) {
    if (p < 0 || p > model_.numStages()) {
      throw Error(detail::concat("planner: split point ", p, " outside 0..", model_.numStages()));
    }
  }
  if (!(options_.hysteresis >= 0.0 && options_.hysteresis < 1.0)) {
    throw Error(detail::concat("planner: hysteresis ", options_.hysteresis, " outside [0, 1)"));
  }
}

Decision Planner::plan(const PlanInput& input) const {
  Decision decision;
  decision.input = input;

  const auto codecIndex = [&](const std::string& codec) {
    return std::find(options_.codecs.begin(), options_.codecs.end(), codec) - options_.codecs.begin();
  };
  for (int p : options_.splits) {
    for (const auto& codec : options_.codecs) {
      Candidate c;
      c.split = p;
      c.codec = codec;
      c.times = model_.iteration(p, codec, input.link);
      c.epoch_seconds = model_.epochSeconds(c.times, input.iterations, input.staleness);
      c.seed_epoch_seconds = CostModel::seedEpochSeconds(c.times, input.iterations, input.staleness);
      c.migration_seconds = model_.migrationSeconds(input.current_split, p, input.link);
      c.migration_bytes = model_.migrationBytes(input.current_split, p);
      c.uplink_bytes = model_.uplinkBytes(p, codec);
      c.total_seconds = c.epoch_seconds + c.migration_seconds;
      c.edge_memory_bytes = model_.edgeMemoryBytes(p, input.staleness, codec, options_.error_feedback);
      c.feasible =
          options_.memory_budget_bytes <= 0 || static_cast<double>(c.edge_memory_bytes) <= options_.memory_budget_bytes;
      decision.candidates.push_back(std::move(c));
    }
  }

  // A total order, so equal predictions never make the choice depend on the sort.
  const auto tieBreak = [&](const Candidate& a, const Candidate& b) {
    if (a.migration_bytes != b.migration_bytes) return a.migration_bytes < b.migration_bytes;
    if (a.uplink_bytes != b.uplink_bytes) return a.uplink_bytes < b.uplink_bytes;
    if (a.split != b.split) return a.split < b.split;
    return codecIndex(a.codec) < codecIndex(b.codec);
  };
  std::sort(decision.candidates.begin(), decision.candidates.end(), [&](const Candidate& a, const Candidate& b) {
    if (a.feasible != b.feasible) return a.feasible;
    if (a.feasible) {
      if (a.total_seconds != b.total_seconds) return a.total_seconds < b.total_seconds;
    } else if (a.edge_memory_bytes != b.edge_memory_bytes) {
      return a.edge_memory_bytes < b.edge_memory_bytes;
    }
    return tieBreak(a, b);
  });

  const auto feasible = static_cast<std::size_t>(std::count_if(decision.candidates.begin(), decision.candidates.end(),
                                                               [](const Candidate& c) { return c.feasible; }));
  if (feasible == 0) {
    const auto& least = decision.candidates.front();  // infeasible ones sort by memory
    throw Error(detail::concat("planner: no split point fits the edge memory budget: the smallest requirement is ",
                               least.edge_memory_bytes, " bytes (", mib(static_cast<double>(least.edge_memory_bytes)),
                               ", split ", least.split, ", codec ", least.codec, ", staleness ", input.staleness,
                               ") but the budget is ", static_cast<std::int64_t>(options_.memory_budget_bytes),
                               " bytes (", mib(options_.memory_budget_bytes), ", scheduler.memory_budget_mb)"));
  }

  const Candidate& best = decision.candidates.front();
  const auto current = std::find_if(decision.candidates.begin(), decision.candidates.end(), [&](const Candidate& c) {
    return c.split == input.current_split && c.codec == input.current_codec;
  });
  const Candidate* chosen = &best;
  if (feasible == 1) {
    decision.reason = "only feasible";
  } else if (current != decision.candidates.end() && !current->feasible) {
    decision.reason = "best; current pair over the memory budget";
  } else if (current != decision.candidates.end() && &*current != &best &&
             best.total_seconds >= current->total_seconds * (1.0 - options_.hysteresis)) {
    chosen = &*current;
    decision.reason = "kept: within hysteresis";
  } else {
    decision.reason = "best";
  }
  decision.split = chosen->split;
  decision.codec = chosen->codec;
  decision.predicted_epoch_seconds = chosen->total_seconds;
  decision.changed = chosen->split != input.current_split || chosen->codec != input.current_codec;
  return decision;
}

std::string Planner::toJson(const Decision& decision, int top) {
  using nlohmann::json;
  const auto& in = decision.input;
  json candidates = json::array();
  int feasible = 0;
  for (std::size_t i = 0; i < decision.candidates.size(); ++i) {
    const auto& c = decision.candidates[i];
    if (c.feasible) ++feasible;
    const bool is_choice = c.split == decision.split && c.codec == decision.codec;
    if (top > 0 && i >= static_cast<std::size_t>(top) && !is_choice) continue;
    candidates.push_back({{"rank", i},
                          {"split", c.split},
                          {"codec", c.codec},
                          {"t_edge", c.times.edge},
                          {"t_up", c.times.up},
                          {"t_cloud", c.times.cloud},
                          {"t_down", c.times.down},
                          {"latency", c.times.latency},
                          {"epoch_s", c.epoch_seconds},
                          {"seed_epoch_s", c.seed_epoch_seconds},
                          {"migration_s", c.migration_seconds},
                          {"migration_mb", static_cast<double>(c.migration_bytes) / kMiB},
                          {"uplink_mb", static_cast<double>(c.uplink_bytes) / kMiB},
                          {"total_s", c.total_seconds},
                          {"edge_memory_mb", static_cast<double>(c.edge_memory_bytes) / kMiB},
                          {"feasible", c.feasible}});
  }
  const json out = {{"input",
                     {{"uplink_mbps", in.link.uplink_bps / 1e6},
                      {"downlink_mbps", in.link.downlink_bps / 1e6},
                      {"rtt_ms", in.link.rtt_seconds * 1e3},
                      {"current_split", in.current_split},
                      {"current_codec", in.current_codec},
                      {"staleness", in.staleness},
                      {"iterations", in.iterations}}},
                    {"candidates", std::move(candidates)},
                    {"num_candidates", decision.candidates.size()},
                    {"num_feasible", feasible},
                    {"choice", {{"split", decision.split}, {"codec", decision.codec}}},
                    {"predicted_epoch_s", decision.predicted_epoch_seconds},
                    {"changed", decision.changed},
                    {"reason", decision.reason}};
  return out.dump();
}

}  // namespace tandem::scheduler

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
  if (!(options_.low_state_weight >= 0.0 && options_.low_state_weight <= 1.0)) {
    throw Error(detail::concat("planner: low_state_weight ", options_.low_state_weight, " outside [0, 1]"));
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
  // The slowest state: the one with the least uplink (then downlink) bandwidth.
  double weight_sum = 0.0;
  std::size_t low_state = 0;
  for (std::size_t s = 0; s < input.link_states.size(); ++s) {
    const auto& state = input.link_states[s];
    TANDEM_ENFORCE(state.weight >= 0 && std::isfinite(state.weight), "link state weight ", state.weight);
    weight_sum += state.weight;
    const auto& low = input.link_states[low_state].link;
    if (state.link.uplink_bps < low.uplink_bps ||
        (state.link.uplink_bps == low.uplink_bps && state.link.downlink_bps < low.downlink_bps)) {
      low_state = s;
    }
  }
  const bool states = !input.link_states.empty() && weight_sum > 0;
  for (int p : options_.splits) {
    for (const auto& codec : options_.codecs) {
      Candidate c;
      c.split = p;
      c.codec = codec;
      c.times = model_.iteration(p, codec, input.link);
      c.median_epoch_seconds = model_.epochSeconds(c.times, input.iterations, input.staleness);
      c.expected_epoch_seconds = c.low_epoch_seconds = c.median_epoch_seconds;
      c.epoch_seconds = c.median_epoch_seconds;
      if (states && input.iterations > 0) {
        double rate = 0.0;      // Σ w_s / epoch_s, with Σ w_s = 1
        double cautious = 0.0;  // the same with λ more weight on the slowest state
        bool stalled = false;
        const double lambda = options_.low_state_weight;
        for (std::size_t s = 0; s < input.link_states.size(); ++s) {
          const auto& state = input.link_states[s];
          const double t =
              model_.epochSeconds(model_.iteration(p, codec, state.link), input.iterations, input.staleness);
          if (s == low_state) c.low_epoch_seconds = t;
          if (t <= 0) {
            stalled = true;  // no time at all: nothing to move or compute
            continue;
          }
          const double w = state.weight / weight_sum;
          rate += w / t;
          cautious += ((1.0 - lambda) * w + (s == low_state ? lambda : 0.0)) / t;
        }
        const double fallback = stalled ? 0.0 : c.median_epoch_seconds;
        c.expected_epoch_seconds = rate > 0 ? 1.0 / rate : fallback;
        c.epoch_seconds = cautious > 0 ? 1.0 / cautious : fallback;
      }
      c.seed_epoch_seconds = CostModel::seedEpochSeconds(c.times, input.iterations, input.staleness);
      c.migration_seconds = model_.migrationSeconds(input.current_split, p, input.link);
      c.migration_bytes = model_.migrationBytes(input.current_split, p);
      c.uplink_bytes = model_.uplinkBytes(p, codec);
      c.total_seconds = c.epoch_seconds + c.migration_seconds;
      c.edge_memory_bytes = model_.edgeMemoryBytes(p, input.staleness, codec, options_.error_feedback);
      c.over_budget =
          options_.memory_budget_bytes > 0 && static_cast<double>(c.edge_memory_bytes) > options_.memory_budget_bytes;
      for (const auto& u : input.unstable) {
        if (u.split == p && u.codec == codec && input.staleness >= u.staleness)
          c.unstable_marks += std::max(u.marks, 1);
      }
      if (c.over_budget) c.excluded = "over the memory budget";
      if (c.unstable_marks > 0) c.excluded += std::string(c.excluded.empty() ? "" : "; ") + "unstable in this run";
      c.feasible = c.excluded.empty();
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
    if (!a.feasible) {
      if (a.over_budget != b.over_budget) return !a.over_budget;  // unstable-only ones first
      if (a.over_budget) {
        if (a.edge_memory_bytes != b.edge_memory_bytes) return a.edge_memory_bytes < b.edge_memory_bytes;
        return tieBreak(a, b);
      }
      if (a.unstable_marks != b.unstable_marks) return a.unstable_marks < b.unstable_marks;
    }
    if (a.total_seconds != b.total_seconds) return a.total_seconds < b.total_seconds;
    return tieBreak(a, b);
  });

  const auto feasible = static_cast<std::size_t>(std::count_if(decision.candidates.begin(), decision.candidates.end(),
                                                               [](const Candidate& c) { return c.feasible; }));
  const Candidate* chosen = &decision.candidates.front();
  const auto finish = [&] {
    decision.split = chosen->split;
    decision.codec = chosen->codec;
    decision.predicted_epoch_seconds = chosen->expected_epoch_seconds + chosen->migration_seconds;
    decision.changed = chosen->split != input.current_split || chosen->codec != input.current_codec;
    return decision;
  };
  if (feasible == 0) {
    const auto& least = decision.candidates.front();
    if (least.over_budget) {  // nothing fits the memory budget, stable or not
      auto smallest = decision.candidates.front();
      for (const auto& c : decision.candidates) {
        if (c.edge_memory_bytes < smallest.edge_memory_bytes) smallest = c;
      }
      throw Error(detail::concat("planner: no split point fits the edge memory budget: the smallest requirement is ",
                                 smallest.edge_memory_bytes, " bytes (",
                                 mib(static_cast<double>(smallest.edge_memory_bytes)), ", split ", smallest.split,
                                 ", codec ", smallest.codec, ", staleness ", input.staleness, ") but the budget is ",
                                 static_cast<std::int64_t>(options_.memory_budget_bytes), " bytes (",
                                 mib(options_.memory_budget_bytes), ", scheduler.memory_budget_mb)"));
    }
    decision.reason = "least excluded: every candidate unstable in this run";
    decision.why =
        detail::concat("every pair that fits the memory budget diverged at staleness <= ", input.staleness, "; split ",
                       least.split, " ", least.codec, " has the fewest marks (", least.unstable_marks, ")");
    return finish();
  }

  const Candidate& best = decision.candidates.front();
  const auto current = std::find_if(decision.candidates.begin(), decision.candidates.end(), [&](const Candidate& c) {
    return c.split == input.current_split && c.codec == input.current_codec;
  });
  std::ostringstream why;
  why << std::setprecision(4);
  if (feasible == 1) {
    decision.reason = "only feasible";
    why << "every other pair is excluded (over the memory budget or unstable in this run)";
  } else if (current != decision.candidates.end() && !current->feasible) {
    decision.reason =
        current->over_budget ? "best; current pair over the memory budget" : "best; current pair unstable in this run";
    why << "the current pair is excluded (" << current->excluded << ")";
  } else if (current != decision.candidates.end() && &*current != &best) {
    decision.gain_seconds = current->total_seconds - best.epoch_seconds;
    decision.margin_seconds = options_.hysteresis * current->total_seconds;
    if (best.total_seconds >= current->total_seconds * (1.0 - options_.hysteresis)) {
      chosen = &*current;
      decision.reason = "kept: within hysteresis";
      why << "the best pair (split " << best.split << " " << best.codec << ") would gain " << decision.gain_seconds
          << " s over " << input.iterations << " iterations, not more than its migration " << best.migration_seconds
          << " s + margin " << decision.margin_seconds << " s";
    } else {
      decision.reason = "best";
      why << "gains " << decision.gain_seconds << " s over " << input.iterations
          << " iterations, more than its migration " << best.migration_seconds << " s + margin "
          << decision.margin_seconds << " s";
    }
  } else {
    decision.reason = "best";
    why << (current == decision.candidates.end() ? "the current pair is not a candidate"
                                                 : "the current pair is the best");
  }
  if (states) {
    why << "; ranked by expected time over " << input.link_states.size() << " link states (weight "
        << options_.low_state_weight << " more time in the slowest)";
  }
  decision.why = why.str();
  return finish();
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
                          {"median_epoch_s", c.median_epoch_seconds},
                          {"expected_epoch_s", c.expected_epoch_seconds},
                          {"low_epoch_s", c.low_epoch_seconds},
                          {"seed_epoch_s", c.seed_epoch_seconds},
                          {"migration_s", c.migration_seconds},
                          {"migration_mb", static_cast<double>(c.migration_bytes) / kMiB},
                          {"uplink_mb", static_cast<double>(c.uplink_bytes) / kMiB},
                          {"total_s", c.total_seconds},
                          {"edge_memory_mb", static_cast<double>(c.edge_memory_bytes) / kMiB},
                          {"feasible", c.feasible},
                          {"excluded", c.excluded}});
  }
  json states = json::array();
  for (const auto& s : in.link_states) {
    states.push_back(
        {{"uplink_mbps", s.link.uplink_bps / 1e6}, {"downlink_mbps", s.link.downlink_bps / 1e6}, {"weight", s.weight}});
  }
  json unstable = json::array();
  for (const auto& u : in.unstable) {
    unstable.push_back({{"split", u.split}, {"codec", u.codec}, {"staleness", u.staleness}, {"marks", u.marks}});
  }
  const json out = {{"input",
                     {{"uplink_mbps", in.link.uplink_bps / 1e6},
                      {"downlink_mbps", in.link.downlink_bps / 1e6},
                      {"rtt_ms", in.link.rtt_seconds * 1e3},
                      {"current_split", in.current_split},
                      {"current_codec", in.current_codec},
                      {"staleness", in.staleness},
                      {"iterations", in.iterations}}},
                    {"link_states", std::move(states)},
                    {"unstable", std::move(unstable)},
                    {"candidates", std::move(candidates)},
                    {"num_candidates", decision.candidates.size()},
                    {"num_feasible", feasible},
                    {"choice", {{"split", decision.split}, {"codec", decision.codec}}},
                    {"predicted_epoch_s", decision.predicted_epoch_seconds},
                    {"changed", decision.changed},
                    {"reason", decision.reason},
                    {"why", decision.why},
                    {"gain_s", decision.gain_seconds},
                    {"margin_s", decision.margin_seconds}};
  return out.dump();
}

}  // namespace tandem::scheduler

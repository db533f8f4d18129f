#include "runtime/scheduler/planner.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <limits>
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

double workAheadGain(double compute_rate, const std::vector<double>& link_rates,
                     const std::vector<LinkSegment>& segments, double buffer) {
  double total = 0.0;
  for (const auto& seg : segments) {
    TANDEM_ENFORCE(seg.state < link_rates.size(), "link segment state ", seg.state, " of ", link_rates.size());
    if (seg.seconds > 0) total += seg.seconds;
  }
  if (!(compute_rate > 0) || !(buffer > 0) || segments.size() < 2 || !(total > 0)) return 0.0;
  double queue = 0.0;  // iterations computed ahead, waiting for the link
  double carried = 0.0;
  double unbuffered = 0.0;
  for (int pass = 0; pass < 2; ++pass) {
    carried = unbuffered = 0.0;
    for (const auto& seg : segments) {
      const double d = seg.seconds;
      if (!(d > 0)) continue;
      const double u = std::max(link_rates[seg.state], 0.0);
      if (u >= compute_rate) {  // spare link capacity drains the backlog while the edge computes
        const double drained = std::isinf(u) ? queue : std::min(queue, (u - compute_rate) * d);
        queue -= drained;
        carried += compute_rate * d + drained;
        unbuffered += compute_rate * d;
      } else {  // the link is the bottleneck: the edge computes ahead until the queue is full
        queue = std::min(buffer, queue + (compute_rate - u) * d);
        carried += u * d;
        unbuffered += u * d;
      }
    }
  }
  return std::max(0.0, (carried - unbuffered) / total);
}

StateExpectation expectOverStates(const CostModel& model, int split, const std::string& codec, std::int64_t iterations,
                                  int staleness, const LinkEstimate& link, const std::vector<LinkState>& states,
                                  const std::vector<LinkSegment>& segments, double low_state_weight) {
  StateExpectation e;
  e.median_seconds = model.epochSeconds(model.iteration(split, codec, link), iterations, staleness);
  e.expected_seconds = e.cautious_seconds = e.low_seconds = e.median_seconds;
  // The slowest state: the one with the least uplink (then downlink) bandwidth.
  double weight_sum = 0.0;
  std::size_t low_state = 0;
  for (std::size_t s = 0; s < states.size(); ++s) {
    const auto& state = states[s];
    TANDEM_ENFORCE(state.weight >= 0 && std::isfinite(state.weight), "link state weight ", state.weight);
    weight_sum += state.weight;
    const auto& low = states[low_state].link;
    if (state.link.uplink_bps < low.uplink_bps ||
        (state.link.uplink_bps == low.uplink_bps && state.link.downlink_bps < low.downlink_bps)) {
      low_state = s;
    }
  }
  if (states.empty() || !(weight_sum > 0) || iterations <= 0) return e;

  double rate = 0.0;      // Σ w_s / epoch_s, with Σ w_s = 1
  double cautious = 0.0;  // the same with λ more weight on the slowest state
  bool stalled = false;
  std::vector<double> link_rates;  // iterations per second the link carries in each state
  IterationTimes compute_only;
  for (std::size_t s = 0; s < states.size(); ++s) {
    const auto times = model.iteration(split, codec, states[s].link);
    const double slowest_transfer = std::max(times.up, times.down);
    link_rates.push_back(slowest_transfer > 0 ? 1.0 / slowest_transfer : std::numeric_limits<double>::infinity());
    if (s == 0) {
      compute_only = times;
      compute_only.up = compute_only.down = 0.0;
    }
    const double t = model.epochSeconds(times, iterations, staleness);
    if (s == low_state) e.low_seconds = t;
    if (t <= 0) {
      stalled = true;  // no time at all: nothing to move or compute
      continue;
    }
    const double w = states[s].weight / weight_sum;
    rate += w / t;
    cautious += ((1.0 - low_state_weight) * w + (s == low_state ? low_state_weight : 0.0)) / t;
  }
  const double compute_seconds = model.epochSeconds(compute_only, iterations, staleness);
  if (compute_seconds > 0 && rate > 0) {
    e.work_ahead_rate = workAheadGain(static_cast<double>(iterations) / compute_seconds, link_rates, segments,
                                      static_cast<double>(std::max(staleness, 0)));
    const double per_epoch = e.work_ahead_rate / static_cast<double>(iterations);
    rate += per_epoch;
    cautious += per_epoch;
  }
  const double fallback = stalled ? 0.0 : e.median_seconds;
  e.expected_seconds = rate > 0 ? 1.0 / rate : fallback;
  e.cautious_seconds = cautious > 0 ? 1.0 / cautious : fallback;
  return e;
}

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
  double weight_sum = 0.0;
  for (const auto& state : input.link_states) weight_sum += state.weight;
  const bool states = !input.link_states.empty() && weight_sum > 0;
  for (int p : options_.splits) {
    for (const auto& codec : options_.codecs) {
      Candidate c;
      c.split = p;
      c.codec = codec;
      c.times = model_.iteration(p, codec, input.link);
      const auto e = expectOverStates(model_, p, codec, input.iterations, input.staleness, input.link,
                                      input.link_states, input.link_segments, options_.low_state_weight);
      c.median_epoch_seconds = e.median_seconds;
      c.expected_epoch_seconds = e.expected_seconds;
      c.low_epoch_seconds = e.low_seconds;
      c.epoch_seconds = e.cautious_seconds;
      c.work_ahead_rate = e.work_ahead_rate;
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
        << options_.low_state_weight << " more time in the slowest";
    if (!input.link_segments.empty())
      why << "; working ahead priced over " << input.link_segments.size() << " segments";
    why << ")";
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
                          {"work_ahead_it_s", c.work_ahead_rate},
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
  double segment_seconds = 0.0;
  for (const auto& seg : in.link_segments) segment_seconds += seg.seconds;
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
                    {"link_segments", in.link_segments.size()},
                    {"link_segment_s",
                     in.link_segments.empty() ? 0.0 : segment_seconds / static_cast<double>(in.link_segments.size())},
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

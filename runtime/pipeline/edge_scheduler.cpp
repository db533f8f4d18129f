#include "runtime/pipeline/edge_scheduler.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "compression/registry.h"
#include "runtime/common/error.h"
#include "runtime/common/log.h"
#include "runtime/telemetry/memory.h"
#include "runtime/transport/transport.h"

namespace tandem::pipeline {

namespace {

std::int64_t encodedSize(const std::string& codec, const std::vector<std::int64_t>& shape) {
  std::int64_t numel = 1;
  for (auto d : shape) numel *= d;
  if (codec == "none") return numel * 4;
  return static_cast<std::int64_t>(compression::makeCodec(codec)->encodedSize(shape));
}

// Codec throughput measured by benchmarks/codec (≈ 0.06 ns per input byte for int8
// encode+decode on one core): the stand-in for a codec neither profile calibrated.
constexpr double kDefaultCodecSecondsPerByte = 6e-11;

scheduler::ModelProfile scaled(scheduler::ModelProfile p, double factor) {
  for (auto* side : {&p.edge, &p.cloud}) {
    for (auto& t : side->forward_seconds) t *= factor;
    for (auto& t : side->backward_seconds) t *= factor;
  }
  return p;
}

// The time-weighted mean uplink rate over link states (0 without states).
double statesUplinkMean(const std::vector<scheduler::LinkState>& states) {
  double sum = 0.0;
  double weights = 0.0;
  for (const auto& s : states) {
    sum += s.weight * s.link.uplink_bps;
    weights += s.weight;
  }
  return weights > 0 ? sum / weights : 0.0;
}

}  // namespace

std::int64_t inputElementBytes(const std::string& dataset) {
  return dataset == "fashion_mnist" || dataset == "cifar10" ? 1 : 4;
}

namespace {

// A regime change: the last kMinHistorySamples samples all lie outside the range the
// earlier ones covered (below their 5% quantile or above their 95%). The link is then in a
// state it has not shown before, and only the history since the change describes it.
telemetry::RateHistory currentRegime(const telemetry::RateHistory& h) {
  const std::size_t recent = EdgeScheduler::kMinHistorySamples;
  if (h.size() < 2 * recent) return h;
  const auto& samples = h.samples();
  const double split_time = samples[samples.size() - recent].time;
  telemetry::RateHistory older(0, samples.size(), 1.5);
  for (std::size_t i = 0; i + recent < samples.size(); ++i) older.add(samples[i].time, samples[i].bps);
  const double lo = older.quantile(0.05);
  const double hi = older.quantile(0.95);
  bool below = true;
  bool above = true;
  for (std::size_t i = samples.size() - recent; i < samples.size(); ++i) {
    below = below && samples[i].bps < lo;
    above = above && samples[i].bps > hi;
  }
  return below || above ? h.since(split_time) : h;
}

}  // namespace

std::vector<scheduler::LinkState> linkStates(const telemetry::RateHistory& uplink_history,
                                             const telemetry::RateHistory& downlink_history,
                                             const scheduler::LinkEstimate& fallback, double downlink_per_uplink) {
  std::vector<scheduler::LinkState> out;
  const auto uplink = currentRegime(uplink_history);
  const auto downlink = currentRegime(downlink_history);
  if (uplink.size() < EdgeScheduler::kMinHistorySamples) return out;
  const bool down = downlink.size() >= EdgeScheduler::kMinHistorySamples;
  const double weight = 1.0 / static_cast<double>(std::size(EdgeScheduler::kStateQuantiles));
  for (double q : EdgeScheduler::kStateQuantiles) {
    scheduler::LinkState s;
    s.link.uplink_bps = uplink.quantile(q);
    s.link.downlink_bps = down                      ? downlink.quantile(q)
                          : downlink_per_uplink > 0 ? s.link.uplink_bps * downlink_per_uplink
                                                    : fallback.downlink_bps;
    s.link.rtt_seconds = fallback.rtt_seconds;
    s.weight = weight;
    out.push_back(s);
  }
  return out;
}

std::vector<scheduler::LinkSegment> linkSegments(const telemetry::RateHistory& uplink_history,
                                                 const std::vector<scheduler::LinkState>& states) {
  std::vector<scheduler::LinkSegment> out;
  if (states.empty()) return out;
  const auto uplink = currentRegime(uplink_history);
  const auto seconds = uplink.sampleSeconds();
  const auto log_rate = [](double bps) { return std::log(std::max(bps, 1.0)); };
  for (std::size_t i = 0; i < uplink.size(); ++i) {
    const double x = log_rate(uplink.samples()[i].bps);
    std::size_t nearest = 0;
    for (std::size_t s = 1; s < states.size(); ++s) {
      if (std::abs(log_rate(states[s].link.uplink_bps) - x) < std::abs(log_rate(states[nearest].link.uplink_bps) - x)) {
        nearest = s;
      }
    }
    if (!out.empty() && out.back().state == nearest) {
      out.back().seconds += seconds[i];
    } else {
      out.push_back({nearest, seconds[i]});
    }
  }
  return out;
}

EdgeScheduler::EdgeScheduler(const config::Config& config, scheduler::ModelProfile profile,
                             const telemetry::LinkEstimator& link, ClockFn clock)
    : config_(config), link_(link), clock_(std::move(clock)) {
  if (!clock_) clock_ = [] { return transport::steadySeconds(); };
  cost_options_.replay = config.split.replay;
  cost_options_.optimizer = config.optimizer.name;
  cost_options_.downlink_codec = config.compression.downlink;
  // Each side's profile carries its host's measured codec costs; this is for the others.
  cost_options_.codec_seconds_per_byte = kDefaultCodecSecondsPerByte;
  cost_options_.drain_arrived_gradients = false;  // the edge applies one arrived gradient per batch sent
  cost_options_.input_element_bytes = inputElementBytes(config.data.dataset);
  rebuild(std::move(profile));
  path_ = config.run.output_dir + "/decisions.jsonl";
  std::filesystem::create_directories(config.run.output_dir);
  std::ofstream truncate(path_, std::ios::trunc);
}

void EdgeScheduler::rebuild(scheduler::ModelProfile profile) {
  auto model = std::make_unique<scheduler::CostModel>(std::move(profile), encodedSize, cost_options_);
  scheduler::PlannerOptions planner;
  planner.codecs = config_.scheduler.codecs;
  planner.memory_budget_bytes = config_.scheduler.memory_budget_mb * 1024.0 * 1024.0;
  planner.hysteresis = config_.scheduler.hysteresis;
  planner.error_feedback = config_.compression.error_feedback;
  auto p = std::make_unique<scheduler::Planner>(*model, planner);
  planner_ = std::move(p);
  cost_model_ = std::move(model);
}

EdgeScheduler::~EdgeScheduler() {
  try {
    if (open_) finish(open_->step);
  } catch (...) {
  }
}

scheduler::LinkEstimate EdgeScheduler::estimate() const {
  scheduler::LinkEstimate e;
  e.uplink_bps = link_.uplinkBps().value_or(0.0);
  e.downlink_bps = link_.downlinkBps().value_or(0.0);
  const auto ratio = link_.downlinkPerUplink();
  if (ratio && link_.downlinkHistory().size() < kMinHistorySamples && e.uplink_bps > 0) {
    e.downlink_bps = e.uplink_bps * *ratio;
  }
  e.rtt_seconds = link_.rttSeconds();
  return e;
}

std::vector<scheduler::LinkState> EdgeScheduler::states() const {
  return linkStates(link_.uplinkHistory(), link_.downlinkHistory(), estimate(),
                    link_.downlinkPerUplink().value_or(0.0));
}

scheduler::Decision EdgeScheduler::plan(int current_split, const std::string& current_codec, int staleness,
                                        std::int64_t iterations) const {
  scheduler::PlanInput input;
  input.link = estimate();
  input.link_states = states();
  input.link_segments = linkSegments(link_.uplinkHistory(), input.link_states);
  input.unstable = unstable_;
  input.current_split = current_split;
  input.current_codec = current_codec;
  input.staleness = staleness;
  input.iterations = iterations;
  return planner_->plan(input);
}

double EdgeScheduler::expectedSeconds(const scheduler::CostModel& model, int split, const std::string& codec,
                                      int staleness, std::int64_t iterations,
                                      const std::vector<scheduler::LinkState>& states,
                                      const std::vector<scheduler::LinkSegment>& segments,
                                      const scheduler::LinkEstimate& link) const {
  return scheduler::expectOverStates(model, split, codec, iterations, staleness, link, states, segments, 0.0)
      .expected_seconds;
}

double EdgeScheduler::predict(int split, const std::string& codec, int staleness, std::int64_t iterations) const {
  const auto now = states();
  return expectedSeconds(*cost_model_, split, codec, staleness, iterations, now,
                         linkSegments(link_.uplinkHistory(), now), estimate());
}

void EdgeScheduler::begin(scheduler::Decision decision, const std::string& trigger, int epoch, std::int64_t step,
                          bool applied, double predicted_current_seconds) {
  finish(step);
  Open o;
  o.decision = std::move(decision);
  o.trigger = trigger;
  o.epoch = epoch;
  o.step = step;
  o.applied = applied;
  o.predicted_current_seconds = predicted_current_seconds;
  o.started = clock_();
  o.link_at_decision = estimate();
  o.states_uplink_at_decision = statesUplinkMean(states());
  open_ = std::move(o);
  checked_samples_ = link_.uplinkSamples();
  last_checked_.reset();
}

void EdgeScheduler::append(const std::string& line) {
  std::ofstream out(path_, std::ios::app);
  out << line << "\n";
}

void EdgeScheduler::finish(std::int64_t step) {
  if (!open_) return;
  const std::int64_t iterations = step - open_->step;
  auto line = nlohmann::json::parse(scheduler::Planner::toJson(open_->decision));
  const double now = clock_();
  const double measured = now - open_->started;
  const auto memory = telemetry::readMemory();
  line["trigger"] = open_->trigger;
  line["epoch"] = open_->epoch + 1;  // 1-based, as in the logs and summary files
  line["step"] = open_->step;
  line["applied"] = open_->applied;
  line["predicted_current_s"] = open_->predicted_current_seconds;
  line["measured_s"] = measured;
  line["measured_iterations"] = iterations;
  line["planned_iterations"] = open_->decision.input.iterations;
  line["bandwidth_checks"] = open_->bandwidth_checks;
  line["bandwidth_kept"] = open_->bandwidth_kept;
  if (open_->bandwidth_checks > 0) {
    line["last_check_iterations"] = open_->last_check_iterations;
    line["last_check_why"] = open_->last_check_why;
  }
  line["edge_rss_mb"] = static_cast<double>(memory.rss_bytes) / (1024.0 * 1024.0);
  line["mem_available_mb"] = static_cast<double>(memory.available_bytes) / (1024.0 * 1024.0);
  line["memory_budget_mb"] = config_.scheduler.memory_budget_mb;

  // The profile check: the pair that ran, re-predicted over the link seen meanwhile.
  const int split = open_->applied ? open_->decision.split : open_->decision.input.current_split;
  const std::string codec = open_->applied ? open_->decision.codec : open_->decision.input.current_codec;
  const int staleness = open_->decision.input.staleness;
  std::optional<nlohmann::json> rescale_event;
  line["min_staleness"] = std::min(open_->min_staleness, staleness);
  const double measured_compute = open_->edge_compute_seconds + open_->cloud_compute_seconds;
  const bool by_compute = measured_compute > 0;
  if (iterations >= kProfileCheckIterations && measured > 0 && open_->min_staleness >= staleness) {
    // With the compute the edge measured (noteCompute), the check compares compute with
    // the profile's compute for these iterations: a window that waited on the link (an
    // outage, a slow state the history missed) says nothing about the profile. Without it,
    // the whole window's time against the prediction over the link states seen meanwhile.
    const auto link = estimate();
    std::vector<scheduler::LinkState> window;  // the link seen meanwhile, for the step-time check only
    std::vector<scheduler::LinkSegment> segments;
    if (!by_compute) {
      const auto uplink_window = link_.uplinkHistory().since(open_->started);
      window = linkStates(uplink_window, link_.downlinkHistory().since(open_->started), link,
                          link_.downlinkPerUplink().value_or(0.0));
      segments = linkSegments(uplink_window, window);
    }
    const auto predict_with = [&](const scheduler::CostModel& model) {
      if (by_compute) {
        const auto t = model.iteration(split, codec, link);
        return static_cast<double>(iterations) * (t.edge + t.cloud);
      }
      return expectedSeconds(model, split, codec, staleness, iterations, window, segments, link);
    };
    const double target = by_compute ? measured_compute : measured;
    const double predicted = predict_with(*cost_model_);
    const double ratio = predicted > 0 ? target / predicted : 0.0;
    line["check_kind"] = by_compute ? "compute" : "step_time";
    line["check_measured_s"] = target;
    line["check_predicted_s"] = predicted;
    line["check_ratio"] = ratio;
    const bool disagrees = predicted > 0 && (ratio > kProfileDisagreement || ratio < 1.0 / kProfileDisagreement);
    disagreements_ = disagrees ? disagreements_ + 1 : 0;
    line["check_disagreements"] = disagreements_;
    if (disagreements_ >= kProfileStreak) {
      // Find the factor on every stage time that makes this window's prediction match
      // (time grows monotonically with compute): bisection in log space.
      double lo = std::log(1.0 / 64.0);
      double hi = std::log(64.0);
      for (int it = 0; it < 40; ++it) {
        const double mid = 0.5 * (lo + hi);
        const scheduler::CostModel trial(scaled(cost_model_->profile(), std::exp(mid)), encodedSize, cost_options_);
        (predict_with(trial) < target ? lo : hi) = mid;
      }
      const double factor = std::exp(0.5 * (lo + hi));
      rebuild(scaled(cost_model_->profile(), factor));
      profile_scale_ *= factor;
      disagreements_ = 0;
      rescale_event = nlohmann::json{
          {"event", "profile_rescaled"},
          {"step", step},
          {"factor", factor},
          {"profile_scale", profile_scale_},
          {"check_kind", by_compute ? "compute" : "step_time"},
          {"measured_s", target},
          {"predicted_s", predicted},
          {"split", split},
          {"codec", codec},
          {"why", std::string(by_compute ? "measured compute" : "measured time") +
                      " disagreed with the profile's prediction by more than " + std::to_string(kProfileDisagreement) +
                      "x for " + std::to_string(kProfileStreak) +
                      " decisions in a row; every stage time (both sides) is scaled to match the last one"}};
      log::get("edge.scheduler")
          ->warn("profile disagrees with measured {} ({:.2f}x for {} decisions): stage times rescaled by {:.3f}",
                 by_compute ? "compute" : "step times", ratio, kProfileStreak, factor);
    }
  }
  append(line.dump());
  if (rescale_event) append(rescale_event->dump());
  ++logged_;
  open_.reset();
}

void EdgeScheduler::noteStaleness(int staleness) {
  if (open_) open_->min_staleness = std::min(open_->min_staleness, staleness);
}

void EdgeScheduler::noteCompute(double edge_seconds, double cloud_seconds) {
  if (!open_) return;
  if (edge_seconds > 0 && std::isfinite(edge_seconds)) open_->edge_compute_seconds += edge_seconds;
  if (cloud_seconds > 0 && std::isfinite(cloud_seconds)) open_->cloud_compute_seconds += cloud_seconds;
}

bool EdgeScheduler::bandwidthMoved(std::int64_t step) const {
  if (!open_) return false;
  const auto now = estimate();
  const auto reference = last_checked_.value_or(open_->link_at_decision);
  const auto moved = [&](double before, double after) {
    if (before <= 0 || after <= 0) return false;
    return std::abs(after - before) / before > config_.scheduler.replan_threshold;
  };
  const bool since_check =
      moved(reference.uplink_bps, now.uplink_bps) || moved(reference.downlink_bps, now.downlink_bps);
  // Still away from where the decision was made: look again once the history has
  // kMinHistorySamples more samples (a lasting step shows as a regime change then).
  const bool since_decision = moved(open_->link_at_decision.uplink_bps, now.uplink_bps) ||
                              moved(open_->link_at_decision.downlink_bps, now.downlink_bps);
  // Or the link states the plan weighed have moved (the history left a state behind), or
  // the plan weighed none (made on the start-up probe alone, before there was a history)
  // and there are some now: on a link that flips between states, the median need never
  // move far from the probe's, and the plan would otherwise never see the other states.
  const auto states_list = states();
  const double states_now = statesUplinkMean(states_list);
  const bool states_moved = moved(open_->states_uplink_at_decision, states_now) ||
                            (open_->states_uplink_at_decision <= 0 && !states_list.empty());
  const bool fresh = link_.uplinkSamples() >= checked_samples_ + kMinHistorySamples;
  if (!since_check && !((since_decision || states_moved) && fresh)) return false;
  last_checked_ = now;
  checked_samples_ = link_.uplinkSamples();
  ++open_->bandwidth_checks;
  // Would a plan for the rest change the pair?
  const auto& d = open_->decision;
  const std::int64_t remaining = std::max<std::int64_t>(d.input.iterations - (step - open_->step), 1);
  const int split = open_->applied ? d.split : d.input.current_split;
  const std::string codec = open_->applied ? d.codec : d.input.current_codec;
  const auto next = plan(split, codec, d.input.staleness, remaining);
  open_->last_check_iterations = remaining;
  open_->last_check_why = next.why;
  if (next.changed) return true;
  ++open_->bandwidth_kept;
  return false;
}

void EdgeScheduler::markUnstable(int split, const std::string& codec, int staleness) {
  if (split < 0 || split > cost_model_->numStages()) {
    throw Error(detail::concat("markUnstable: split ", split, " outside 0..", cost_model_->numStages()));
  }
  const auto& codecs = config_.scheduler.codecs;
  if (codec != config_.compression.uplink && std::find(codecs.begin(), codecs.end(), codec) == codecs.end()) {
    throw Error(
        detail::concat("markUnstable: codec \"", codec, "\" is neither compression.uplink nor in scheduler.codecs"));
  }
  staleness = std::max(staleness, 0);
  auto it = std::find_if(unstable_.begin(), unstable_.end(),
                         [&](const scheduler::UnstablePair& u) { return u.split == split && u.codec == codec; });
  if (it == unstable_.end()) {
    unstable_.push_back({split, codec, staleness, 1});
    it = std::prev(unstable_.end());
  } else {
    it->staleness = std::min(it->staleness, staleness);
    ++it->marks;
  }
  const nlohmann::json line = {{"event", "unstable"},
                               {"split", split},
                               {"codec", codec},
                               {"staleness", staleness},
                               {"excluded_from_staleness", it->staleness},
                               {"marks", it->marks},
                               {"why", "diverged in this run: the planner treats this pair at staleness >= " +
                                           std::to_string(it->staleness) + " as infeasible"}};
  append(line.dump());
}

}  // namespace tandem::pipeline

#include "runtime/pipeline/edge_scheduler.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "compression/registry.h"
#include "runtime/common/log.h"
#include "runtime/telemetry/memory.h"

namespace tandem::pipeline {

namespace {

std::int64_t encodedSize(const std::string& codec, const std::vector<std::int64_t>& shape) {
  std::int64_t numel = 1;
  for (auto d : shape) numel *= d;
  if (codec == "none") return numel * 4;
  return static_cast<std::int64_t>(compression::makeCodec(codec)->encodedSize(shape));
}

}  // namespace

EdgeScheduler::EdgeScheduler(const config::Config& config, scheduler::ModelProfile profile,
                             const telemetry::LinkEstimator& link)
    : config_(config), link_(link) {
  scheduler::CostModelOptions options;
  options.replay = config.split.replay;
  options.optimizer = config.optimizer.name;
  options.downlink_codec = config.compression.downlink;
  // Codec throughput measured by benchmarks/codec (≈ 0.06 ns per input byte for int8
  // encode+decode on one core); small next to compute, kept so top-k is not free.
  options.codec_seconds_per_byte = 6e-11;
  options.drain_arrived_gradients = false;  // the edge applies one arrived gradient per batch sent
  cost_model_ = std::make_unique<scheduler::CostModel>(std::move(profile), encodedSize, options);
  scheduler::PlannerOptions planner;
  planner.codecs = config.scheduler.codecs;
  planner.memory_budget_bytes = config.scheduler.memory_budget_mb * 1024.0 * 1024.0;
  planner.hysteresis = config.scheduler.hysteresis;
  planner.error_feedback = config.compression.error_feedback;
  planner_ = std::make_unique<scheduler::Planner>(*cost_model_, planner);
  path_ = config.run.output_dir + "/decisions.jsonl";
  std::filesystem::create_directories(config.run.output_dir);
  std::ofstream truncate(path_, std::ios::trunc);
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
  e.rtt_seconds = link_.rttSeconds();
  return e;
}

scheduler::Decision EdgeScheduler::plan(int current_split, const std::string& current_codec, int staleness,
                                        std::int64_t iterations) const {
  scheduler::PlanInput input;
  input.link = estimate();
  input.current_split = current_split;
  input.current_codec = current_codec;
  input.staleness = staleness;
  input.iterations = iterations;
  return planner_->plan(input);
}

double EdgeScheduler::predict(int split, const std::string& codec, int staleness, std::int64_t iterations) const {
  const auto times = cost_model_->iteration(split, codec, estimate());
  return cost_model_->epochSeconds(times, iterations, staleness);
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
  o.started = std::chrono::steady_clock::now();
  o.link_at_decision = estimate();
  open_ = std::move(o);
}

void EdgeScheduler::finish(std::int64_t step) {
  if (!open_) return;
  const std::int64_t iterations = step - open_->step;
  auto line = nlohmann::json::parse(scheduler::Planner::toJson(open_->decision));
  const double measured = std::chrono::duration<double>(std::chrono::steady_clock::now() - open_->started).count();
  const auto memory = telemetry::readMemory();
  line["trigger"] = open_->trigger;
  line["epoch"] = open_->epoch + 1;  // 1-based, as in the logs and summary files
  line["step"] = open_->step;
  line["applied"] = open_->applied;
  line["predicted_current_s"] = open_->predicted_current_seconds;
  line["measured_s"] = measured;
  line["measured_iterations"] = iterations;
  line["planned_iterations"] = open_->decision.input.iterations;
  line["edge_rss_mb"] = static_cast<double>(memory.rss_bytes) / (1024.0 * 1024.0);
  line["mem_available_mb"] = static_cast<double>(memory.available_bytes) / (1024.0 * 1024.0);
  line["memory_budget_mb"] = config_.scheduler.memory_budget_mb;
  std::ofstream out(path_, std::ios::app);
  out << line.dump() << "\n";
  ++logged_;
  open_.reset();
}

bool EdgeScheduler::bandwidthMoved() const {
  if (!open_) return false;
  const auto now = estimate();
  const auto moved = [&](double before, double after) {
    if (before <= 0 || after <= 0) return false;
    return std::abs(after - before) / before > config_.scheduler.replan_threshold;
  };
  return moved(open_->link_at_decision.uplink_bps, now.uplink_bps) ||
         moved(open_->link_at_decision.downlink_bps, now.downlink_bps);
}

}  // namespace tandem::pipeline

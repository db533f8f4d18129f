// The edge's scheduler glue: the dataset's native bytes at p = 0, pairs marked unstable,
// the profile check against measured times, and the bandwidth trigger. Times come from an
// injected clock, so nothing here depends on how fast the machine is.
#include "runtime/pipeline/edge_scheduler.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runtime/common/error.h"
#include "runtime/scheduler/profiler.h"
#include "tests/common/temp_dir_test.h"
#include "tests/scheduler/synthetic_profile.h"

namespace tandem::pipeline {
namespace {

using scheduler::testing::StageSpec;
using scheduler::testing::syntheticProfile;
using ::testing::HasSubstr;

scheduler::ModelProfile profile() {
  const StageSpec stage{0.01, 0.02, 0.001, 0.002, 256, 10'000, 0};
  return syntheticProfile(16, {1, 28, 28}, {stage, stage, stage});
}

class EdgeSchedulerTest : public testing::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    config_.run.output_dir = dir_.string();
    config_.scheduler.codecs = {"none", "int8"};
    // A constant 20 Mbit/s link, 10 ms RTT, measured by messages 0.1 s apart.
    link_.onPing(0, 0.005, 0.005, 0.010);
    for (int i = 0; i < 20; ++i) feed(20e6);
  }
  void feed(double bps) { feed(link_, bps); }
  // One 100 kB message each way at `bps` into `link`, then 0.1 s on the clock.
  void feed(telemetry::LinkEstimator& link, double bps) {
    const std::uint64_t bytes = 100'000;
    const double seconds = static_cast<double>(bytes) * 8 / bps;
    link.onUplink(bytes, now_, now_ + seconds + 0.005);
    link.onDownlink(bytes, now_, now_ + seconds + 0.005);
    link.resetSpacing();
    now_ += 0.1;
  }
  std::vector<nlohmann::json> lines() const {
    std::vector<nlohmann::json> out;
    std::ifstream in(dir_ / "decisions.jsonl");
    for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
    return out;
  }
  EdgeScheduler make() {
    return EdgeScheduler(config_, profile(), link_, [this] { return now_; });
  }
  // One decision at split 1, `none`, planned K `k` for `n` iterations from `step`, that
  // runs at K `ran_at` (unnoted if negative) and takes `slowdown` × its prediction.
  // Returns the step after it.
  std::int64_t runDecision(EdgeScheduler& s, int k, std::int64_t n, std::int64_t step, int epoch, double slowdown,
                           int ran_at = -1) {
    auto d = s.plan(1, "none", k, n);
    const double predicted = s.predict(d.split, d.codec, k, n);
    s.begin(d, "epoch", epoch, step, true, predicted);
    if (ran_at >= 0) s.noteStaleness(ran_at);
    now_ += slowdown * predicted;
    s.finish(step + n);
    return step + n;
  }

  config::Config config_;
  telemetry::LinkEstimator link_;
  double now_ = 1.0;
};

TEST_F(EdgeSchedulerTest, RawInputsOfImageDatasetsArePricedAsUint8) {
  EXPECT_EQ(inputElementBytes("fashion_mnist"), 1);
  EXPECT_EQ(inputElementBytes("cifar10"), 1);
  EXPECT_EQ(inputElementBytes("synthetic"), 4);
  config_.data.dataset = "fashion_mnist";
  const auto images = make();
  EXPECT_EQ(images.costModel().options().input_element_bytes, 1);
  EXPECT_EQ(images.costModel().uplinkBytes(0, "none"),
            16 * 28 * 28 + 16 * 8 + scheduler::CostModel::kUplinkOverheadBytes);
  config_.data.dataset = "synthetic";
  EXPECT_EQ(make().costModel().options().input_element_bytes, 4);
}

TEST_F(EdgeSchedulerTest, MarkedUnstablePairsAreExcludedAndLogged) {
  auto s = make();
  const auto before = s.plan(1, "none", 2, 100);
  s.markUnstable(before.split, before.codec, 2);
  const auto after = s.plan(before.split, before.codec, 3, 100);
  EXPECT_FALSE(after.split == before.split && after.codec == before.codec);
  EXPECT_EQ(after.reason, "best; current pair unstable in this run");
  EXPECT_EQ(s.plan(before.split, before.codec, 1, 100).split, before.split);  // a lower K is allowed
  s.markUnstable(before.split, before.codec, 1);
  ASSERT_EQ(s.unstable().size(), 1u);
  EXPECT_EQ(s.unstable()[0].staleness, 1);
  EXPECT_EQ(s.unstable()[0].marks, 2);
  const auto log = lines();
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0]["event"], "unstable");
  EXPECT_EQ(log[1]["excluded_from_staleness"], 1);
  EXPECT_THAT(log[0]["why"].get<std::string>(), HasSubstr("infeasible"));
  EXPECT_THROW(s.markUnstable(9, "none", 0), Error);
  EXPECT_THROW(s.markUnstable(1, "topk:0.1", 0), Error);
}

TEST_F(EdgeSchedulerTest, StepTimesThatDisagreeWithTheProfileRescaleItAfterASustainedPeriod) {
  auto s = make();
  const int split = 1;
  const std::int64_t n = 200;
  std::int64_t step = 0;
  // Three decisions run 3× slower than predicted (a busier host than when profiled).
  for (int round = 0; round < 3; ++round) {
    auto d = s.plan(split, "none", 0, n);
    d.split = split;
    d.codec = "none";
    const double predicted = s.predict(split, "none", 0, n);
    s.begin(d, "epoch", round, step, true, predicted);
    now_ += 3.0 * predicted;
    step += n;
    s.finish(step);
  }
  const auto log = lines();
  ASSERT_GE(log.size(), 4u);
  EXPECT_NEAR(log[0]["check_ratio"].get<double>(), 3.0, 0.05);
  EXPECT_EQ(log[0]["check_disagreements"], 1);
  EXPECT_EQ(log[1]["check_disagreements"], 2);
  ASSERT_EQ(log[2]["event"], "profile_rescaled");  // after the second disagreement
  EXPECT_THAT(log[2]["why"].get<std::string>(), HasSubstr("disagreed"));
  EXPECT_GT(s.profileScale(), 2.0);
  // The third decision was predicted with the rescaled profile and ran 3× that again (the
  // test's clock always does): one disagreement, not yet another rescale.
  EXPECT_EQ(log[3]["check_disagreements"], 1);
  // The rescaled profile predicts the window it was fitted to: 3× the first prediction.
  const double first = log[0]["check_predicted_s"].get<double>();
  EXPECT_NEAR(log[3]["check_predicted_s"].get<double>(), 3.0 * first, 0.02 * 3.0 * first);
}

// A window that spent most of its time waiting on the link (an outage the link history
// did not capture: nothing arrives during one) took 100x its prediction. With the compute
// the edge measured, the check compares compute, finds the profile right and leaves it;
// compute itself 3x slower than profiled (a busier host) does rescale it.
TEST_F(EdgeSchedulerTest, AStallOnTheLinkIsNotBlamedOnTheProfileWhenComputeIsMeasured) {
  auto s = make();
  const int split = 1;
  const std::int64_t n = 100;
  const auto t = s.costModel().iteration(split, "none", s.estimate());
  const double profiled_compute = static_cast<double>(n) * (t.edge + t.cloud);
  std::int64_t step = 0;
  const auto window = [&](double slowdown, double compute_factor) {
    auto d = s.plan(split, "none", 0, n);
    d.split = split;
    d.codec = "none";
    const double predicted = s.predict(split, "none", 0, n);
    s.begin(d, "epoch", 0, step, true, predicted);
    const double c = compute_factor * static_cast<double>(n) *
                     (s.costModel().iteration(split, "none", s.estimate()).edge +
                      s.costModel().iteration(split, "none", s.estimate()).cloud);
    s.noteCompute(0.6 * c, 0.4 * c);
    now_ += slowdown * predicted;
    step += n;
    s.finish(step);
  };
  for (int round = 0; round < 3; ++round) window(100.0, 1.0);
  EXPECT_DOUBLE_EQ(s.profileScale(), 1.0);
  auto log = lines();
  ASSERT_EQ(log.size(), 3u);
  for (const auto& line : log) {
    EXPECT_EQ(line["check_kind"], "compute");
    EXPECT_NEAR(line["check_ratio"].get<double>(), 1.0, 1e-9);
    EXPECT_EQ(line["check_disagreements"], 0);
    EXPECT_NEAR(line["check_predicted_s"].get<double>(), profiled_compute, 1e-9 * profiled_compute);
  }
  window(1.0, 3.0);
  window(1.0, 3.0);
  log = lines();
  ASSERT_EQ(log.size(), 6u);
  ASSERT_EQ(log[5]["event"], "profile_rescaled");
  EXPECT_EQ(log[5]["check_kind"], "compute");
  EXPECT_NEAR(s.profileScale(), 3.0, 0.1);
}

TEST_F(EdgeSchedulerTest, AgreeingStepTimesLeaveTheProfileAlone) {
  auto s = make();
  std::int64_t step = 0;
  for (int round = 0; round < 4; ++round) step = runDecision(s, 0, 100, step, round, 1.2);
  EXPECT_DOUBLE_EQ(s.profileScale(), 1.0);
  for (const auto& line : lines()) EXPECT_FALSE(line.contains("event"));
}

// During the staleness warm-up the edge runs below the planned K, so its steps are slower
// than the plan predicts for K; that is the warm-up, not a wrong profile.
TEST_F(EdgeSchedulerTest, WindowsRunBelowThePlannedKDoNotRescaleTheProfile) {
  auto s = make();
  std::int64_t step = 0;
  for (int round = 0; round < 4; ++round) step = runDecision(s, 4, 200, step, round, 3.0, round);  // K 0..3 of 4
  EXPECT_DOUBLE_EQ(s.profileScale(), 1.0);
  const auto log = lines();
  ASSERT_EQ(log.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_FALSE(log[i].contains("event"));
    EXPECT_FALSE(log[i].contains("check_ratio"));  // not checked
    EXPECT_EQ(log[i]["min_staleness"], i);
  }
  // At the planned K the same 3x disagreement is checked again.
  runDecision(s, 4, 200, step, 4, 3.0, 4);
  EXPECT_EQ(lines().back()["check_disagreements"], 1);
}

TEST_F(EdgeSchedulerTest, BandwidthTriggerFiresOnlyWhenAPlanWouldChangeThePair) {
  auto s = make();
  auto d = s.plan(1, "none", 2, 1000);
  s.begin(d, "start", 0, 0, true, d.predicted_epoch_seconds);
  EXPECT_FALSE(s.bandwidthMoved(0));
  // A 40% move: past replan_threshold, but this compute-bound model keeps its pair.
  for (int i = 0; i < 5; ++i) feed(28e6);
  const bool moved = s.bandwidthMoved(100);
  const auto again = s.plan(d.split, d.codec, 2, 900);
  EXPECT_EQ(moved, again.changed);
  s.finish(100);
  const auto log = lines();
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0]["bandwidth_checks"], 1);
  EXPECT_EQ(log[0]["bandwidth_kept"], moved ? 0 : 1);
}

// A decision made on the start-up probe alone (no history, so no link states) is looked at
// again as soon as the history has states, even if the median has not moved: on a link
// that flips between states the median can stay at the probe's rate for minutes.
TEST_F(EdgeSchedulerTest, APlanMadeBeforeThereWasAHistoryIsCheckedOnceThereIsOne) {
  telemetry::LinkEstimator fresh;
  fresh.onPing(now_, now_ + 0.005, now_ + 0.005, now_ + 0.010);
  const auto feed_fresh = [&](double bps) { feed(fresh, bps); };
  feed_fresh(20e6);  // the probe
  EdgeScheduler s(config_, profile(), fresh, [this] { return now_; });
  ASSERT_TRUE(s.states().empty());
  auto d = s.plan(1, "none", 2, 1000);
  s.begin(d, "start", 0, 0, true, d.predicted_epoch_seconds);
  for (std::size_t i = 0; i + 2 < EdgeScheduler::kMinHistorySamples; ++i) feed_fresh(20e6);
  EXPECT_FALSE(s.bandwidthMoved(5));  // still no states: nothing to look at
  feed_fresh(20e6);
  feed_fresh(20e6);
  ASSERT_FALSE(s.states().empty());
  const bool moved = s.bandwidthMoved(10);
  EXPECT_EQ(moved, s.plan(d.split, d.codec, 2, 990).changed);
  s.finish(10);
  const auto log = lines();
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0]["bandwidth_checks"], 1);  // looked at, though the median did not move
}

// The estimate's downlink, while the downlink history is too short (split 0: nothing but
// acknowledgements after the probe), is the uplink's times the ratio the probe measured.
TEST_F(EdgeSchedulerTest, AnUnmeasuredDownlinkIsEstimatedFromTheUplinkAtTheProbesRatio) {
  telemetry::LinkEstimator fresh;
  fresh.onPing(now_, now_ + 0.005, now_ + 0.005, now_ + 0.010);
  fresh.onUplink(100'000, now_, now_ + 100'000 * 8 / 10e6 + 0.005);  // the probe: 10 Mbit/s up
  fresh.resetSpacing();
  fresh.onDownlink(100'000, now_ + 1, now_ + 1 + 100'000 * 8 / 30e6 + 0.005);  // and 30 down
  fresh.resetSpacing();
  EdgeScheduler s(config_, profile(), fresh, [this] { return now_; });
  EXPECT_NEAR(s.estimate().downlink_bps / s.estimate().uplink_bps, 3.0, 0.01);
  for (int i = 0; i < 20; ++i) {  // the uplink speeds up; the downlink is not measured again
    const double t = now_ + 2 + 0.1 * i;
    fresh.onUplink(100'000, t, t + 100'000 * 8 / 50e6 + 0.005);
    fresh.resetSpacing();
  }
  EXPECT_NEAR(s.estimate().uplink_bps, 50e6, 0.5e6);
  EXPECT_NEAR(s.estimate().downlink_bps, 150e6, 2e6);
  for (const auto& state : s.states()) EXPECT_NEAR(state.link.downlink_bps, 3.0 * state.link.uplink_bps, 1e3);
}

// After a drop to a slower link the rest of the decision is what is left of its
// iterations, however long the slow ones took: here 10 of 1000 are done when the check
// runs, long after the time the fast link would have needed for all of them (the check
// used to estimate the rest from the time elapsed, and planned for 1 iteration here).
TEST_F(EdgeSchedulerTest, TheBandwidthCheckPlansForTheIterationsLeftNotForTheTimeElapsed) {
  auto s = make();
  auto d = s.plan(1, "none", 2, 1000);
  s.begin(d, "start", 0, 0, true, d.predicted_epoch_seconds);
  now_ += 10 * d.predicted_epoch_seconds;
  for (int i = 0; i < 5; ++i) feed(5e6);  // a move past replan_threshold
  const bool moved = s.bandwidthMoved(10);
  EXPECT_EQ(moved, s.plan(d.split, d.codec, 2, 990).changed);
  s.finish(10);
  const auto log = lines();
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0]["bandwidth_checks"], 1);
  EXPECT_EQ(log[0]["last_check_iterations"], 990);
  EXPECT_THAT(log[0]["last_check_why"].get<std::string>(), HasSubstr(moved ? "gains" : "the current pair"));
}

TEST(LinkStates, AnOscillationKeepsEveryStateButALastingStepStartsAfresh) {
  telemetry::RateHistory up(600, 4096, 1.5);
  for (int i = 0; i < 100; ++i) up.add(i, (i / 10) % 2 == 0 ? 50e6 : 5e6);  // 50 <-> 5 Mbit/s
  const auto oscillating = linkStates(up, up, {});
  ASSERT_EQ(oscillating.size(), 5u);
  EXPECT_DOUBLE_EQ(oscillating.front().link.uplink_bps, 5e6);
  EXPECT_DOUBLE_EQ(oscillating.back().link.uplink_bps, 50e6);
  telemetry::RateHistory step(600, 4096, 1.5);
  for (int i = 0; i < 100; ++i) step.add(i, 50e6);
  for (int i = 100; i < 110; ++i) step.add(i, 2e6);  // a drop to a rate never seen
  for (const auto& s : linkStates(step, step, {})) EXPECT_DOUBLE_EQ(s.link.uplink_bps, 2e6);
}

// At split 0 the downlink carries only acknowledgements, too small to time: the downlink
// was measured once, by the start-up probe. It follows the uplink's states at the ratio it
// had then instead of staying at the probe's rate in every state (which priced the
// gradients of every other split at the probe's downlink, the slow state's, forever).
TEST(LinkStates, AnUnmeasuredDownlinkFollowsTheUplinkAtTheRatioLastMeasured) {
  telemetry::RateHistory up(600, 4096, 1.5);
  for (int i = 0; i < 100; ++i) up.add(i, (i / 10) % 2 == 0 ? 50e6 : 5e6);
  const telemetry::RateHistory none(600, 4096, 1.5);
  const scheduler::LinkEstimate probe{5e6, 15e6, 0.02};
  for (const auto& s : linkStates(up, none, probe, 3.0)) EXPECT_DOUBLE_EQ(s.link.downlink_bps, 3.0 * s.link.uplink_bps);
  for (const auto& s : linkStates(up, none, probe)) EXPECT_DOUBLE_EQ(s.link.downlink_bps, 15e6);  // no ratio known
}

TEST(LinkStates, SegmentsFollowTheHistoryThroughItsStatesWithTheirDwell) {
  telemetry::RateHistory up(600, 4096, 1.5);
  for (int i = 0; i < 100; ++i) up.add(i, (i / 10) % 2 == 0 ? 50e6 : 5e6);  // 10 s each, 50 <-> 5 Mbit/s
  const auto states = linkStates(up, up, {});
  const auto segments = linkSegments(up, states);
  ASSERT_EQ(segments.size(), 10u);
  for (std::size_t i = 0; i < segments.size(); ++i) {
    EXPECT_DOUBLE_EQ(segments[i].seconds, 10.0) << i;
    ASSERT_LT(segments[i].state, states.size());
    EXPECT_DOUBLE_EQ(states[segments[i].state].link.uplink_bps, i % 2 == 0 ? 50e6 : 5e6) << i;
  }
  EXPECT_TRUE(linkSegments(up, {}).empty());
  // After a regime change only the history since the change counts, as for the states.
  telemetry::RateHistory step(600, 4096, 1.5);
  for (int i = 0; i < 100; ++i) step.add(i, 50e6);
  for (int i = 100; i < 110; ++i) step.add(i, 2e6);
  const auto after = linkSegments(step, linkStates(step, step, {}));
  ASSERT_EQ(after.size(), 1u);
  EXPECT_DOUBLE_EQ(after[0].seconds, static_cast<double>(EdgeScheduler::kMinHistorySamples));
}

TEST(Profiler, CodecCostIsMeasuredOnThisHostPerCodec) {
  const auto costs = scheduler::measureCodecs({"none", "int8", "fp16"}, 2, 1 << 14);
  EXPECT_EQ(costs.count("none"), 0u);  // the cost model charges nothing for it
  ASSERT_EQ(costs.count("int8"), 1u);
  ASSERT_EQ(costs.count("fp16"), 1u);
  EXPECT_GT(costs.at("int8"), 0.0);
  EXPECT_GT(costs.at("fp16"), 0.0);
  config::Config config;
  config.scheduler.codecs = {"none", "int8"};
  config.compression.downlink = "fp16";
  EXPECT_EQ(scheduler::codecsToCalibrate(config), (std::vector<std::string>{"int8", "fp16"}));
}

}  // namespace
}  // namespace tandem::pipeline

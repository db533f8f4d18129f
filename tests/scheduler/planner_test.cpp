#include "runtime/scheduler/planner.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>

#include "runtime/common/error.h"
#include "runtime/pipeline/edge_scheduler.h"
#include "runtime/telemetry/link_estimator.h"
#include "tests/scheduler/synthetic_profile.h"

namespace tandem::scheduler {
namespace {

using testing::encodedSize;
using ::testing::HasSubstr;
using testing::link;
using testing::StageSpec;
using testing::syntheticProfile;

constexpr std::int64_t kBatch = 32;
constexpr std::int64_t kIterations = 500;

// Four stages of equal cost, shrinking activations (16384, 4096, 1024, 10 floats per
// sample after an input of 3072). The edge is 50× slower than the cloud.
ModelProfile uniformProfile() {
  const StageSpec stage{0.05, 0.10, 0.001, 0.002, 0, 10'000, 0};
  std::vector<StageSpec> stages(4, stage);
  stages[0].output_numel = 16384;
  stages[1].output_numel = 4096;
  stages[2].output_numel = 1024;
  stages[3].output_numel = 10;
  return syntheticProfile(kBatch, {3, 32, 32}, stages);
}

// Two cheap stages, the second a wide layer (4 MB of weights) that ends in a 64-float
// bottleneck, then two stages the edge is very slow at: split 2 is best on any link that
// is neither very fast nor very slow, and it needs more edge memory than splits 0 and 1.
ModelProfile bottleneckProfile() {
  return syntheticProfile(kBatch, {3, 32, 32},
                          {{0.002, 0.004, 0.001, 0.002, 8192, 40'000, 0},
                           {0.002, 0.004, 0.001, 0.002, 64, 4'000'000, 0},
                           {0.5, 1.0, 0.001, 0.002, 4096, 400'000, 0},
                           {0.5, 1.0, 0.001, 0.002, 10, 40'000, 0}});
}

PlanInput input(const LinkEstimate& l, int current_split, int staleness = 0, std::string codec = "none") {
  PlanInput in;
  in.link = l;
  in.current_split = current_split;
  in.current_codec = std::move(codec);
  in.staleness = staleness;
  in.iterations = kIterations;
  return in;
}

const Candidate& find(const Decision& d, int split, const std::string& codec = "none") {
  const auto it = std::find_if(d.candidates.begin(), d.candidates.end(),
                               [&](const Candidate& c) { return c.split == split && c.codec == codec; });
  if (it == d.candidates.end()) throw std::logic_error("no such candidate");
  return *it;
}

TEST(Planner, UploadsRawInputsOnAFastLinkWithASlowEdge) {
  const CostModel model(uniformProfile(), encodedSize, {});
  const Planner planner(model, {});
  for (int k : {0, 3}) {
    const auto d = planner.plan(input(link(1000, 1000, 1), 2, k));
    EXPECT_EQ(d.split, 0) << "K " << k;
    EXPECT_TRUE(d.changed);
    EXPECT_EQ(d.reason, "best");
    EXPECT_EQ(d.candidates.size(), 5u);
    EXPECT_DOUBLE_EQ(d.predicted_epoch_seconds, d.candidates.front().total_seconds);
    EXPECT_DOUBLE_EQ(d.candidates.front().total_seconds,
                     d.candidates.front().epoch_seconds + d.candidates.front().migration_seconds);
  }
}

TEST(Planner, KeepsEverythingOnTheEdgeOnAVerySlowLink) {
  const CostModel model(uniformProfile(), encodedSize, {});
  const Planner planner(model, {});
  for (int k : {0, 3}) {
    const auto d = planner.plan(input(link(0.1, 0.1, 50), 1, k));
    EXPECT_EQ(d.split, 4) << "K " << k;
    EXPECT_EQ(d.codec, "none");
  }
}

TEST(Planner, PicksAnInteriorSplitAtTheBottleneckLayer) {
  const CostModel model(bottleneckProfile(), encodedSize, {});
  const Planner planner(model, {});
  for (int k : {0, 3}) {
    for (int current : {0, 4}) {
      const auto d = planner.plan(input(link(10, 10, 20), current, k));
      EXPECT_EQ(d.split, 2) << "K " << k << " from " << current;
      // Every other split predicts at least 2× slower here: a clear optimum.
      EXPECT_GT(d.candidates[1].total_seconds, 2 * d.candidates[0].total_seconds);
    }
  }
}

TEST(Planner, RanksFeasibleCandidatesByTotalTime) {
  const CostModel model(bottleneckProfile(), encodedSize, {});
  PlannerOptions options;
  options.codecs = {"none", "int8"};
  const auto d = Planner(model, options).plan(input(link(10, 10, 20), 1, 1));
  ASSERT_EQ(d.candidates.size(), 10u);
  for (std::size_t i = 1; i < d.candidates.size(); ++i) {
    EXPECT_LE(d.candidates[i - 1].total_seconds, d.candidates[i].total_seconds);
  }
  const auto& c = find(d, 3, "int8");
  EXPECT_DOUBLE_EQ(c.migration_seconds, model.migrationSeconds(1, 3, link(10, 10, 20)));
  EXPECT_EQ(c.migration_bytes, model.migrationBytes(1, 3));
  EXPECT_EQ(c.edge_memory_bytes, model.edgeMemoryBytes(3, 1, "int8", false));
  EXPECT_DOUBLE_EQ(c.epoch_seconds, model.epochSeconds(c.times, kIterations, 1));
}

TEST(Planner, RespectsTheMemoryBudget) {
  const CostModel model(bottleneckProfile(), encodedSize, {});
  const auto l = link(10, 10, 20);
  PlannerOptions options;
  options.memory_budget_bytes = static_cast<double>(model.edgeMemoryBytes(2, 0, "none", false) - 1);
  const auto d = Planner(model, options).plan(input(l, 1));
  // Split 2 no longer fits (nor do 3 and 4, which hold more); of 0 and 1, 0 is faster.
  EXPECT_EQ(d.split, 0);
  EXPECT_TRUE(d.changed);
  EXPECT_EQ(d.reason, "best");
  EXPECT_FALSE(find(d, 2).feasible);
  EXPECT_FALSE(find(d, 3).feasible);
  EXPECT_TRUE(find(d, 1).feasible);
  EXPECT_TRUE(find(d, 0).feasible);
  EXPECT_LT(find(d, 2).total_seconds, find(d, 0).total_seconds);  // the unconstrained optimum
  const auto first_infeasible =
      std::find_if(d.candidates.begin(), d.candidates.end(), [](const Candidate& c) { return !c.feasible; });
  EXPECT_TRUE(std::all_of(first_infeasible, d.candidates.end(), [](const Candidate& c) { return !c.feasible; }));
  // Infeasible ones come smallest memory first.
  for (auto it = first_infeasible + 1; it < d.candidates.end(); ++it) {
    EXPECT_LE((it - 1)->edge_memory_bytes, it->edge_memory_bytes);
  }

  // From split 4, which is over the budget, the planner must move.
  const auto from4 = Planner(model, options).plan(input(l, 4));
  EXPECT_EQ(from4.split, 0);
  EXPECT_TRUE(from4.changed);
  EXPECT_EQ(from4.reason, "best; current pair over the memory budget");

  options.memory_budget_bytes = static_cast<double>(model.edgeMemoryBytes(1, 0, "none", false) - 1);
  const auto only = Planner(model, options).plan(input(l, 3));
  EXPECT_EQ(only.split, 0);
  EXPECT_EQ(only.reason, "only feasible");
}

TEST(Planner, NothingFitsIsAnErrorNamingTheSmallestRequirementAndTheBudget) {
  const CostModel model(bottleneckProfile(), encodedSize, {});
  PlannerOptions options;
  options.codecs = {"none", "int8"};
  options.memory_budget_bytes = 1000;
  std::int64_t smallest = std::numeric_limits<std::int64_t>::max();
  for (int p = 0; p <= 4; ++p) {
    for (const std::string codec : {"none", "int8"}) {
      smallest = std::min(smallest, model.edgeMemoryBytes(p, 2, codec, false));
    }
  }
  try {
    Planner(model, options).plan(input(link(10, 10, 20), 2, 2));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("no split point fits the edge memory budget"));
    EXPECT_THAT(e.what(), HasSubstr("the smallest requirement is " + std::to_string(smallest) + " bytes"));
    EXPECT_THAT(e.what(), HasSubstr("split 0, codec int8, staleness 2"));
    EXPECT_THAT(e.what(), HasSubstr("the budget is 1000 bytes (0.00 MiB, scheduler.memory_budget_mb)"));
  }
}

TEST(Planner, PrefersInt8OnASlowLinkAndNoCodecWhenEncodingCostsMoreThanItSaves) {
  CostModelOptions cheap;
  cheap.codec_seconds_per_byte = 6e-11;
  PlannerOptions options;
  options.codecs = {"none", "int8"};
  const CostModel slow_model(bottleneckProfile(), encodedSize, cheap);
  const auto slow = Planner(slow_model, options).plan(input(link(1, 1, 20), 2));
  EXPECT_EQ(slow.split, 2);
  EXPECT_EQ(slow.codec, "int8");
  EXPECT_TRUE(slow.changed);  // the split is kept, the codec changes
  EXPECT_EQ(slow.candidates.front().migration_seconds, 0.0);

  CostModelOptions costly;
  costly.codec_seconds_per_byte = 1e-8;  // 4 ms to encode one input batch
  const CostModel fast_model(uniformProfile(), encodedSize, costly);
  const auto fast = Planner(fast_model, options).plan(input(link(10'000, 10'000, 0.1), 0));
  EXPECT_EQ(fast.split, 0);
  EXPECT_EQ(fast.codec, "none");
}

TEST(Planner, KeepsTheCurrentPairWithinTheHysteresisMargin) {
  const CostModel model(bottleneckProfile(), encodedSize, {});
  const auto l = link(10, 10, 20);
  // Restricted to splits 2 and 3, from 3: split 2 is several times faster, so only a huge
  // margin keeps 3, and the usual 10% does not.
  PlannerOptions options;
  options.splits = {2, 3};
  options.hysteresis = 0.999;
  const auto kept = Planner(model, options).plan(input(l, 3));
  EXPECT_EQ(kept.split, 3);
  EXPECT_FALSE(kept.changed);
  EXPECT_EQ(kept.reason, "kept: within hysteresis");
  EXPECT_EQ(kept.candidates.front().split, 2);  // ranked best, but not chosen
  EXPECT_DOUBLE_EQ(kept.predicted_epoch_seconds, find(kept, 3).total_seconds);

  options.hysteresis = 0.1;
  const auto moved = Planner(model, options).plan(input(l, 3));
  EXPECT_EQ(moved.split, 2);
  EXPECT_TRUE(moved.changed);
  EXPECT_EQ(moved.reason, "best");
}

TEST(Planner, NothingLeftToPlanKeepsTheCurrentPair) {
  // No iterations and a free link: every total is 0, and ties go to moving nothing.
  const CostModel model(bottleneckProfile(), encodedSize, {});
  PlannerOptions options;
  options.codecs = {"none", "int8"};
  auto in = input({0, 0, 0}, 3);
  in.iterations = 0;
  const auto d = Planner(model, options).plan(in);
  EXPECT_EQ(d.split, 3);
  EXPECT_EQ(d.codec, "none");
  EXPECT_FALSE(d.changed);
  EXPECT_EQ(d.predicted_epoch_seconds, 0.0);
}

TEST(Planner, RejectsOptionsItCannotHonour) {
  const CostModel model(bottleneckProfile(), encodedSize, {});
  PlannerOptions options;
  options.codecs = {};
  EXPECT_THROW(Planner(model, options), Error);
  options.codecs = {"none", "none"};
  EXPECT_THROW(Planner(model, options), Error);
  options.codecs = {"none"};
  options.splits = {0, 5};
  EXPECT_THROW(Planner(model, options), Error);
  options.splits = {};
  options.hysteresis = 1.0;
  EXPECT_THROW(Planner(model, options), Error);
}

struct Boundary {
  double bps;  // both directions
  int below;   // the best split on a slower link
  int above;   // the best split on a faster one
};

// The slowest link speed at which the best split (by predicted epoch time) changes.
Boundary firstDecisionBoundary(const CostModel& model, int staleness) {
  const auto best = [&](double bps) {
    const LinkEstimate l{bps, bps, 0.02};
    int split = 0;
    double seconds = std::numeric_limits<double>::infinity();
    for (int p = 0; p <= model.numStages(); ++p) {
      const double t = model.epochSeconds(model.iteration(p, "none", l), kIterations, staleness);
      if (t < seconds) {
        seconds = t;
        split = p;
      }
    }
    return split;
  };
  double lo = 1e4;
  double hi = lo;
  while (best(hi) == best(lo) && hi < 1e11) hi *= 1.5;
  EXPECT_NE(best(lo), best(hi)) << "the best split never changes";
  for (int i = 0; i < 100; ++i) {
    const double mid = std::sqrt(lo * hi);
    (best(mid) == best(lo) ? lo : hi) = mid;
  }
  return {std::sqrt(lo * hi), best(lo), best(hi)};
}

// Feeds 200 bandwidth estimates scattered ±8% around a decision boundary between two
// splits, each decision's choice becoming the current split of the next; returns the
// number of switches.
int switchesAroundADecisionBoundary(double hysteresis) {
  const CostModel model(uniformProfile(), encodedSize, {});
  PlannerOptions options;
  options.hysteresis = hysteresis;
  const Planner planner(model, options);
  const auto boundary = firstDecisionBoundary(model, 1);
  {
    // The two best candidates there are the two sides of the boundary.
    const auto d = planner.plan(input({boundary.bps, boundary.bps, 0.02}, boundary.below, 1));
    std::vector<int> top{d.candidates[0].split, d.candidates[1].split};
    std::vector<int> sides{boundary.below, boundary.above};
    std::sort(top.begin(), top.end());
    std::sort(sides.begin(), sides.end());
    EXPECT_EQ(top, sides);
  }
  std::mt19937 rng(12345);
  std::uniform_real_distribution<double> size(0.0, 0.08);
  int current = boundary.below;
  int switches = 0;
  for (int i = 0; i < 200; ++i) {
    const double sign = rng() % 2 == 0 ? 1.0 : -1.0;
    const double bps = boundary.bps * (1.0 + sign * size(rng));
    const auto d = planner.plan(input({bps, bps, 0.02}, current, 1));
    if (d.split != current) ++switches;
    current = d.split;
  }
  return switches;
}

TEST(Planner, DoesNotFlapUnderNoisyBandwidthAroundADecisionBoundary) {
  EXPECT_LE(switchesAroundADecisionBoundary(0.10), 1);
  // Without hysteresis the same sequence flips the split back and forth: the test would
  // catch a planner that ignored it.
  EXPECT_GT(switchesAroundADecisionBoundary(0.0), 50);
}

TEST(Planner, DecisionJsonIsOneLineWithTheInputsCandidatesAndChoice) {
  CostModelOptions cheap;
  cheap.codec_seconds_per_byte = 6e-11;
  const CostModel model(bottleneckProfile(), encodedSize, cheap);
  PlannerOptions options;
  options.codecs = {"none", "int8"};
  const auto d = Planner(model, options).plan(input(link(1, 2, 20), 3, 1));
  const auto text = Planner::toJson(d, 3);
  EXPECT_EQ(text.find('\n'), std::string::npos);
  const auto j = nlohmann::json::parse(text);
  EXPECT_DOUBLE_EQ(j["input"]["uplink_mbps"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(j["input"]["downlink_mbps"].get<double>(), 2.0);
  EXPECT_DOUBLE_EQ(j["input"]["rtt_ms"].get<double>(), 20.0);
  EXPECT_EQ(j["input"]["current_split"], 3);
  EXPECT_EQ(j["input"]["current_codec"], "none");
  EXPECT_EQ(j["input"]["staleness"], 1);
  EXPECT_EQ(j["input"]["iterations"], kIterations);
  ASSERT_EQ(j["candidates"].size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    const auto& c = j["candidates"][i];
    const auto& want = d.candidates[i];
    EXPECT_EQ(c["rank"], i);
    EXPECT_EQ(c["split"], want.split);
    EXPECT_EQ(c["codec"], want.codec);
    EXPECT_DOUBLE_EQ(c["t_edge"].get<double>(), want.times.edge);
    EXPECT_DOUBLE_EQ(c["t_up"].get<double>(), want.times.up);
    EXPECT_DOUBLE_EQ(c["t_cloud"].get<double>(), want.times.cloud);
    EXPECT_DOUBLE_EQ(c["t_down"].get<double>(), want.times.down);
    EXPECT_DOUBLE_EQ(c["latency"].get<double>(), want.times.latency);
    EXPECT_DOUBLE_EQ(c["epoch_s"].get<double>(), want.epoch_seconds);
    EXPECT_DOUBLE_EQ(c["seed_epoch_s"].get<double>(), want.seed_epoch_seconds);
    EXPECT_DOUBLE_EQ(c["migration_s"].get<double>(), want.migration_seconds);
    EXPECT_DOUBLE_EQ(c["total_s"].get<double>(), want.total_seconds);
    EXPECT_DOUBLE_EQ(c["edge_memory_mb"].get<double>(), static_cast<double>(want.edge_memory_bytes) / (1 << 20));
    EXPECT_EQ(c["feasible"], want.feasible);
    EXPECT_TRUE(c.contains("migration_mb"));
    EXPECT_TRUE(c.contains("uplink_mb"));
  }
  EXPECT_EQ(j["num_candidates"], 10);
  EXPECT_EQ(j["num_feasible"], 10);
  EXPECT_EQ(j["choice"]["split"], d.split);
  EXPECT_EQ(j["choice"]["codec"], d.codec);
  EXPECT_EQ(d.split, 2);
  EXPECT_EQ(d.codec, "int8");
  EXPECT_DOUBLE_EQ(j["predicted_epoch_s"].get<double>(), d.predicted_epoch_seconds);
  EXPECT_EQ(j["changed"], true);
  EXPECT_EQ(j["reason"], "best");

  EXPECT_EQ(nlohmann::json::parse(Planner::toJson(d, 0))["candidates"].size(), 10u);
}

TEST(Planner, DecisionJsonIncludesTheChoiceWhenItIsNotAmongTheTop) {
  const CostModel model(bottleneckProfile(), encodedSize, {});
  PlannerOptions options;
  options.splits = {2, 3};
  options.hysteresis = 0.999;
  const auto d = Planner(model, options).plan(input(link(10, 10, 20), 3));
  ASSERT_EQ(d.split, 3);
  const auto j = nlohmann::json::parse(Planner::toJson(d, 1));
  ASSERT_EQ(j["candidates"].size(), 2u);
  EXPECT_EQ(j["candidates"][0]["split"], 2);
  EXPECT_EQ(j["candidates"][1]["split"], 3);
  EXPECT_EQ(j["candidates"][1]["rank"], 1);
}

namespace robust {

// Three useful splits on a link that alternates between 100 and 5 Mbit/s, half the time
// each (the cloud is nearly free, the edge slow):
//   split 0: the raw input (1 MiB per batch): the fastest when the link is fast, 20× slower
//            when it is slow;
//   split 2: the edge runs two stages (0.15 s), tiny transfer: the fastest when the link
//            is slow, the same when fast;
//   split 1: one stage on the edge (0.11 s), 100 KiB per batch: best in neither state,
//            but the best on average — the pair a planner should hold on this link.
ModelProfile oscillationProfile() {
  return syntheticProfile(kBatch, {8192},
                          {{0.03, 0.05, 0.0005, 0.0005, 800, 10'000, 0},
                           {0.01, 0.02, 0.0005, 0.0005, 10, 10'000, 0},
                           {0.10, 0.20, 0.0005, 0.0005, 10, 10'000, 0}});
}

const LinkEstimate kFast = link(100, 100, 10);
const LinkEstimate kSlow = link(5, 5, 10);

std::vector<LinkState> oscillating() { return {{kFast, 0.5}, {kSlow, 0.5}}; }

double epochAt(const CostModel& model, int split, const LinkEstimate& l, int staleness) {
  return model.epochSeconds(model.iteration(split, "none", l), kIterations, staleness);
}

}  // namespace robust

TEST(Planner, OscillatingLinkScenarioHasADifferentBestPairInEachStateAndAnotherOnAverage) {
  using namespace robust;
  const CostModel model(oscillationProfile(), encodedSize, {});
  const int k = 4;
  // By construction (the test's premise, checked so a cost-model change cannot void it).
  EXPECT_LT(epochAt(model, 0, kFast, k), epochAt(model, 1, kFast, k));
  EXPECT_LT(epochAt(model, 1, kFast, k), epochAt(model, 2, kFast, k));
  EXPECT_LT(epochAt(model, 2, kSlow, k), epochAt(model, 1, kSlow, k));
  EXPECT_LT(epochAt(model, 1, kSlow, k), epochAt(model, 0, kSlow, k));
  // The known optimum: the time for the epoch when the link spends half the time in each
  // state is 1 / (0.5 / t_fast + 0.5 / t_slow) (iterations per second average over time).
  const auto expected = [&](int split) {
    return 1.0 / (0.5 / epochAt(model, split, kFast, k) + 0.5 / epochAt(model, split, kSlow, k));
  };
  EXPECT_LT(expected(1), 0.9 * expected(0));
  EXPECT_LT(expected(1), 0.9 * expected(2));
  EXPECT_LT(expected(1), 0.9 * expected(3));

  PlannerOptions options;
  options.low_state_weight = 0.0;  // the pure expectation, to compare with the formula
  const Planner planner(model, options);
  for (int from = 0; from <= 3; ++from) {
    auto in = input(kFast, from, k);
    in.link_states = oscillating();
    const auto d = planner.plan(in);
    EXPECT_EQ(d.split, 1) << "from split " << from;
    EXPECT_NEAR(find(d, 1).expected_epoch_seconds, expected(1), 1e-9 * expected(1));
    EXPECT_NEAR(find(d, 0).expected_epoch_seconds, expected(0), 1e-9 * expected(0));
  }
}

TEST(Planner, HoldsTheBestPairAcrossStatesWhileAMedianOnlyPlannerChasesTheLink) {
  using namespace robust;
  const CostModel model(oscillationProfile(), encodedSize, {});
  const Planner planner(model, {});
  // A recorded history: the estimator saw the link alternate 100 ↔ 5 Mbit/s every 2 s
  // (a sample every 0.1 s), and the latest median is whichever state the link is in.
  telemetry::RateHistory up(180, 2048, 1.5);
  telemetry::RateHistory down(180, 2048, 1.5);
  int robust_switches = 0;
  int median_switches = 0;
  int robust_current = 2;
  int median_current = 2;
  for (int i = 0; i < 600; ++i) {
    const double t = 0.1 * i;
    const bool fast = static_cast<int>(t / 2.0) % 2 == 0;
    const double bps = fast ? 100e6 : 5e6;
    up.add(t, bps);
    down.add(t, bps);
    if (i % 5 != 4) continue;  // plan every half second
    const LinkEstimate now{bps, bps, 0.01};
    auto in = input(now, robust_current, 4);
    in.link_states = pipeline::linkStates(up, down, now);
    in.link_segments = pipeline::linkSegments(up, in.link_states);
    const auto d = planner.plan(in);
    if (d.split != robust_current) ++robust_switches;
    robust_current = d.split;
    const auto m = planner.plan(input(now, median_current, 4));
    if (m.split != median_current) ++median_switches;
    median_current = m.split;
  }
  EXPECT_EQ(robust_current, 1);
  EXPECT_LE(robust_switches, 2);   // at most while the history fills (the first state seen)
  EXPECT_GE(median_switches, 20);  // the median-only planner follows every state change
}

// A link with short outages: 90 % of the time at 20 Mbit/s, 10 % at 0.02 Mbit/s, where
// every pair nearly stalls. Split 0 moves 10x the bytes of split 2 but is 5x faster at 20
// Mbit/s. The caution for the slowest state must not rank the pairs by the bytes they would
// move during the outage (that picked split 2 on the simulated outage traces).
TEST(Planner, AnOutageStateSlowsEveryPairInsteadOfRankingThemByBytes) {
  const ModelProfile profile = syntheticProfile(
      kBatch, {2048}, {{0.050, 0.100, 0.0005, 0.0005, 200, 10'000, 0}, {0.050, 0.100, 0.0005, 0.0005, 200, 10'000, 0}});
  const CostModel model(profile, encodedSize, {});
  const LinkEstimate normal = link(20, 20, 10);
  const LinkEstimate outage = link(0.02, 0.02, 10);
  const auto at = [&](int split, const LinkEstimate& l) {
    return model.epochSeconds(model.iteration(split, "none", l), kIterations, 4);
  };
  // The premise: split 0 wins at the normal rate, split 2 at the outage's.
  ASSERT_LT(at(0, normal), at(2, normal));
  ASSERT_LT(at(2, outage), at(0, outage));
  const auto expected = [&](int split) { return 1.0 / (0.9 / at(split, normal) + 0.1 / at(split, outage)); };
  ASSERT_LT(expected(0), expected(2));
  const Planner planner(model, {});  // the default caution
  auto in = input(normal, 2, 4);
  in.link_states = {{normal, 0.9}, {outage, 0.1}};
  const auto d = planner.plan(in);
  EXPECT_EQ(d.split, 0) << d.why;
  EXPECT_NEAR(find(d, 0).expected_epoch_seconds, expected(0), 1e-9 * expected(0));
  // On a link whose slow state is merely slow (not an outage) the caution still favours
  // the pair that holds up there: it expects λ = 0.2 more time in the slowest state.
  const double lambda = PlannerOptions{}.low_state_weight;
  const auto cautious = [&](int split) {
    return 1.0 / ((1 - lambda) * 0.9 / at(split, normal) + ((1 - lambda) * 0.1 + lambda) / at(split, outage));
  };
  EXPECT_NEAR(find(d, 0).epoch_seconds, cautious(0), 1e-9 * cautious(0));
}

TEST(Planner, WorkAheadGainReachesTheFluidLimitsOfAQueueOfKBatches) {
  // Compute 10 it/s; the link carries 4 it/s in state 0, 30 in state 1, alternating.
  const std::vector<double> rates{4, 30};
  const auto alternating = [](double dwell, int cycles) {
    std::vector<LinkSegment> segs;
    for (int i = 0; i < cycles; ++i) {
      segs.push_back({0, dwell});
      segs.push_back({1, dwell});
    }
    return segs;
  };
  // No queue, or a history of one state: nothing to gain.
  EXPECT_EQ(workAheadGain(10, rates, alternating(1, 5), 0), 0.0);
  EXPECT_EQ(workAheadGain(10, rates, {{0, 10}}, 4), 0.0);
  // An unbounded queue: the pipeline runs at min(compute, mean link) = 10 instead of
  // 0.5 × 4 + 0.5 × 10 = 7.
  EXPECT_NEAR(workAheadGain(10, rates, alternating(1, 5), 1e9), 3.0, 1e-9);
  // A queue of 1 batch gains 1 batch per 2 s cycle however short the slow state, until
  // the cycle is so short that the deficit of the slow state (6 it/s) is the limit.
  EXPECT_NEAR(workAheadGain(10, rates, alternating(1, 5), 1), 0.5, 1e-9);
  EXPECT_NEAR(workAheadGain(10, rates, alternating(100, 5), 1), 1.0 / 200, 1e-12);
  EXPECT_NEAR(workAheadGain(10, rates, alternating(0.01, 50), 1), 3.0, 1e-9);
  // A link faster than it needs to be everywhere (or without limit) has nothing to make up.
  EXPECT_EQ(workAheadGain(10, {20, std::numeric_limits<double>::infinity()}, alternating(1, 5), 4), 0.0);
  EXPECT_THROW(workAheadGain(10, rates, {{0, 1}, {2, 1}}, 4), Error);
}

// Split 0 sends a third of a megabyte of raw input per batch to a cloud that computes 10
// batches a second: compute-bound at 100 Mbit/s, link-bound (2 batches a second) at 5.
// Split 2 keeps everything on the edge (forward, replay, backward: 0.14 s a batch), compute-
// bound at ~7 batches a second on any link.
// Per state, half the time each, split 2 wins (7 against 6 batches a second). With K = 4
// batches of work-ahead and a link that flips every 0.25 s, split 0's backlog of a slow
// stretch drains in the next fast one: it runs at its compute rate and wins; with a link
// that stays 30 s in each state the queue covers little of a slow stretch and split 2 wins.
TEST(Planner, PricesWorkingAheadFromHowLongTheLinkStaysInEachState) {
  const ModelProfile profile = syntheticProfile(
      kBatch, {2441}, {{0.045, 0.045, 0.05, 0.05, 100'000, 10'000, 0}, {0.001, 0.001, 0.0001, 0.0001, 10, 10'000, 0}});
  const CostModel model(profile, encodedSize, {});
  const LinkEstimate fast = link(100, 100, 10);
  const LinkEstimate slow = link(5, 5, 10);
  const int k = 4;
  const auto at = [&](int split, const LinkEstimate& l) {
    return model.epochSeconds(model.iteration(split, "none", l), kIterations, k);
  };
  const auto per_state = [&](int split) { return 1.0 / (0.5 / at(split, fast) + 0.5 / at(split, slow)); };
  ASSERT_LT(per_state(2), 0.95 * per_state(0));  // the premise: per state, split 2
  ASSERT_LT(at(0, fast), 0.8 * at(2, fast));     // and split 0 the faster in the fast state
  PlannerOptions options;
  options.low_state_weight = 0.0;
  const Planner planner(model, options);
  const auto plan_with_dwell = [&](double dwell) {
    auto in = input(fast, 2, k);
    in.link_states = {{fast, 0.5}, {slow, 0.5}};
    for (int i = 0; i < 40; ++i) in.link_segments.push_back({static_cast<std::size_t>(i % 2), dwell});
    return planner.plan(in);
  };
  const auto flipping = plan_with_dwell(0.25);
  EXPECT_EQ(flipping.split, 0) << flipping.why;
  EXPECT_THAT(flipping.why, HasSubstr("working ahead priced over 40 segments"));
  // The limit: split 0 at its compute rate (the link's mean is 21 batches a second).
  IterationTimes compute_only = model.iteration(0, "none", fast);
  compute_only.up = compute_only.down = 0;
  const double limit = model.epochSeconds(compute_only, kIterations, k);
  EXPECT_NEAR(find(flipping, 0).expected_epoch_seconds, limit, 0.05 * limit);
  EXPECT_GT(find(flipping, 0).work_ahead_rate, 0.0);
  EXPECT_EQ(find(flipping, 2).work_ahead_rate, 0.0);  // compute-bound in both states
  const auto lasting = plan_with_dwell(30);
  EXPECT_EQ(lasting.split, 2) << lasting.why;
  EXPECT_NEAR(find(lasting, 0).expected_epoch_seconds, per_state(0), 0.05 * per_state(0));
  // Without segments the expectation is the per-state one exactly.
  auto plain = input(fast, 2, k);
  plain.link_states = {{fast, 0.5}, {slow, 0.5}};
  EXPECT_NEAR(find(planner.plan(plain), 0).expected_epoch_seconds, per_state(0), 1e-9 * per_state(0));
  // The decision log carries the segments and each candidate's gain.
  const auto json = nlohmann::json::parse(Planner::toJson(flipping, 0));
  EXPECT_EQ(json["link_segments"], 40);
  EXPECT_DOUBLE_EQ(json["link_segment_s"].get<double>(), 0.25);
  EXPECT_GT(json["candidates"][0]["work_ahead_it_s"].get<double>(), 0.0);
}

TEST(Planner, RepartitionsOnlyWhenTheGainOverTheRemainingIterationsPaysTheMigration) {
  // Split 2 beats split 3 per iteration, but moving there costs the 40 MB of stage 2's
  // weights and momentum over a 10 Mbit/s link (~32 s): worth it for a long remainder,
  // not for a short one.
  const ModelProfile profile = syntheticProfile(kBatch, {16},
                                                {{0.001, 0.001, 0.001, 0.001, 16, 0, 0},
                                                 {0.001, 0.001, 0.001, 0.001, 16, 0, 0},
                                                 {0.010, 0.020, 0.001, 0.001, 16, 20'000'000, 0}});
  const CostModel model(profile, encodedSize, {});
  const Planner planner(model, {});
  auto in = input(link(10, 10, 10), 3, 4);
  int kept_in_band = 0;  // gain above the migration but not above migration + margin
  bool switched = false;
  for (double n = 100; n < 100'000; n *= 1.05) {
    in.iterations = static_cast<std::int64_t>(n);
    const auto d = planner.plan(in);
    const Candidate& best = d.candidates.front();
    if (d.changed) {
      switched = true;
      EXPECT_EQ(d.reason, "best");
      EXPECT_GT(d.gain_seconds, best.migration_seconds + d.margin_seconds) << n;
      EXPECT_THAT(d.why, HasSubstr("more than its migration"));
    } else {
      EXPECT_FALSE(switched) << "switched back at " << n << " iterations";
      EXPECT_EQ(d.split, 3);
      if (best.split != 3) {
        EXPECT_EQ(d.reason, "kept: within hysteresis");
        EXPECT_LE(d.gain_seconds, best.migration_seconds + d.margin_seconds);
        EXPECT_THAT(d.why, HasSubstr("not more than its migration"));
        if (d.gain_seconds > best.migration_seconds) ++kept_in_band;
      }
    }
    // The margin is relative to the remaining time of the current pair.
    EXPECT_NEAR(d.margin_seconds, best.split == 3 ? 0.0 : 0.10 * find(d, 3).total_seconds, 1e-9);
  }
  EXPECT_TRUE(switched);       // a long remainder pays the ~32 s migration
  EXPECT_GE(kept_in_band, 1);  // and the margin holds it back a little longer than break-even
  in.iterations = 200;
  EXPECT_EQ(planner.plan(in).split, 3);  // a short one does not
}

TEST(Planner, UnstablePairsAreInfeasibleAtTheirStalenessAndAbove) {
  const CostModel model(uniformProfile(), encodedSize, {});
  PlannerOptions options;
  options.codecs = {"none", "int8"};
  const Planner planner(model, options);
  // On a fast link with a slow edge the raw input upload wins.
  auto in = input(link(1000, 1000, 1), 2, 2);
  const auto before = planner.plan(in);
  ASSERT_EQ(before.split, 0);
  const std::string best_codec = before.codec;
  in.unstable.push_back({0, best_codec, 2, 1});
  const auto after = planner.plan(in);
  EXPECT_FALSE(after.split == 0 && after.codec == best_codec);
  EXPECT_FALSE(find(after, 0, best_codec).feasible);
  EXPECT_EQ(find(after, 0, best_codec).excluded, "unstable in this run");
  EXPECT_EQ(after.candidates.back().excluded, "unstable in this run");  // infeasible last
  // The same pair at a lower staleness is not excluded.
  in.staleness = 1;
  const auto lower = planner.plan(in);
  EXPECT_EQ(lower.split, 0);
  EXPECT_EQ(lower.codec, best_codec);
  // The current pair diverged: the planner leaves it and says why.
  in.staleness = 3;
  in.current_split = 0;
  in.current_codec = best_codec;
  const auto leave = planner.plan(in);
  EXPECT_TRUE(leave.changed);
  EXPECT_EQ(leave.reason, "best; current pair unstable in this run");
  const auto j = nlohmann::json::parse(Planner::toJson(leave, 0));
  EXPECT_EQ(j["unstable"][0]["split"], 0);
  bool logged = false;
  for (const auto& c : j["candidates"]) {
    if (c["split"] == 0 && c["codec"] == best_codec) logged = c["excluded"] == "unstable in this run";
  }
  EXPECT_TRUE(logged);
}

TEST(Planner, EveryCandidateUnstableFallsBackToTheLeastExcludedOne) {
  const CostModel model(uniformProfile(), encodedSize, {});
  const Planner planner(model, {});
  auto in = input(link(1000, 1000, 1), 2, 4);
  for (int p = 0; p <= 4; ++p) in.unstable.push_back({p, "none", 0, p == 3 ? 1 : 2});
  const auto d = planner.plan(in);  // does not throw
  EXPECT_EQ(d.split, 3);            // marked once, the others twice
  EXPECT_EQ(d.reason, "least excluded: every candidate unstable in this run");
  EXPECT_THAT(d.why, HasSubstr("fewest marks"));
  // Memory still binds: nothing fits is an error, unstable or not.
  PlannerOptions tight;
  tight.memory_budget_bytes = 1;
  EXPECT_THROW(Planner(model, tight).plan(in), Error);
}

}  // namespace
}  // namespace tandem::scheduler

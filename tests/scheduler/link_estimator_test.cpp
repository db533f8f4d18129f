#include "runtime/telemetry/link_estimator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <ostream>
#include <random>

namespace tandem::telemetry {
namespace {

constexpr double kMbit = 1e6;

// One direction of a link: a FIFO queue drained at `rate_bps`, then a propagation delay
// with a little jitter (order kept, as TCP keeps it). The sender's clock reads `sent`; the
// receiver's reads `offset` more.
class SimulatedLink {
 public:
  SimulatedLink(double rate_bps, double one_way_seconds, double offset, std::uint32_t seed)
      : rate_bps_(rate_bps), one_way_(one_way_seconds), offset_(offset), rng_(seed) {}

  void setRate(double rate_bps) { rate_bps_ = rate_bps; }

  // Queues `bytes` at `sent` (sender clock); returns when the last byte arrives (receiver
  // clock).
  double send(std::uint64_t bytes, double sent) {
    const double start = std::max(sent, free_at_);
    free_at_ = start + static_cast<double>(bytes) * 8.0 / rate_bps_;
    last_arrival_ = std::max(free_at_ + one_way_ + jitter_(rng_), last_arrival_);
    return last_arrival_ + offset_;
  }

  // When the link will have sent everything queued so far (sender clock).
  double idleAt() const { return free_at_; }

 private:
  double rate_bps_;
  double one_way_;
  double offset_;
  double free_at_ = 0.0;
  double last_arrival_ = 0.0;
  std::mt19937 rng_;
  std::uniform_real_distribution<double> jitter_{0.0, 3e-4};
};

enum class Traffic { kIdle, kSaturated };

void PrintTo(Traffic traffic, std::ostream* out) { *out << (traffic == Traffic::kIdle ? "idle" : "saturated"); }

// An edge and a cloud whose clocks are θ apart (cloud = edge + θ), joined by a 40 ms RTT
// link, feeding one estimator the way the edge pipeline does.
class TwoSides {
 public:
  static constexpr double kTheta = 1234.5678;
  static constexpr double kRtt = 0.040;

  TwoSides(double up_bps, double down_bps) : up_(up_bps, kRtt / 2, kTheta, 1), down_(down_bps, kRtt / 2, -kTheta, 2) {}

  LinkEstimator& estimator() { return estimator_; }
  SimulatedLink& up() { return up_; }
  SimulatedLink& down() { return down_; }

  // NTP-style pings on the quiet link; every other one is held up on the way by up to
  // 30 ms (it queued behind other traffic), which the estimator must see through.
  void ping(int count) {
    std::uniform_real_distribution<double> queueing(0.0, 0.030);
    double t0 = std::max(up_.idleAt(), down_.idleAt() - kTheta) + 1.0;
    for (int i = 0; i < count; ++i) {
      const double t1 = up_.send(64, t0) + (i % 2 == 0 ? queueing(rng_) : 0.0);  // cloud clock
      const double t2 = t1 + 0.001;
      const double t3 = down_.send(64, t2);  // edge clock
      estimator_.onPing(t0, t1, t2, t3);
      t0 = t3 + 0.01;
    }
  }

  // One message of random size (100 kB to 1 MB) each way. Idle: sent after the link has
  // been quiet for 50 ms. Saturated: sent 1 ms after the previous one, so they queue.
  void exchange(Traffic traffic) {
    std::uniform_int_distribution<std::uint64_t> size(100'000, 1'000'000);
    const auto up_bytes = size(rng_);
    up_sent_ = traffic == Traffic::kIdle ? up_.idleAt() + 0.05 : std::max(up_sent_ + 0.001, 0.0);
    estimator_.onUplink(up_bytes, up_sent_, up_.send(up_bytes, up_sent_));
    const auto down_bytes = size(rng_);
    down_sent_ = traffic == Traffic::kIdle ? down_.idleAt() + 0.05 : down_sent_ + 0.001;
    estimator_.onDownlink(down_bytes, down_sent_, down_.send(down_bytes, down_sent_));
  }

 private:
  SimulatedLink up_;
  SimulatedLink down_;
  LinkEstimator estimator_;
  std::mt19937 rng_{99};
  double up_sent_ = 0.0;    // edge clock
  double down_sent_ = 0.0;  // cloud clock
};

double relativeError(std::optional<double> estimate, double truth) {
  return estimate ? std::abs(*estimate - truth) / truth : std::numeric_limits<double>::infinity();
}

TEST(LinkEstimator, RttAndClockOffsetFromTheLeastQueuedPing) {
  TwoSides s(50 * kMbit, 20 * kMbit);
  EXPECT_FALSE(s.estimator().hasRtt());
  s.ping(10);
  ASSERT_TRUE(s.estimator().hasRtt());
  // 64 B each way adds tens of µs to the 40 ms, the jitter at most 0.6 ms.
  EXPECT_NEAR(s.estimator().rttSeconds(), TwoSides::kRtt, 0.01 * TwoSides::kRtt);
  EXPECT_NEAR(s.estimator().clockOffsetSeconds(), TwoSides::kTheta, 0.5e-3);
}

TEST(LinkEstimator, IgnoresImpossiblePings) {
  LinkEstimator e;
  e.onPing(0.0, 5.0, 5.5, 0.2);  // the cloud held it longer than the whole round trip
  e.onPing(0.0, std::nan(""), 1.0, 2.0);
  EXPECT_FALSE(e.hasRtt());
}

TEST(LinkEstimator, RttFollowsTheRecentPingsOnly) {
  LinkEstimatorOptions options;
  options.ping_window = 4;
  LinkEstimator e(options);
  e.onPing(0.0, 0.0, 0.0, 0.010);
  EXPECT_DOUBLE_EQ(e.rttSeconds(), 0.010);
  for (int i = 0; i < 3; ++i) e.onPing(1.0, 1.0, 1.0, 1.050);
  EXPECT_DOUBLE_EQ(e.rttSeconds(), 0.010);  // still the best of the last four
  e.onPing(2.0, 2.0, 2.0, 2.050);
  EXPECT_NEAR(e.rttSeconds(), 0.050, 1e-12);  // the 10 ms ping has left the window
}

class SteadyState : public ::testing::TestWithParam<Traffic> {};

TEST_P(SteadyState, TracksBothDirectionsWithin15Percent) {
  for (const auto& [up_mbps, down_mbps] : {std::pair{50.0, 20.0}, std::pair{2.0, 8.0}, std::pair{400.0, 400.0}}) {
    TwoSides s(up_mbps * kMbit, down_mbps * kMbit);
    s.ping(10);
    for (int i = 0; i < 40; ++i) {
      s.exchange(GetParam());
      if (i < 5) continue;  // the median needs a few samples first
      EXPECT_LT(relativeError(s.estimator().uplinkBps(), up_mbps * kMbit), 0.15) << up_mbps << " up, message " << i;
      EXPECT_LT(relativeError(s.estimator().downlinkBps(), down_mbps * kMbit), 0.15)
          << down_mbps << " down, message " << i;
    }
    EXPECT_EQ(s.estimator().uplinkSamples(), 40u);
    EXPECT_EQ(s.estimator().downlinkSamples(), 40u);
  }
}

TEST_P(SteadyState, FollowsAStepChangeWithinFiveMessages) {
  TwoSides s(50 * kMbit, 50 * kMbit);
  s.ping(10);
  for (int i = 0; i < 20; ++i) s.exchange(GetParam());
  EXPECT_LT(relativeError(s.estimator().uplinkBps(), 50 * kMbit), 0.15);
  s.up().setRate(5 * kMbit);
  s.down().setRate(5 * kMbit);
  for (int i = 1; i <= 20; ++i) {
    s.exchange(GetParam());
    if (i < 5) continue;
    EXPECT_LT(relativeError(s.estimator().uplinkBps(), 5 * kMbit), 0.15) << "message " << i << " after the drop";
    EXPECT_LT(relativeError(s.estimator().downlinkBps(), 5 * kMbit), 0.15) << "message " << i << " after the drop";
  }
}

INSTANTIATE_TEST_SUITE_P(LinkEstimator, SteadyState, ::testing::Values(Traffic::kIdle, Traffic::kSaturated),
                         [](const auto& info) { return info.param == Traffic::kIdle ? "Idle" : "Saturated"; });

TEST(LinkEstimator, IgnoresTransfersTooShortToTime) {
  TwoSides s(50 * kMbit, 50 * kMbit);
  s.ping(5);
  for (int i = 0; i < 10; ++i) s.exchange(Traffic::kIdle);
  const auto before = s.estimator().uplinkBps();
  const auto samples = s.estimator().uplinkSamples();
  // 100 B at 50 Mbit/s is 16 µs on the wire: less than the clock and RTT errors.
  for (int i = 0; i < 10; ++i) {
    const double sent = s.up().idleAt() + 0.05;
    s.estimator().onUplink(100, sent, s.up().send(100, sent));
  }
  EXPECT_EQ(s.estimator().uplinkSamples(), samples);
  EXPECT_EQ(s.estimator().uplinkBps(), before);
}

TEST(LinkEstimator, RemembersHowMuchFasterTheDownlinkWasWhenLastMeasured) {
  LinkEstimator e;
  EXPECT_FALSE(e.downlinkPerUplink());
  e.onDownlink(100'000, 0.0, 0.1);  // no uplink estimate yet: nothing to compare with
  EXPECT_FALSE(e.downlinkPerUplink());
  e.onUplink(100'000, 1.0, 1.08);                        // 10 Mbit/s
  e.onDownlink(100'000, 2.0, 2.0 + 100'000 * 8 / 30e6);  // 30 Mbit/s
  ASSERT_TRUE(e.downlinkPerUplink());
  EXPECT_NEAR(*e.downlinkPerUplink(), 3.0, 1e-6);
  e.onDownlink(100, 3.0, 3.1);  // too small to time: the ratio stays
  EXPECT_NEAR(*e.downlinkPerUplink(), 3.0, 1e-6);
}

TEST(LinkEstimator, AQueuedMessageStartsWhenThePreviousOneFinished) {
  // Same clocks, no RTT: the arithmetic is plain. 125 000 B = 1 Mbit.
  LinkEstimatorOptions one;
  one.window = 1;  // the estimate is the last sample
  LinkEstimator e(one);
  e.onUplink(125'000, 0.0, 0.1);
  EXPECT_NEAR(*e.uplinkBps(), 10 * kMbit, 1e-6 * kMbit);
  e.onUplink(125'000, 0.0005, 0.2);  // queued behind the first: on the wire from 0.1 s
  EXPECT_NEAR(*e.uplinkBps(), 10 * kMbit, 1e-6 * kMbit);
  // Too short to time (150 µs), but the link was busy with it: the next one starts after.
  e.onUplink(10, 0.3, 0.30015);
  EXPECT_EQ(e.uplinkSamples(), 2u);
  e.onUplink(125'000, 0.3001, 0.40015);
  EXPECT_NEAR(*e.uplinkBps(), 10 * kMbit, 1e-6 * kMbit);
  EXPECT_EQ(e.uplinkSamples(), 3u);
  EXPECT_FALSE(e.downlinkBps());

  // After resetSpacing the previous arrival is forgotten: a message is timed from when it
  // was sent (what the edge wants after a pause, when nothing was queued).
  e.resetSpacing();
  e.onUplink(125'000, 0.4, 0.6);
  EXPECT_NEAR(*e.uplinkBps(), 5 * kMbit, 1e-6 * kMbit);
}

TEST(LinkEstimator, MedianIgnoresASingleOutlier) {
  LinkEstimator e;  // window 5
  const double seconds_per_mbit = 0.1;
  for (int i = 0; i < 4; ++i) {
    const double t = 10.0 * i;
    e.onDownlink(125'000, t, t + seconds_per_mbit);  // 10 Mbit/s
  }
  e.onDownlink(125'000, 100.0, 100.0 + 10 * seconds_per_mbit);  // one stall: 1 Mbit/s
  EXPECT_NEAR(*e.downlinkBps(), 10 * kMbit, 1e-6 * kMbit);
  EXPECT_EQ(e.downlinkSamples(), 5u);
}

TEST(RateHistory, StatisticsAreTimeWeighted) {
  // 8 s slow (10 Mbit/s, one sample per second) then 2 s fast (50 Mbit/s, ten samples per
  // second, as a saturated link reports more often when fast): by message count the fast
  // state dominates, by time the slow one does.
  RateHistory h(600, 4096, 1.5);
  double t = 0.0;
  for (int round = 0; round < 5; ++round) {
    for (int i = 0; i < 8; ++i) h.add(t += 1.0, 10 * kMbit);
    for (int i = 0; i < 20; ++i) h.add(t += 0.1, 50 * kMbit);
  }
  EXPECT_EQ(h.size(), 140u);
  EXPECT_DOUBLE_EQ(h.quantile(0.5), 10 * kMbit);
  EXPECT_DOUBLE_EQ(h.quantile(0.1), 10 * kMbit);
  EXPECT_DOUBLE_EQ(h.quantile(0.9), 50 * kMbit);
  // Each sample counts the gap before it: a slow one 1 s, a fast one 0.1 s, so 40 s slow
  // against 10 s fast (the first sample counts the median gap).
  const double slow = 40 * 1.0;
  const double fast = 100 * 0.1;
  const double mean = (slow * 10 + fast * 50) / (slow + fast);
  EXPECT_NEAR(h.mean(), mean * kMbit, 0.02 * mean * kMbit);
  EXPECT_GT(h.stddev(), 15 * kMbit);
  EXPECT_GT(h.coefficientOfVariation(), 0.5);
  EXPECT_DOUBLE_EQ(h.minimum(), 10 * kMbit);
  EXPECT_EQ(h.changes(), 9u);  // slow → fast five times, fast → slow four times
  EXPECT_NEAR(h.changesPerMinute(), 9.0 * 60.0 / h.spanSeconds(), 1e-9);
}

TEST(RateHistory, RecentMinimumWindowAndSince) {
  RateHistory h(30, 4096, 1.5);
  h.add(-1000, 1 * kMbit);  // long expired
  for (int i = 0; i <= 100; ++i) h.add(i, i == 50 ? 1 * kMbit : i == 90 ? 3 * kMbit : 20 * kMbit);
  // The 30 s window: samples 70..100, so the dip at 50 s has expired.
  EXPECT_DOUBLE_EQ(h.samples().front().time, 70.0);
  EXPECT_DOUBLE_EQ(h.minimum(), 3 * kMbit);
  EXPECT_DOUBLE_EQ(h.recentMinimum(5), 20 * kMbit);
  EXPECT_DOUBLE_EQ(h.recentMinimum(15), 3 * kMbit);
  EXPECT_EQ(h.changes(), 2u);  // down to 3 and back up
  const auto tail = h.since(95);
  EXPECT_EQ(tail.size(), 6u);
  EXPECT_EQ(tail.changes(), 0u);
  EXPECT_DOUBLE_EQ(RateHistory().quantile(0.5), 0.0);  // empty: zeros
}

TEST(RateHistory, SmallJitterIsNotAStateChange) {
  RateHistory h(600, 4096, 1.5);
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> jitter(0.8, 1.2);
  for (int i = 0; i < 200; ++i) h.add(i * 0.5, 40 * kMbit * jitter(rng));
  EXPECT_EQ(h.changes(), 0u);
  EXPECT_LT(h.coefficientOfVariation(), 0.15);
  EXPECT_NEAR(h.quantile(0.5), 40 * kMbit, 4 * kMbit);
}

TEST(LinkEstimator, KeepsAHistoryBeyondTheMedianWindowInTheEdgeClock) {
  TwoSides sides(20 * kMbit, 80 * kMbit);
  sides.ping(5);
  for (int i = 0; i < 40; ++i) sides.exchange(Traffic::kIdle);
  const auto& est = sides.estimator();
  const auto& up = est.uplinkHistory();
  EXPECT_EQ(up.size(), 40u);  // the median keeps 5, the history all
  EXPECT_EQ(est.downlinkHistory().size(), 40u);
  EXPECT_NEAR(up.quantile(0.5), 20 * kMbit, 3 * kMbit);
  EXPECT_NEAR(est.downlinkHistory().quantile(0.5), 80 * kMbit, 12 * kMbit);
  // Uplink samples are stamped in the edge's clock (where this run's edge times are a few
  // seconds), not the cloud's (θ = 1234 s ahead).
  EXPECT_LT(up.samples().back().time, 100.0);
  EXPECT_GT(up.samples().back().time, 0.0);
}

TEST(RateHistory, APauseInTrafficDoesNotMakeOneSampleStandForIt) {
  RateHistory h(600, 4096, 1.5);
  for (int i = 0; i < 50; ++i) h.add(i * 0.1, 30 * kMbit);
  h.add(300, 1 * kMbit);  // after a 5-minute pause (an evaluation, say): capped at 20 × 0.1 s
  EXPECT_DOUBLE_EQ(h.quantile(0.5), 30 * kMbit);
  EXPECT_DOUBLE_EQ(h.minimum(), 1 * kMbit);
}

}  // namespace
}  // namespace tandem::telemetry

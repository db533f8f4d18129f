#pragma once
// Estimates of the link (uplink and downlink bandwidth, round-trip time) from the
// training traffic itself, plus small probes when the link is idle.
//
// Clocks: each side stamps times with its own steady clock, in seconds. The clock offset
// between the sides (θ = cloud − edge) and the RTT come from ping exchanges (NTP-style,
// the sample with the smallest RTT wins: it queued least, so its offset is the most
// accurate). A message of S bytes sent at s (sender clock) that arrives complete at a
// (receiver clock) occupied the link from
//     start = max(s + θ', previous arrival − rtt/2)   to   end = a − rtt/2
// (θ' converts the sender's clock to the receiver's: +θ up, −θ down), so the sample is
// S·8/(end − start). This is right both for a message sent on an idle link (it starts
// when sent) and for one that queued behind the previous one on a saturated link (it
// starts when the previous one finished serialising); back-to-back samples do not even
// depend on θ or the RTT. Samples are smoothed with a median of the last few, which
// ignores a single outlier and follows a step change after ⌈window/2⌉ samples.
//
// Besides the median, each direction keeps a longer history (RateHistory: the samples of
// the last `history_seconds`, stamped with the edge's clock) so the planner can see what
// the link did: its time-weighted quantiles, spread, recent minimum and how often it
// moved between states, not only where it is now.
//
// Before the first ping θ and the RTT are taken as 0 (right when both sides share a
// clock, e.g. two processes on one host); callers should ping first.
//
// Threading: one thread (the edge compute thread) calls everything.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

namespace tandem::telemetry {

struct LinkEstimatorOptions {
  std::size_t window = 5;              // samples in the median (0 counts as 1)
  double min_transfer_seconds = 2e-4;  // shorter transfers carry no rate information
  // Smaller messages carry no rate information either: their transfer time is lost in
  // clock and scheduling noise (a 100-byte reply would read as a slow link).
  std::uint64_t min_bytes = 8192;
  // The RTT and offset come from the smallest-RTT ping among the last `ping_window` pings
  // (0: all of them), so an estimate can rise again when the path's RTT grows or the
  // clocks drift apart over a long run.
  std::size_t ping_window = 16;
  // The history behind RateHistory: samples of the last `history_seconds` (by the time
  // they arrived), at most `history_samples` per direction.
  double history_seconds = 180.0;
  std::size_t history_samples = 2048;
  // A sample that differs from the current state's rate by at least this factor (either
  // way) starts a new state (RateHistory::changes()).
  double change_ratio = 1.5;
};

// What one direction of the link did over the history window. Samples carry the time
// they were taken (edge clock, seconds); each one stands for the time since the one
// before it (capped at 20× the median gap, so a pause in traffic, e.g. an evaluation, does
// not make one sample stand for minutes, while the longer gaps of a slow state count), which makes the statistics
// time-weighted: a link that spends 80% of the time slow has its median in the slow state however many messages the
// fast periods carried.
class RateHistory {
 public:
  struct Sample {
    double time = 0.0;  // seconds, edge clock
    double bps = 0.0;
  };

  RateHistory() = default;
  RateHistory(double max_seconds, std::size_t max_samples, double change_ratio);

  // Samples must come in time order (an earlier one is taken as simultaneous).
  void add(double time, double bps);

  bool empty() const { return samples_.empty(); }
  std::size_t size() const { return samples_.size(); }
  const std::deque<Sample>& samples() const { return samples_; }
  double spanSeconds() const;  // newest − oldest sample time

  // Time-weighted statistics over the window; all 0 when empty.
  double quantile(double q) const;  // q in [0, 1]; 0.5: the median
  double mean() const;
  double stddev() const;
  double coefficientOfVariation() const;  // stddev / mean
  double minimum() const;
  // Smallest sample taken in the last `seconds` before the newest one.
  double recentMinimum(double seconds) const;
  // State changes in the window (a sample off the current state's rate by change_ratio
  // or more starts a new state), and per minute of the window's span.
  std::size_t changes() const;
  double changesPerMinute() const;

  // The part of the history taken at or after `time`.
  RateHistory since(double time) const;

  // The time each sample stands for (see the class comment), one per sample.
  std::vector<double> sampleSeconds() const { return weights(); }

 private:
  std::vector<double> weights() const;  // one per sample, see the class comment

  double max_seconds_ = 180.0;
  std::size_t max_samples_ = 2048;
  double change_ratio_ = 1.5;
  std::deque<Sample> samples_;
};

class LinkEstimator {
 public:
  explicit LinkEstimator(LinkEstimatorOptions options = {});

  // A ping: edge sent at t0, cloud received at t1 and replied at t2, edge received at t3.
  // rtt = (t3 − t0) − (t2 − t1), θ = ((t1 − t0) + (t2 − t3)) / 2. A ping with a negative
  // or non-finite RTT is ignored.
  void onPing(double t0, double t1, double t2, double t3);

  // Messages of one direction must be reported in the order they were sent (the link is
  // FIFO). A transfer shorter than min_transfer_seconds gives no sample but still counts
  // as the previous arrival of the next one.
  //
  // A message of `bytes` from edge to cloud: sent at `sent_edge` (edge clock), arrived
  // complete at `arrived_cloud` (cloud clock).
  void onUplink(std::uint64_t bytes, double sent_edge, double arrived_cloud);
  // A message of `bytes` from cloud to edge: sent at `sent_cloud` (cloud clock), arrived at
  // `arrived_edge` (edge clock).
  void onDownlink(std::uint64_t bytes, double sent_cloud, double arrived_edge);

  // Forgets previous-arrival state (after a pause in traffic, e.g. an epoch boundary).
  void resetSpacing();

  bool hasRtt() const { return rtt_.has_value(); }
  double rttSeconds() const { return rtt_.value_or(0.0); }
  double clockOffsetSeconds() const { return offset_; }  // cloud − edge
  std::optional<double> uplinkBps() const;               // bits per second; none before a sample
  std::optional<double> downlinkBps() const;
  std::size_t uplinkSamples() const { return up_count_; }  // samples taken so far
  std::size_t downlinkSamples() const { return down_count_; }
  const RateHistory& uplinkHistory() const { return up_.history; }
  const RateHistory& downlinkHistory() const { return down_.history; }
  // The latest downlink sample over the uplink estimate when it was taken: how much faster
  // the downlink was the last time it was measured. A pair whose downlink carries only
  // small replies (split 0: acknowledgements) never measures it again after the start-up
  // probe, so the edge scheduler scales the uplink by this instead of keeping the probe's
  // downlink rate. None before a downlink sample taken while the uplink had an estimate.
  std::optional<double> downlinkPerUplink() const { return down_per_up_; }

 private:
  struct Direction {
    std::deque<double> samples;  // bits per second
    std::optional<double> last_arrival;
    RateHistory history;
  };
  struct Ping {
    double rtt = 0.0;
    double offset = 0.0;
  };
  // `to_edge_clock` converts the receiver's clock to the edge's (history times).
  void add(Direction& d, std::size_t& count, std::uint64_t bytes, double sent_in_receiver_clock, double arrived,
           double to_edge_clock);
  static std::optional<double> median(const std::deque<double>& samples);

  LinkEstimatorOptions options_;
  std::deque<Ping> pings_;
  std::optional<double> rtt_;
  double offset_ = 0.0;
  Direction up_;
  Direction down_;
  std::size_t up_count_ = 0;
  std::size_t down_count_ = 0;
  std::optional<double> down_per_up_;
};

}  // namespace tandem::telemetry

#include "runtime/telemetry/link_estimator.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace tandem::telemetry {

RateHistory::RateHistory(double max_seconds, std::size_t max_samples, double change_ratio)
    : max_seconds_(max_seconds), max_samples_(std::max<std::size_t>(max_samples, 1)), change_ratio_(change_ratio) {}

void RateHistory::add(double time, double bps) {
  if (!std::isfinite(time) || !std::isfinite(bps) || bps < 0) return;
  if (!samples_.empty()) time = std::max(time, samples_.back().time);
  samples_.push_back({time, bps});
  while (samples_.size() > max_samples_) samples_.pop_front();
  while (max_seconds_ > 0 && samples_.size() > 1 && samples_.front().time < time - max_seconds_) samples_.pop_front();
}

double RateHistory::spanSeconds() const {
  return samples_.empty() ? 0.0 : samples_.back().time - samples_.front().time;
}

// A message takes longer when the link is slow, so slow states have longer gaps between
// samples; only a much longer gap (a pause in traffic) is capped.
constexpr double kMaxGapFactor = 20.0;

std::vector<double> RateHistory::weights() const {
  std::vector<double> gaps;
  for (std::size_t i = 1; i < samples_.size(); ++i) gaps.push_back(samples_[i].time - samples_[i - 1].time);
  std::vector<double> sorted = gaps;
  std::sort(sorted.begin(), sorted.end());
  const double median_gap = sorted.empty() ? 0.0 : sorted[sorted.size() / 2];
  std::vector<double> w(samples_.size(), 1.0);
  if (median_gap <= 0) return w;  // simultaneous samples (or one): equal weights
  w[0] = median_gap;
  for (std::size_t i = 1; i < samples_.size(); ++i) w[i] = std::clamp(gaps[i - 1], 0.0, kMaxGapFactor * median_gap);
  if (std::all_of(w.begin(), w.end(), [](double x) { return x <= 0; })) std::fill(w.begin(), w.end(), 1.0);
  return w;
}

double RateHistory::quantile(double q) const {
  if (samples_.empty()) return 0.0;
  const auto w = weights();
  std::vector<std::size_t> order(samples_.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return samples_[a].bps < samples_[b].bps; });
  double total = 0.0;
  for (double x : w) total += x;
  const double target = std::clamp(q, 0.0, 1.0) * total;
  double seen = 0.0;
  for (std::size_t i : order) {
    seen += w[i];
    if (seen >= target && seen > 0) return samples_[i].bps;
  }
  return samples_[order.back()].bps;
}

double RateHistory::mean() const {
  if (samples_.empty()) return 0.0;
  const auto w = weights();
  double total = 0.0;
  double sum = 0.0;
  for (std::size_t i = 0; i < samples_.size(); ++i) {
    total += w[i];
    sum += w[i] * samples_[i].bps;
  }
  return total > 0 ? sum / total : 0.0;
}

double RateHistory::stddev() const {
  if (samples_.size() < 2) return 0.0;
  const auto w = weights();
  const double m = mean();
  double total = 0.0;
  double sum = 0.0;
  for (std::size_t i = 0; i < samples_.size(); ++i) {
    total += w[i];
    sum += w[i] * (samples_[i].bps - m) * (samples_[i].bps - m);
  }
  return total > 0 ? std::sqrt(sum / total) : 0.0;
}

double RateHistory::coefficientOfVariation() const {
  const double m = mean();
  return m > 0 ? stddev() / m : 0.0;
}

double RateHistory::minimum() const {
  double lo = 0.0;
  for (std::size_t i = 0; i < samples_.size(); ++i) lo = i == 0 ? samples_[i].bps : std::min(lo, samples_[i].bps);
  return lo;
}

double RateHistory::recentMinimum(double seconds) const {
  if (samples_.empty()) return 0.0;
  const double from = samples_.back().time - seconds;
  double lo = samples_.back().bps;
  for (const auto& s : samples_) {
    if (s.time >= from) lo = std::min(lo, s.bps);
  }
  return lo;
}

std::size_t RateHistory::changes() const {
  std::size_t n = 0;
  double level = 0.0;
  for (std::size_t i = 0; i < samples_.size(); ++i) {
    const double x = samples_[i].bps;
    if (i == 0) {
      level = x;
      continue;
    }
    const double hi = std::max(x, level);
    const double lo = std::min(x, level);
    if (lo <= 0 ? hi > 0 : hi / lo >= change_ratio_) {
      ++n;
      level = x;
    }
  }
  return n;
}

double RateHistory::changesPerMinute() const {
  const double span = spanSeconds();
  return span > 0 ? static_cast<double>(changes()) * 60.0 / span : 0.0;
}

RateHistory RateHistory::since(double time) const {
  RateHistory out(max_seconds_, max_samples_, change_ratio_);
  for (const auto& s : samples_) {
    if (s.time >= time) out.samples_.push_back(s);
  }
  return out;
}

LinkEstimator::LinkEstimator(LinkEstimatorOptions options) : options_(options) {
  options_.window = std::max<std::size_t>(options_.window, 1);
  up_.history = RateHistory(options_.history_seconds, options_.history_samples, options_.change_ratio);
  down_.history = RateHistory(options_.history_seconds, options_.history_samples, options_.change_ratio);
}

void LinkEstimator::onPing(double t0, double t1, double t2, double t3) {
  const double rtt = (t3 - t0) - (t2 - t1);
  const double offset = ((t1 - t0) + (t2 - t3)) / 2.0;
  if (!std::isfinite(rtt) || !std::isfinite(offset) || rtt < 0) return;
  pings_.push_back({rtt, offset});
  if (options_.ping_window > 0 && pings_.size() > options_.ping_window) pings_.pop_front();
  const auto best =
      std::min_element(pings_.begin(), pings_.end(), [](const Ping& a, const Ping& b) { return a.rtt < b.rtt; });
  rtt_ = best->rtt;
  offset_ = best->offset;
}

void LinkEstimator::onUplink(std::uint64_t bytes, double sent_edge, double arrived_cloud) {
  add(up_, up_count_, bytes, sent_edge + offset_, arrived_cloud, -offset_);
}

void LinkEstimator::onDownlink(std::uint64_t bytes, double sent_cloud, double arrived_edge) {
  const std::size_t before = down_count_;
  add(down_, down_count_, bytes, sent_cloud - offset_, arrived_edge, 0.0);
  const auto up = uplinkBps();
  if (down_count_ > before && up && *up > 0) down_per_up_ = down_.samples.back() / *up;
}

void LinkEstimator::resetSpacing() {
  up_.last_arrival.reset();
  down_.last_arrival.reset();
}

void LinkEstimator::add(Direction& d, std::size_t& count, std::uint64_t bytes, double sent_in_receiver_clock,
                        double arrived, double to_edge_clock) {
  if (!std::isfinite(sent_in_receiver_clock) || !std::isfinite(arrived)) return;
  const double half_rtt = rttSeconds() / 2.0;
  double start = sent_in_receiver_clock;
  // Queued behind the previous message: the link was busy with it until it finished
  // serialising, one propagation delay before it arrived.
  if (d.last_arrival) start = std::max(start, *d.last_arrival - half_rtt);
  const double end = arrived - half_rtt;
  d.last_arrival = std::max(arrived, d.last_arrival.value_or(arrived));
  const double busy = end - start;
  if (bytes < std::max<std::uint64_t>(1, options_.min_bytes) || !(busy >= options_.min_transfer_seconds)) return;
  const double bps = static_cast<double>(bytes) * 8.0 / busy;
  d.samples.push_back(bps);
  d.history.add(arrived + to_edge_clock, bps);
  while (d.samples.size() > options_.window) d.samples.pop_front();
  ++count;
}

std::optional<double> LinkEstimator::median(const std::deque<double>& samples) {
  if (samples.empty()) return std::nullopt;
  std::vector<double> sorted(samples.begin(), samples.end());
  std::sort(sorted.begin(), sorted.end());
  const std::size_t mid = sorted.size() / 2;
  return sorted.size() % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2.0;
}

std::optional<double> LinkEstimator::uplinkBps() const { return median(up_.samples); }

std::optional<double> LinkEstimator::downlinkBps() const { return median(down_.samples); }

}  // namespace tandem::telemetry

#include "runtime/telemetry/link_estimator.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace tandem::telemetry {

LinkEstimator::LinkEstimator(LinkEstimatorOptions options) : options_(options) {
  options_.window = std::max<std::size_t>(options_.window, 1);
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
  add(up_, up_count_, bytes, sent_edge + offset_, arrived_cloud);
}

void LinkEstimator::onDownlink(std::uint64_t bytes, double sent_cloud, double arrived_edge) {
  add(down_, down_count_, bytes, sent_cloud - offset_, arrived_edge);
}

void LinkEstimator::resetSpacing() {
  up_.last_arrival.reset();
  down_.last_arrival.reset();
}

void LinkEstimator::add(Direction& d, std::size_t& count, std::uint64_t bytes, double sent_in_receiver_clock,
                        double arrived) {
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
  d.samples.push_back(static_cast<double>(bytes) * 8.0 / busy);
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

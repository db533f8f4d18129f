#include "runtime/scheduler/cost_model.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "runtime/common/error.h"

namespace tandem::scheduler {

double IterationTimes::bottleneck() const { return std::max({edge, up, cloud, down}); }

double IterationTimes::sum() const { return edge + up + cloud + down + latency; }

namespace {

// bytes over a link of `bps`; an unmeasured link (bps <= 0) charges nothing.
double transferSeconds(std::int64_t bytes, double bps) {
  return bps > 0 ? static_cast<double>(bytes) * 8.0 / bps : 0.0;
}

void checkPerStage(const std::vector<std::int64_t>& v, const char* name, int n) {
  if (static_cast<int>(v.size()) != n) {
    throw Error(detail::concat("model profile: ", name, " has ", v.size(), " entries for ", n, " stages"));
  }
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (v[i] < 0) throw Error(detail::concat("model profile: ", name, "[", i, "] = ", v[i], " is negative"));
  }
}

void checkSide(const SideProfile& side, const char* role, int n) {
  if (static_cast<int>(side.forward_seconds.size()) != n || static_cast<int>(side.backward_seconds.size()) != n) {
    throw Error(detail::concat("model profile: the ", role, " profile times ", side.forward_seconds.size(),
                               " forward and ", side.backward_seconds.size(), " backward stages; the model has ", n,
                               " (every side must time every stage, so that every split can be priced)"));
  }
}

}  // namespace

CostModel::CostModel(ModelProfile profile, EncodedSizeFn encoded_size, CostModelOptions options)
    : profile_(std::move(profile)), encoded_size_(std::move(encoded_size)), options_(std::move(options)) {
  const int n = profile_.num_stages;
  if (n <= 0) throw Error(detail::concat("model profile: ", n, " stages"));
  if (profile_.batch_size <= 0) throw Error(detail::concat("model profile: batch size ", profile_.batch_size));
  if (static_cast<int>(profile_.boundary_shapes.size()) != n + 1) {
    throw Error(detail::concat("model profile: ", profile_.boundary_shapes.size(), " boundary shapes for ", n,
                               " stages (expected ", n + 1, ": the input, each stage's output)"));
  }
  for (std::size_t b = 0; b < profile_.boundary_shapes.size(); ++b) {
    for (auto d : profile_.boundary_shapes[b]) {
      if (d <= 0) throw Error(detail::concat("model profile: boundary ", b, " has a dimension of ", d));
    }
  }
  checkPerStage(profile_.parameter_bytes, "parameter_bytes", n);
  if (profile_.buffer_bytes.empty()) profile_.buffer_bytes.assign(static_cast<std::size_t>(n), 0);
  checkPerStage(profile_.buffer_bytes, "buffer_bytes", n);
  if (profile_.optimizer_state_bytes.empty()) {
    // sgd: the momentum buffer; adam: first and second moments.
    const std::int64_t copies = options_.optimizer == config::OptimizerKind::kAdam ? 2 : 1;
    for (auto bytes : profile_.parameter_bytes) profile_.optimizer_state_bytes.push_back(copies * bytes);
  }
  checkPerStage(profile_.optimizer_state_bytes, "optimizer_state_bytes", n);
  checkSide(profile_.edge, "edge", n);
  checkSide(profile_.cloud, "cloud", n);
  if (!encoded_size_) throw Error("cost model: no encoded-size function");
  if (!(options_.codec_seconds_per_byte >= 0) || !std::isfinite(options_.codec_seconds_per_byte)) {
    throw Error(detail::concat("cost model: codec_seconds_per_byte = ", options_.codec_seconds_per_byte));
  }
  if (options_.input_element_bytes <= 0 || options_.input_element_bytes > 8) {
    throw Error(detail::concat("cost model: input_element_bytes = ", options_.input_element_bytes, " (1..8)"));
  }
  for (const auto* side : {&profile_.edge, &profile_.cloud}) {
    for (const auto& [codec, cost] : side->codec_seconds_per_byte) {
      if (!(cost >= 0) || !std::isfinite(cost)) {
        throw Error(detail::concat("model profile: codec ", codec, " costs ", cost, " s per byte on ", side->host));
      }
    }
  }
}

void CostModel::checkSplit(int split) const {
  TANDEM_ENFORCE(split >= 0 && split <= profile_.num_stages, "split ", split, " of a model with ", profile_.num_stages,
                 " stages");
}

std::vector<std::int64_t> CostModel::batchShape(int boundary) const {
  std::vector<std::int64_t> shape{profile_.batch_size};
  const auto& s = profile_.boundary_shapes[static_cast<std::size_t>(boundary)];
  shape.insert(shape.end(), s.begin(), s.end());
  return shape;
}

std::int64_t CostModel::boundaryPayloadBytes(int split, const std::string& codec) const {
  if (split == 0 && codec == "none") {
    std::int64_t numel = 1;
    for (auto d : batchShape(0)) numel *= d;
    return numel * options_.input_element_bytes;  // the dataset's native samples
  }
  return encoded_size_(codec, batchShape(split));
}

double CostModel::codecSecondsPerByte(const SideProfile& side, const std::string& codec) const {
  const auto it = side.codec_seconds_per_byte.find(codec);
  return it != side.codec_seconds_per_byte.end() ? it->second : options_.codec_seconds_per_byte;
}

std::int64_t CostModel::uplinkBytes(int split, const std::string& codec) const {
  checkSplit(split);
  const std::int64_t labels = 8 * profile_.batch_size;  // int64 class indices
  return boundaryPayloadBytes(split, codec) + labels + kUplinkOverheadBytes;
}

std::int64_t CostModel::downlinkBytes(int split) const {
  checkSplit(split);
  const std::int64_t gradient = split > 0 ? encoded_size_(options_.downlink_codec, batchShape(split)) : 0;
  return gradient + kDownlinkOverheadBytes;
}

IterationTimes CostModel::iteration(int split, const std::string& codec, const LinkEstimate& link) const {
  checkSplit(split);
  const auto p = static_cast<std::size_t>(split);
  const auto n = static_cast<std::size_t>(profile_.num_stages);
  const double forward_passes = options_.replay == config::Replay::kRecompute ? 2.0 : 1.0;

  IterationTimes t;
  for (std::size_t i = 0; i < p; ++i) {
    t.edge += profile_.edge.forward_seconds[i] * forward_passes + profile_.edge.backward_seconds[i];
    t.edge_forward += profile_.edge.forward_seconds[i];
  }
  for (std::size_t i = p; i < n; ++i) t.cloud += profile_.cloud.forward_seconds[i] + profile_.cloud.backward_seconds[i];

  // Half of encode+decode on each side for each codec in use, at that side's measured
  // cost (see CostModelOptions).
  const double half_bytes = 0.5 * static_cast<double>(profile_.activationBytes(split));
  if (codec != "none") {
    const double edge_half = half_bytes * codecSecondsPerByte(profile_.edge, codec);
    t.edge += edge_half;
    t.edge_forward += edge_half;  // encoding precedes the upload
    t.cloud += half_bytes * codecSecondsPerByte(profile_.cloud, codec);
  }
  if (split > 0 && options_.downlink_codec != "none") {
    t.edge += half_bytes * codecSecondsPerByte(profile_.edge, options_.downlink_codec);
    t.cloud += half_bytes * codecSecondsPerByte(profile_.cloud, options_.downlink_codec);
  }

  t.up = transferSeconds(uplinkBytes(split, codec), link.uplink_bps);
  t.down = transferSeconds(downlinkBytes(split), link.downlink_bps);
  t.latency = std::max(0.0, link.rtt_seconds);
  return t;
}

double CostModel::seedEpochSeconds(const IterationTimes& times, std::int64_t iterations, int staleness) {
  if (iterations <= 0) return 0.0;
  const double r = static_cast<double>(iterations);
  const std::int64_t window = static_cast<std::int64_t>(std::max(staleness, 0)) + 1;  // K + 1 batches in flight
  const double t_star = times.bottleneck();
  const double t0 = times.sum();
  const auto windows = (iterations + window - 1) / window;  // ⌈r/(K+1)⌉, in integers
  const double round_trip_bound = std::max(0.0, t0 - static_cast<double>(window) * t_star);
  return (r - 1.0) * t_star + t0 + static_cast<double>(windows - 1) * round_trip_bound;
}

double CostModel::epochSeconds(const IterationTimes& times, std::int64_t iterations, int staleness) const {
  if (iterations <= 0) return 0.0;
  const std::int64_t simulated = std::min(iterations, kSimulatedIterations);
  const std::int64_t window = static_cast<std::int64_t>(std::max(staleness, 0)) + 1;
  const double forward = std::clamp(times.edge_forward, 0.0, std::max(times.edge, 0.0));
  const double replay = std::max(times.edge, 0.0) - forward;
  const double half_rtt = std::max(times.latency, 0.0) / 2.0;

  // The edge loop (runtime/pipeline/edge.cpp), for each batch: apply the gradients that
  // have arrived (all, or at most one), wait for the oldest while K+1 batches are in
  // flight, then run the forward and send. Batches go through the link and the cloud in
  // the order they were sent, so each FIFO server is just "free at" time, and a batch's
  // gradient arrival is known as soon as it is sent.
  std::vector<double> gradient_at(static_cast<std::size_t>(simulated));
  std::vector<double> done_at(static_cast<std::size_t>(simulated));
  double now = 0.0;  // the edge's clock
  double up_free = 0.0;
  double cloud_free = 0.0;
  double down_free = 0.0;
  std::int64_t applied = 0;
  const auto apply = [&] {
    now = std::max(now, gradient_at[static_cast<std::size_t>(applied)]) + replay;
    done_at[static_cast<std::size_t>(applied)] = now;
    ++applied;
  };
  for (std::int64_t sent = 0; sent < simulated; ++sent) {
    while (applied < sent && gradient_at[static_cast<std::size_t>(applied)] <= now) {
      apply();
      if (!options_.drain_arrived_gradients) break;
    }
    while (sent - applied >= window) apply();
    now += forward;
    up_free = std::max(now, up_free) + std::max(times.up, 0.0);
    cloud_free = std::max(up_free + half_rtt, cloud_free) + std::max(times.cloud, 0.0);
    down_free = std::max(cloud_free, down_free) + std::max(times.down, 0.0);
    gradient_at[static_cast<std::size_t>(sent)] = down_free + half_rtt;
  }
  while (applied < simulated) apply();
  const double last = done_at.back();
  if (simulated == iterations) return last;
  // The pipeline is periodic long before kSimulatedIterations; the middle half of the run
  // (away from the fill and the drain) gives its rate.
  const auto q1 = static_cast<std::size_t>(simulated / 4);
  const auto q3 = static_cast<std::size_t>(3 * simulated / 4);
  const double rate = (done_at[q3] - done_at[q1]) / static_cast<double>(q3 - q1);
  return last + static_cast<double>(iterations - simulated) * rate;
}

std::int64_t CostModel::migrationBytes(int from, int to) const {
  checkSplit(from);
  checkSplit(to);
  std::int64_t bytes = 0;
  for (int i = std::min(from, to); i < std::max(from, to); ++i) {
    const auto s = static_cast<std::size_t>(i);
    bytes += profile_.parameter_bytes[s] + profile_.buffer_bytes[s] + profile_.optimizer_state_bytes[s];
  }
  return bytes;
}

double CostModel::migrationSeconds(int from, int to, const LinkEstimate& link) const {
  if (from == to) {
    checkSplit(from);
    return 0.0;
  }
  // to < from: stages leave the edge (uplink); to > from: they come to the edge (downlink).
  const double bps = to < from ? link.uplink_bps : link.downlink_bps;
  return transferSeconds(migrationBytes(from, to), bps) + std::max(0.0, link.rtt_seconds);
}

std::int64_t CostModel::edgeMemoryBytes(int split, int staleness, const std::string& codec, bool error_feedback) const {
  checkSplit(split);
  const auto p = static_cast<std::size_t>(split);
  const std::int64_t in_flight = static_cast<std::int64_t>(std::max(staleness, 0)) + 1;

  std::int64_t working = 0;  // one batch through [0, p) with its graph
  for (int i = 0; i <= split; ++i) working += 2 * profile_.activationBytes(i);
  const std::int64_t payload = boundaryPayloadBytes(split, codec);
  if (split == 0) return working + payload;

  std::int64_t weights = 0;
  std::int64_t model = 0;
  for (std::size_t i = 0; i < p; ++i) {
    weights += profile_.parameter_bytes[i];
    model += 2 * profile_.parameter_bytes[i] + profile_.optimizer_state_bytes[i] + profile_.buffer_bytes[i];
  }
  std::int64_t replay = 0;
  if (options_.replay == config::Replay::kRecompute) {
    replay = in_flight * profile_.activationBytes(0) + working;
  } else {
    replay = in_flight * (working + weights);
  }
  const std::int64_t feedback = error_feedback && codec != "none" ? in_flight * profile_.activationBytes(split) : 0;
  return model + replay + feedback + payload;
}

}  // namespace tandem::scheduler

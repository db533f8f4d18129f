#pragma once
// The cost model (docs/design.md, "Context-aware partitioning"): for a split point p and
// an uplink codec, the per-iteration times of the four pipeline stages, the epoch time
// under staleness K, the one-off cost of migrating stages from the current split, and the
// edge's training memory.
//
// Pure functions of a ModelProfile and a LinkEstimate: no LibTorch, no clocks. Split
// points are 0..n (n = profile.num_stages); passing another is a bug (InvariantError).

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "runtime/config/enums.h"
#include "runtime/scheduler/profile.h"

namespace tandem::scheduler {

// A bandwidth of 0 (or less) means "not measured": the cost model then charges nothing
// for moving bytes in that direction, so callers must supply estimates (probes measure
// both directions at start) for the link terms to mean anything. Charging an infinite
// time instead would make every split but p = n look infinitely slow and the planner
// would pin the model to the edge before the first probe.
struct LinkEstimate {
  double uplink_bps = 0.0;  // bits per second
  double downlink_bps = 0.0;
  double rtt_seconds = 0.0;
};

// Per-iteration times, seconds, for one batch.
struct IterationTimes {
  double edge = 0.0;     // edge forward (+ replay) + backward of stages [0, p), plus encoding
  double up = 0.0;       // serialising the activation (and labels) on the uplink
  double cloud = 0.0;    // cloud forward + backward of [p, n) and the loss, plus decoding
  double down = 0.0;     // serialising the gradient on the downlink
  double latency = 0.0;  // propagation: the round-trip time (not occupying any stage)
  // The part of `edge` spent before the upload (the forward of [0, p) and encoding); the
  // rest (replay, backward, decoding the gradient) runs when the gradient is back. Only
  // epochSeconds uses it: the edge is visited twice per round trip.
  double edge_forward = 0.0;

  double bottleneck() const;  // max of edge, up, cloud, down
  double sum() const;         // edge + up + cloud + down + latency
};

// How big an encoded tensor of `shape` (batch first) is under a codec spec; the caller
// supplies it (compression::makeCodec(spec)->encodedSize) so this library stays free of
// the codec registry. "none" must give numel × 4.
using EncodedSizeFn = std::function<std::int64_t(const std::string& codec, const std::vector<std::int64_t>& shape)>;

struct CostModelOptions {
  // kRecompute: the edge runs each forward twice.
  config::Replay replay = config::Replay::kRecompute;
  // Sizes the optimizer state (sgd: 1, adam: 2 copies of the weights) when the profile
  // does not carry optimizer_state_bytes.
  config::OptimizerKind optimizer = config::OptimizerKind::kSgd;
  std::string downlink_codec = "none";
  // Encode+decode cost of one float32 input byte. Each codec in use is encoded on one side
  // and decoded on the other, so each side is charged half of its own host's cost per byte
  // of the boundary tensor: uplink codec, edge encodes and cloud decodes; downlink codec
  // (p > 0), cloud encodes and edge decodes. A side's cost is the one its profile
  // measured for that codec (SideProfile::codec_seconds_per_byte, calibrated per host by
  // the profiler); this value stands in for a codec a profile has not measured.
  double codec_seconds_per_byte = 0.0;
  // Bytes per element of the raw input when it goes up uncompressed (split 0, uplink codec
  // "none"): the edge then sends the dataset's native samples (1: uint8 pixels of
  // fashion_mnist and cifar10; 4: float32). Other codecs encode the float32 input.
  std::int64_t input_element_bytes = 4;
  // How the edge loop interleaves its two kinds of work (runtime/pipeline/edge.cpp):
  // true, it applies every gradient that has arrived before it sends the next batch;
  // false, at most one per batch sent. epochSeconds simulates the one in use.
  bool drain_arrived_gradients = true;
};

class CostModel {
 public:
  // Bytes each message carries besides its tensors (the Cereal header with tensor
  // metadata, ZeroMQ framing): an activation message, and a gradient (or, at p = 0, an
  // acknowledgement) message.
  static constexpr std::int64_t kUplinkOverheadBytes = 256;
  static constexpr std::int64_t kDownlinkOverheadBytes = 128;

  // Throws tandem::Error when the profile is inconsistent (per-stage arrays not of length
  // n, n + 1 boundary shapes, both sides' times present, positive batch size) or an option
  // is unknown. Empty buffer_bytes are taken as zeros and empty optimizer_state_bytes are
  // derived from `options.optimizer`; profile() returns the completed profile.
  CostModel(ModelProfile profile, EncodedSizeFn encoded_size, CostModelOptions options);

  const ModelProfile& profile() const { return profile_; }
  const CostModelOptions& options() const { return options_; }
  int numStages() const { return profile_.num_stages; }

  // Per-iteration times for split p with uplink `codec`:
  //   edge  = Σ_{i<p} (forward_i × (recompute ? 2 : 1) + backward_i)   [edge profile]
  //           + codec cost (see CostModelOptions::codec_seconds_per_byte)
  //   up    = uplinkBytes(p, codec) × 8 / uplink_bps
  //   cloud = Σ_{i≥p} (forward_i + backward_i)                           [cloud profile]
  //           + codec cost
  //   down  = downlinkBytes(p) × 8 / downlink_bps
  //   latency = rtt
  // At p = 0 the edge uploads the raw input (encoded with `codec`, as the pipeline does)
  // and gets only an acknowledgement back; at p = n it uploads the logits and the cloud
  // computes the loss. A bandwidth <= 0 charges 0 (see LinkEstimate).
  IterationTimes iteration(int split, const std::string& codec, const LinkEstimate& link) const;

  // Bytes on the wire per iteration: the encoded boundary tensor (at p = 0 with codec
  // "none", numel × input_element_bytes), int64 labels and the header going up; the
  // encoded gradient (none at p = 0) and the header coming down.
  std::int64_t uplinkBytes(int split, const std::string& codec) const;
  std::int64_t downlinkBytes(int split) const;

  // Time for `iterations` batches pipelined with staleness K (at most K+1 batches in
  // flight, as the replay buffer allows), by a deterministic simulation of the pipeline:
  // the edge is one server that runs a batch's forward (edge_forward) before the upload
  // and its replay + backward (edge − edge_forward) once the gradient is back, choosing
  // between the two as the edge loop does (CostModelOptions::drain_arrived_gradients);
  // uplink, cloud and downlink are FIFO servers; half the RTT separates edge and cloud in
  // each direction. Past kSimulatedIterations it simulates that many and extrapolates at
  // the steady rate it measured. r <= 0 gives 0; K < 0 counts as 0.
  //
  // Why not the seed formula (seedEpochSeconds): it treats the edge as one stage, so it
  // cannot see that the edge's replays and forwards compete. When the edge drains every
  // arrived gradient before sending, batches travel in convoys (K+1 replays back to back,
  // then K+1 forwards, then the whole window waits on the network) and the formula
  // underestimates, by up to ~35% over random stage times (tests/scheduler/
  // cost_model_test.cpp shows a case at 4/3); for few iterations with a large K it
  // overestimates instead, because the edge's forward of one batch overlaps the network
  // time of the one before. Both agree on K = 0 (r·T0) and, within 1% for r >= 200, when
  // the edge applies at most one gradient per batch sent.
  static constexpr std::int64_t kSimulatedIterations = 4096;
  double epochSeconds(const IterationTimes& times, std::int64_t iterations, int staleness) const;

  // The seed system's formula, kept for comparison (decisions log both):
  //   t = (r−1)·T* + T0 + (⌈r/(K+1)⌉ − 1)·max(0, T0 − (K+1)·T*),
  // T* = bottleneck(), T0 = sum() (so latency counts once per window, not per stage).
  // K = 0 gives r·T0; K + 1 >= r gives (r−1)·T* + T0. r <= 0 gives 0; K < 0 counts as 0.
  static double seedEpochSeconds(const IterationTimes& times, std::int64_t iterations, int staleness);

  // Moving stages between `from` and `to` (either direction): their weights, buffers and
  // optimizer state over the link in the direction they travel (to < from: the stages
  // [to, from) go up to the cloud; to > from: [from, to) come down to the edge), plus one
  // round trip. 0 when from == to. A bandwidth <= 0 charges only the round trip.
  double migrationSeconds(int from, int to, const LinkEstimate& link) const;
  std::int64_t migrationBytes(int from, int to) const;

  // The edge's training memory for a split, K and codec, in bytes (A(i) =
  // activationBytes(i), W = Σ_{i<p} parameter_bytes):
  //   model:     2·W (weights and gradients) + optimizer state + buffers of [0, p)
  //   working:   2·Σ_{i≤p} A(i) (one batch through [0, p) with its autograd graph:
  //              the boundary tensors and about as much inside the stages)
  //   replay, p > 0 (at p = 0 nothing is replayed):
  //     recompute: (K+1)·A(0), the stored inputs of the batches in flight, + working
  //     retain:    (K+1)·(working + W), a retained graph and a weight snapshot per batch
  //   error feedback (when `error_feedback`, codec != none and p > 0): (K+1)·A(p)
  //   the encoded uplink payload: encoded_size(codec, boundary p)
  // At p = 0 it is working + payload. It estimates what training adds, not the process's
  // baseline (runtime, libraries, data loader), which the budget must leave room for.
  std::int64_t edgeMemoryBytes(int split, int staleness, const std::string& codec, bool error_feedback) const;

 private:
  std::vector<std::int64_t> batchShape(int boundary) const;  // [B] + boundary_shapes[boundary]
  std::int64_t boundaryPayloadBytes(int split, const std::string& codec) const;
  double codecSecondsPerByte(const SideProfile& side, const std::string& codec) const;
  void checkSplit(int split) const;

  ModelProfile profile_;
  EncodedSizeFn encoded_size_;
  CostModelOptions options_;
};

}  // namespace tandem::scheduler

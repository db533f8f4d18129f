#pragma once
// What the scheduler knows about a model on the two machines: per-stage compute times
// measured by each side on its own hardware, and sizes that follow from the architecture.
// Plain data (no LibTorch), serialisable to JSON for the profile cache and the wire.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace tandem::scheduler {

// Per-stage compute of one side, measured with real batches of `batch_size`.
struct SideProfile {
  std::string host;
  std::int64_t batch_size = 0;
  std::vector<double> forward_seconds;   // per stage, one batch
  std::vector<double> backward_seconds;  // per stage, one batch (given the output gradient)
  // Encode + decode of one float32 byte per codec spec on this host, seconds (measured by
  // the profiler; codecs not measured are absent).
  std::map<std::string, double> codec_seconds_per_byte;
};

struct ModelProfile {
  std::string model;
  std::int64_t batch_size = 0;
  int num_stages = 0;
  // Per-sample shapes at each boundary, 0..n (0: the input, n: the logits).
  std::vector<std::vector<std::int64_t>> boundary_shapes;
  std::vector<std::int64_t> parameter_bytes;        // per stage, float32 weights
  std::vector<std::int64_t> buffer_bytes;           // per stage (BatchNorm statistics)
  std::vector<std::int64_t> optimizer_state_bytes;  // per stage: momentum (SGD) or two moments (Adam)
  SideProfile edge;
  SideProfile cloud;

  // Bytes of the float32 tensor at `boundary` (0..num_stages) for one batch:
  // batch_size × product(boundary_shapes[boundary]) × 4. An out-of-range boundary is a bug
  // (InvariantError).
  std::int64_t activationBytes(int boundary) const;
};

// JSON text of one side's profile (the profile cache and the wire), and back:
//   {"host": "...", "batch_size": 32, "forward_seconds": [...], "backward_seconds": [...],
//    "codec_seconds_per_byte": {"int8": 1.2e-10, ...}}   (the last optional)
// sideFromJson throws tandem::Error with the reason on malformed input: not JSON, a missing
// field or one of the wrong type, a batch size that is not a positive integer, a time that
// is negative or not finite, or forward and backward arrays of different lengths, or a
// codec cost that is not an object of finite non-negative numbers.
std::string toJson(const SideProfile& side);
SideProfile sideFromJson(const std::string& text);

}  // namespace tandem::scheduler

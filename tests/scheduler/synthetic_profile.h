#pragma once
// Synthetic model profiles for the scheduler tests: stage times and sizes chosen by hand so
// that the right answer is known without running a model.

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/scheduler/cost_model.h"

namespace tandem::scheduler::testing {

struct StageSpec {
  double edge_forward = 0.0;  // seconds per batch
  double edge_backward = 0.0;
  double cloud_forward = 0.0;
  double cloud_backward = 0.0;
  std::int64_t output_numel = 1;  // per sample
  std::int64_t parameter_bytes = 0;
  std::int64_t buffer_bytes = 0;
};

inline ModelProfile syntheticProfile(std::int64_t batch_size, std::vector<std::int64_t> input_shape,
                                     const std::vector<StageSpec>& stages) {
  ModelProfile p;
  p.model = "synthetic";
  p.batch_size = batch_size;
  p.num_stages = static_cast<int>(stages.size());
  p.boundary_shapes.push_back(std::move(input_shape));
  p.edge.host = "edge-host";
  p.cloud.host = "cloud-host";
  p.edge.batch_size = p.cloud.batch_size = batch_size;
  for (const auto& s : stages) {
    p.boundary_shapes.push_back({s.output_numel});
    p.parameter_bytes.push_back(s.parameter_bytes);
    p.buffer_bytes.push_back(s.buffer_bytes);
    p.optimizer_state_bytes.push_back(s.parameter_bytes);  // SGD momentum
    p.edge.forward_seconds.push_back(s.edge_forward);
    p.edge.backward_seconds.push_back(s.edge_backward);
    p.cloud.forward_seconds.push_back(s.cloud_forward);
    p.cloud.backward_seconds.push_back(s.cloud_backward);
  }
  return p;
}

// Encoded sizes as the real codecs report them, without their small headers: none keeps
// float32, fp16 halves it, int8 quarters it.
inline std::int64_t encodedSize(const std::string& codec, const std::vector<std::int64_t>& shape) {
  std::int64_t numel = 1;
  for (auto d : shape) numel *= d;
  if (codec == "none") return numel * 4;
  if (codec == "fp16") return numel * 2;
  if (codec == "int8") return numel;
  throw std::invalid_argument("synthetic encodedSize: unknown codec " + codec);
}

inline LinkEstimate link(double uplink_mbps, double downlink_mbps, double rtt_ms) {
  return {uplink_mbps * 1e6, downlink_mbps * 1e6, rtt_ms * 1e-3};
}

}  // namespace tandem::scheduler::testing

#pragma once
// What the edge and cloud loops share about the link: building the transport from the
// config, sending tensors under a codec spec, and checking received tensor metadata.

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "runtime/config/config.h"
#include "runtime/models/stage_model.h"
#include "runtime/transport/fault_injection.h"
#include "runtime/transport/tensor_frames.h"
#include "runtime/transport/transport.h"
#include "runtime/transport/zmq_transport.h"

namespace tandem::pipeline {

// ZeroMQ options for `role` ("edge" connects, "cloud" binds) from the link config.
transport::ZmqOptions zmqOptions(const config::Config& config, const std::string& role);
// The faults link.emulate asks for (its outages), to inject under the sequencing layer;
// empty when none.
std::vector<std::unique_ptr<transport::Fault>> injectedFaults(const config::Config& config);
// The whole stack for `role`: ZeroMQ frame socket → fault injection (link.emulate.outages)
// → sequencing and liveness → link emulator (when link.emulate shapes the link).
std::unique_ptr<transport::Transport> makeTransport(const config::Config& config, const std::string& role);
// Wraps `inner` in the link emulator when link.emulate is set (the edge shapes the uplink,
// the cloud the downlink); returns it unchanged otherwise.
std::unique_ptr<transport::Transport> emulateLink(const config::Config& config, const std::string& role,
                                                  std::unique_ptr<transport::Transport> inner);

// Appends `tensor` to `message` under the codec `spec` ("none": raw bytes, no copy).
void addTensor(transport::Message& message, const torch::Tensor& tensor, const std::string& spec,
               transport::CodecCache& codecs);
void addFrame(transport::Message& message, transport::TensorFrame frame);

// Throws WireError(kInvalidTensor) unless `message` carries exactly `count` tensors.
void expectTensorCount(const transport::Message& message, std::size_t count);
// Throws WireError(kInvalidTensor) unless tensor `index` is [batch, shape...] of `dtype`
// with 1 <= batch <= max_batch; returns batch.
std::int64_t expectBatchTensor(const transport::Message& message, std::size_t index, transport::DType dtype,
                               const models::Shape& sample_shape, std::int64_t max_batch, const char* what);

using transport::wireBytes;

std::string shapeString(const std::vector<std::int64_t>& shape);

inline std::chrono::milliseconds millis(double seconds) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000.0));
}

}  // namespace tandem::pipeline

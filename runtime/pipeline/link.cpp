#include "runtime/pipeline/link.h"

#include "runtime/common/strings.h"
#include "runtime/common/log.h"
#include "runtime/transport/curve.h"
#include "runtime/transport/link_emulator.h"

namespace tandem::pipeline {

transport::ZmqOptions zmqOptions(const config::Config& config, const std::string& role) {
  transport::ZmqOptions o;
  o.mode = role == "cloud" ? transport::ZmqOptions::Mode::kBind : transport::ZmqOptions::Mode::kConnect;
  o.endpoint = config.link.endpoint;
  o.log_component = role + ".transport";
  o.heartbeat_interval = millis(config.link.heartbeat_interval_s);
  o.peer_timeout = millis(config.link.peer_timeout_s);
  o.limits.max_tensor_bytes = static_cast<std::uint64_t>(config.link.max_message_mb * 1024.0 * 1024.0);
  o.reconnect_grace = millis(config.link.reconnect_grace_s);
  o.peer_messages_per_s = config.limits.peer_messages_per_s;
  o.peer_queue_messages = static_cast<std::size_t>(config.limits.peer_queue_messages);
  o.peer_queue_bytes = static_cast<std::uint64_t>(config.limits.peer_queue_mb * 1048576.0);
  const auto& sec = config.security;
  const bool cloud = role == "cloud";
  if (sec.mode == config::SecurityMode::kPlaintext) {
    const auto& ep = config.link.endpoint;
    const bool local = ep.rfind("inproc://", 0) == 0 || ep.rfind("ipc://", 0) == 0 ||
                       ep.find("://127.") != std::string::npos || ep.find("://localhost") != std::string::npos ||
                       ep.find("://[::1]") != std::string::npos;
    if (!local) {
      log::get(role + ".security")
          ->warn("security.mode is plaintext on {}: traffic is neither encrypted nor authenticated", ep);
    }
    return o;
  }
  const auto need = [&](const std::string& value, const std::string& key, const std::string& why) {
    if (value.empty()) {
      config::failAt(config, key, "needed with security.mode: curve (" + why +
                                      "; create keys with tandem_keygen, or set security.mode: plaintext)");
    }
  };
  o.curve.enabled = true;
  need(sec.key_file, "security.key_file", "this side's key pair");
  try {
    const auto keys = transport::readCurveKeyPair(sec.key_file);
    o.curve.public_key = keys.public_key;
    o.curve.secret_key = keys.secret_key;
    if (cloud) {
      need(sec.authorized_keys, "security.authorized_keys", "the edges the cloud accepts");
      o.curve.authorized_keys = transport::readAuthorizedKeys(sec.authorized_keys);
    } else {
      need(sec.cloud_public_key_file, "security.cloud_public_key_file", "the cloud's public key");
      o.curve.server_key = transport::readCurvePublicKey(sec.cloud_public_key_file);
    }
  } catch (const ConfigError& e) {
    config::failAt(config, "security", e.what());
  }
  return o;
}

std::vector<std::unique_ptr<transport::Fault>> injectedFaults(const config::Config& config) {
  std::vector<std::unique_ptr<transport::Fault>> faults;
  const auto& outages = config.link.emulate.outages;
  if (!outages.empty()) faults.push_back(std::make_unique<transport::OutageWindows>(outages));
  return faults;
}

std::unique_ptr<transport::Transport> makeTransport(const config::Config& config, const std::string& role) {
  std::unique_ptr<transport::Transport> t =
      std::make_unique<transport::ZmqTransport>(zmqOptions(config, role), injectedFaults(config));
  return emulateLink(config, role, std::move(t));
}

std::unique_ptr<transport::Transport> emulateLink(const config::Config& config, const std::string& role,
                                                  std::unique_ptr<transport::Transport> inner) {
  const auto& e = config.link.emulate;
  if (!e.active()) return inner;
  transport::LinkShape shape;
  if (!e.trace.empty()) {
    shape.trace = transport::BandwidthTrace::load(e.trace);
  } else {
    shape.trace = transport::BandwidthTrace(e.uplink_mbps, e.downlink_mbps);
  }
  shape.rtt_ms = e.rtt_ms;
  shape.uplink = role != "cloud";
  return std::make_unique<transport::LinkEmulator>(std::move(inner), shape);
}

void addFrame(transport::Message& message, transport::TensorFrame frame) {
  message.header.tensors.push_back(std::move(frame.meta));
  message.payloads.push_back(std::move(frame.frame));
}

void addTensor(transport::Message& message, const torch::Tensor& tensor, const std::string& spec,
               transport::CodecCache& codecs) {
  if (spec == "none" || tensor.scalar_type() != torch::kFloat32) {
    addFrame(message, transport::rawFrame(tensor));
  } else {
    addFrame(message, transport::encodedFrame(tensor, codecs.get(spec)));
  }
}

void expectTensorCount(const transport::Message& message, std::size_t count) {
  if (message.header.tensors.size() != count) {
    throw transport::WireError(transport::ErrorCode::kInvalidTensor,
                               std::string(transport::messageTypeName(message.header.type)) + " carries " +
                                   std::to_string(message.header.tensors.size()) + " tensors, expected " +
                                   std::to_string(count));
  }
}

std::string shapeString(const std::vector<std::int64_t>& shape) {
  std::vector<std::string> parts;
  for (auto d : shape) parts.push_back(std::to_string(d));
  return "[" + join(parts) + "]";
}

std::int64_t expectBatchTensor(const transport::Message& message, std::size_t index, transport::DType dtype,
                               const models::Shape& sample_shape, std::int64_t max_batch, const char* what) {
  const auto& meta = message.header.tensors.at(index);
  const auto fail = [&](const std::string& why) {
    throw transport::WireError(transport::ErrorCode::kInvalidTensor, std::string(what) + ": " + why);
  };
  if (meta.dtype != dtype) {
    fail(std::string("dtype ") + transport::dtypeName(meta.dtype) + ", expected " + transport::dtypeName(dtype));
  }
  if (meta.shape.empty()) fail("no batch dimension");
  const std::int64_t batch = meta.shape[0];
  if (batch < 1 || batch > max_batch) {
    fail("batch of " + std::to_string(batch) + ", expected 1.." + std::to_string(max_batch));
  }
  std::vector<std::int64_t> expected{batch};
  expected.insert(expected.end(), sample_shape.begin(), sample_shape.end());
  if (meta.shape != expected) fail("shape " + shapeString(meta.shape) + ", expected " + shapeString(expected));
  return batch;
}

}  // namespace tandem::pipeline

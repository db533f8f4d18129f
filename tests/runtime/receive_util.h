#pragma once
// Transport tests: messages to send, and expecting a message or a link event from
// Transport::receive.

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <optional>

#include "runtime/transport/transport.h"

namespace tandem::test_util {

// An Activations message carrying one uint8 tensor of `bytes` bytes (all 0x5a).
inline transport::Message withPayload(std::size_t bytes) {
  transport::Message m(transport::MessageType::kActivations, std::monostate{});
  transport::TensorMeta meta;
  meta.dtype = transport::DType::kUInt8;
  meta.shape = {static_cast<std::int64_t>(bytes)};
  meta.bytes = bytes;
  m.header.tensors.push_back(meta);
  m.payloads.emplace_back(bytes);
  if (bytes > 0) std::memset(m.payloads.back().data(), 0x5a, bytes);
  return m;
}

// The next message within `timeout`; a link event instead is a test failure.
inline std::optional<transport::Message> receiveMessage(transport::Transport& transport,
                                                        std::chrono::milliseconds timeout) {
  auto incoming = transport.receive(timeout);
  if (!incoming) return std::nullopt;
  if (auto* message = transport::asMessage(*incoming)) return std::move(*message);
  ADD_FAILURE() << "expected a message, got a link event";
  return std::nullopt;
}

// The next link event within `timeout`; a message instead is a test failure.
inline std::optional<transport::LinkEvent> receiveEvent(transport::Transport& transport,
                                                        std::chrono::milliseconds timeout) {
  auto incoming = transport.receive(timeout);
  if (!incoming) return std::nullopt;
  if (const auto* event = transport::asEvent(*incoming)) return *event;
  ADD_FAILURE() << "expected a link event, got "
                << transport::messageTypeName(std::get<transport::Message>(*incoming).header.type);
  return std::nullopt;
}

}  // namespace tandem::test_util

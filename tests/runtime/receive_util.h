#pragma once
// Tests that expect a message, or a link event, from Transport::receive.

#include <gtest/gtest.h>

#include <chrono>
#include <optional>

#include "runtime/transport/transport.h"

namespace tandem::test_util {

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

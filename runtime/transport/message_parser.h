#pragma once
// Validation of a received message's frames, shared by the ZeroMQ transport and the
// protocol fuzzer: the header frame is decoded and checked (decodeHeaderFrame), and there
// must be exactly one payload frame per declared tensor, of the declared size. No
// LibTorch here, so the fuzzer builds without it.

#include <cstddef>
#include <vector>

#include "runtime/transport/protocol.h"

namespace tandem::transport {

struct FrameView {
  const void* data;
  std::size_t size;
};

// `frames` excludes the routing id. Throws WireError with the reason.
DecodedHeader parseFrames(const std::vector<FrameView>& frames, const Limits& limits);

}  // namespace tandem::transport

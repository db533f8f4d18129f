#include "runtime/transport/message_parser.h"

namespace tandem::transport {

DecodedHeader parseFrames(const std::vector<FrameView>& frames, const Limits& limits) {
  if (frames.empty()) throw WireError(ErrorCode::kMalformed, "message without a header frame");
  DecodedHeader decoded = decodeHeaderFrame(frames[0].data, frames[0].size, limits);
  const Header& h = decoded.header;
  const std::size_t payloads = frames.size() - 1;
  if (payloads != h.tensors.size()) {
    throw WireError(ErrorCode::kInvalidTensor, std::string(messageTypeName(h.type)) + " declares " +
                                                   std::to_string(h.tensors.size()) + " tensors but has " +
                                                   std::to_string(payloads) + " payload frames");
  }
  for (std::size_t i = 0; i < payloads; ++i) {
    if (frames[i + 1].size != h.tensors[i].bytes) {
      throw WireError(ErrorCode::kInvalidTensor, std::string(messageTypeName(h.type)) + " tensor " + std::to_string(i) +
                                                     " declares " + std::to_string(h.tensors[i].bytes) +
                                                     " bytes but its frame has " + std::to_string(frames[i + 1].size));
    }
  }
  return decoded;
}

}  // namespace tandem::transport

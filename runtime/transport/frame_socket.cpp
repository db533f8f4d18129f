#include "runtime/transport/frame_socket.h"

#include "runtime/transport/message_parser.h"

namespace tandem::transport {

std::string peerName(const std::string& id) {
  if (id.empty()) return "peer";
  static const char* hex = "0123456789abcdef";
  std::string out = "peer-";
  for (unsigned char c : id) {
    out += hex[c >> 4];
    out += hex[c & 0xf];
  }
  return out;
}

Received decodeReceived(std::string peer, std::vector<zmq::message_t>& frames, const Limits& limits) {
  std::uint64_t bytes = 0;
  for (const auto& f : frames) bytes += f.size();
  const auto rejection = [&](ErrorCode code, std::string reason, std::optional<MessageType> type) {
    return Received(Rejection{std::move(peer), code, std::move(reason), type, bytes});
  };
  if (frames.empty()) return rejection(ErrorCode::kMalformed, "message without a header frame", std::nullopt);
  DecodedHeader decoded;
  try {
    std::vector<FrameView> views;
    views.reserve(frames.size());
    for (const auto& f : frames) views.push_back({f.data(), f.size()});
    decoded = parseFrames(views, limits);
  } catch (const WireError& e) {
    // A header that decoded names the message type, so an Error never answers an Error.
    std::optional<MessageType> type;
    try {
      type = decodeHeaderFrame(frames[0].data(), frames[0].size(), limits).header.type;
    } catch (const WireError&) {
    }
    return rejection(e.code(), e.what(), type);
  }
  Message message;
  message.header = std::move(decoded.header);
  message.body = std::move(decoded.body);
  message.peer = std::move(peer);
  message.wire_bytes = bytes;
  message.received_at = steadySeconds();
  message.payloads.reserve(frames.size() - 1);
  for (std::size_t i = 1; i < frames.size(); ++i) message.payloads.push_back(std::move(frames[i]));
  return message;
}

std::vector<zmq::message_t> encodeFrames(Message& message) {
  std::vector<zmq::message_t> frames;
  frames.reserve(1 + message.payloads.size());
  const std::string header = encodeHeaderFrame(message.header, message.body);
  frames.emplace_back(header.data(), header.size());
  for (auto& p : message.payloads) frames.push_back(std::move(p));
  message.payloads.clear();
  return frames;
}

}  // namespace tandem::transport

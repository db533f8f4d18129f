#include "tests/fuzz/protocol_fuzz_entry.h"

#include <cstring>

#include "compression/registry.h"
#include "runtime/transport/message_parser.h"

namespace tandem::transport::fuzz {

void runProtocolFuzzInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return;
  const std::size_t count = data[0] % 9;
  std::size_t pos = 1;
  std::vector<FrameView> frames;
  for (std::size_t i = 0; i < count; ++i) {
    std::uint32_t length = 0;
    const std::size_t header = std::min<std::size_t>(4, size - pos);
    std::memcpy(&length, data + pos, header);
    pos += header;
    const std::size_t take = std::min<std::size_t>(length, size - pos);
    frames.push_back({data + pos, take});
    pos += take;
  }
  Limits limits;
  limits.max_tensor_bytes = 1 << 20;  // keep decoded tensors small while fuzzing
  DecodedHeader decoded;
  try {
    decoded = parseFrames(frames, limits);
  } catch (const WireError&) {
    return;
  }
  // Round trip: what parsed must re-encode to something that parses identically.
  const std::string again = encodeHeaderFrame(decoded.header, decoded.body);
  DecodedHeader second;
  try {
    second = decodeHeaderFrame(again.data(), again.size(), limits);
  } catch (const WireError& e) {
    throw FuzzInvariantError(std::string("a re-encoded header no longer parses: ") + e.what());
  }
  if (encodeHeaderFrame(second.header, second.body) != again) {
    throw FuzzInvariantError("header encoding is not stable across a round trip");
  }
  // Codec payloads decode or are rejected; never crash.
  for (std::size_t i = 0; i < decoded.header.tensors.size(); ++i) {
    const auto& meta = decoded.header.tensors[i];
    if (meta.codec == kRawCodec) continue;
    std::vector<float> out(static_cast<std::size_t>(meta.numel()));
    try {
      compression::makeCodec(meta.codec)
          ->decode(static_cast<const std::uint8_t*>(frames[i + 1].data), frames[i + 1].size, meta.shape, out.data());
    } catch (const compression::CodecError&) {
    }
  }
}

std::vector<std::uint8_t> makeProtocolFuzzInput(const std::vector<std::string>& frames) {
  std::vector<std::uint8_t> out{static_cast<std::uint8_t>(frames.size())};
  for (const auto& f : frames) {
    const auto length = static_cast<std::uint32_t>(f.size());
    const auto* p = reinterpret_cast<const std::uint8_t*>(&length);
    out.insert(out.end(), p, p + 4);
    out.insert(out.end(), f.begin(), f.end());
  }
  return out;
}

}  // namespace tandem::transport::fuzz

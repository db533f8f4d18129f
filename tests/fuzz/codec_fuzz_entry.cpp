#include "tests/fuzz/codec_fuzz_entry.h"

#include <cstring>
#include <memory>

#include "compression/codec.h"
#include "compression/registry.h"

namespace tandem::compression::fuzz {
namespace {

constexpr std::size_t kMaxRank = 5;
constexpr std::int64_t kDimModulus = 17;

struct FuzzCodecs {
  std::vector<std::unique_ptr<Codec>> codecs;
  FuzzCodecs() {
    for (const std::string& spec : fuzzedCodecSpecs()) codecs.push_back(makeCodec(spec));
  }
};

bool sameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

}  // namespace

const std::vector<std::string>& fuzzedCodecSpecs() {
  static const std::vector<std::string> specs{
      "none",      "fp16",     "bf16",      "int8",      "int4",          "int2",
      "int8_channel", "int4_channel", "int2_channel", "topk:0.1", "topk:0.5", "topk:1",
      "none+zstd", "int8+zstd", "topk:0.1+zstd", "none+lz4", "int4+lz4", "int8_channel+lz4"};
  return specs;
}

void runCodecFuzzInput(const std::uint8_t* data, std::size_t size) {
  static const FuzzCodecs fuzzCodecs;  // built once: the fuzzer calls this millions of times
  if (size < 2) return;
  const std::size_t index = data[0] % fuzzCodecs.codecs.size();
  const Codec& codec = *fuzzCodecs.codecs[index];
  const std::size_t rank = data[1] % (kMaxRank + 1);
  if (size < 2 + rank) return;
  std::vector<std::int64_t> shape(rank);
  for (std::size_t d = 0; d < rank; ++d) shape[d] = data[2 + d] % kDimModulus;
  const std::uint8_t* payload = data + 2 + rank;
  const std::size_t payloadSize = size - 2 - rank;

  const auto n = static_cast<std::size_t>(checkedNumel(shape));
  // Decode into exactly-sized heap buffers so AddressSanitizer sees any overrun.
  std::vector<float> first(n);
  try {
    codec.decode(payload, payloadSize, shape, first.data());
  } catch (const CodecError&) {
    return;
  }

  const std::string where = codec.spec() + " with shape of " + std::to_string(n) + " elements";
  std::vector<float> second(n);
  codec.decode(payload, payloadSize, shape, second.data());
  if (!sameBits(first, second)) throw FuzzInvariantError(where + ": decoding twice gave different bits");

  const std::vector<std::uint8_t> again = codec.encode(first.data(), shape);
  const std::size_t advertised = codec.encodedSize(shape);
  const bool exactSize = codec.spec().find('+') == std::string::npos;
  if (exactSize ? again.size() != advertised : again.size() > advertised) {
    throw FuzzInvariantError(where + ": encode produced " + std::to_string(again.size()) +
                             " bytes, encodedSize() says " + std::to_string(advertised));
  }
  std::vector<float> third(n);
  try {
    codec.decode(again.data(), again.size(), shape, third.data());
  } catch (const CodecError& e) {
    throw FuzzInvariantError(where + ": cannot decode its own encoding of a decoded payload: " + e.what());
  }
  if (codec.lossless() && !sameBits(first, third)) {
    throw FuzzInvariantError(where + ": lossless codec changed values on a round trip");
  }
}

std::vector<std::uint8_t> makeCodecFuzzInput(std::size_t specIndex, const std::vector<std::int64_t>& shape,
                                             const std::vector<std::uint8_t>& payload) {
  if (specIndex >= fuzzedCodecSpecs().size() || shape.size() > kMaxRank) {
    throw std::invalid_argument("makeCodecFuzzInput: spec index or rank out of range");
  }
  std::vector<std::uint8_t> input{static_cast<std::uint8_t>(specIndex), static_cast<std::uint8_t>(shape.size())};
  for (const std::int64_t d : shape) {
    if (d < 0 || d >= kDimModulus) throw std::invalid_argument("makeCodecFuzzInput: dimension out of range");
    input.push_back(static_cast<std::uint8_t>(d));
  }
  input.insert(input.end(), payload.begin(), payload.end());
  return input;
}

}  // namespace tandem::compression::fuzz

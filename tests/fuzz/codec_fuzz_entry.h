#pragma once
// The one entry point shared by the libFuzzer target (codec_fuzzer.cpp) and the corpus
// test that runs in CI without clang (tests/compression/codec_corpus_test.cpp).
//
// A fuzz input is
//   byte 0          codec: index into fuzzedCodecSpecs(), modulo its size
//   byte 1          rank: value % 6 (0 to 5)
//   bytes 2..2+rank dimensions: value % 17 each (0 to 16)
//   the rest        the payload handed to Codec::decode()
// so the fuzzer mutates codec choice, shape and payload together.

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace tandem::compression::fuzz {

// A property of the codecs failed on some input (not a decode error: those are expected).
class FuzzInvariantError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

// The codecs fuzzed. Existing corpus files refer to them by index: append, never reorder.
const std::vector<std::string>& fuzzedCodecSpecs();

// Decodes the input's payload with its codec and shape. A CodecError is the expected answer
// to a bad payload and is swallowed. When decoding succeeds, checks that decoding again gives
// the same bits, that re-encoding the output yields a payload of the advertised size that
// decodes, and for lossless codecs that the round trip is exact; a violation throws
// FuzzInvariantError. Any other exception, or a crash, is a bug in a decoder.
void runCodecFuzzInput(const std::uint8_t* data, std::size_t size);

// Builds an input in the format above (dimensions must be 0 to 16, rank at most 5).
std::vector<std::uint8_t> makeCodecFuzzInput(std::size_t specIndex, const std::vector<std::int64_t>& shape,
                                             const std::vector<std::uint8_t>& payload);

}  // namespace tandem::compression::fuzz

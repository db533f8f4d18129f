#pragma once
// The entry point shared by the protocol libFuzzer target (protocol_fuzzer.cpp) and the
// corpus test that runs in CI without clang (protocol_corpus_test.cpp).
//
// A fuzz input is a multipart message as the transport receives it (routing id removed):
//   byte 0                 number of frames, value % 9 (0 to 8)
//   per frame              a 4-byte little-endian length (clipped to what is left), then the bytes
// The input is parsed exactly as a received message (header frame, frame count and sizes),
// and every codec payload that passes is decoded.

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace tandem::transport::fuzz {

// A property failed (not a rejection: those are the expected answer to bad input).
class FuzzInvariantError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

// Parses the input. WireError (and CodecError for a bad payload) are swallowed. When a
// message parses, re-encoding its header must give a frame that parses to the same
// encoding again; a violation throws FuzzInvariantError.
void runProtocolFuzzInput(const std::uint8_t* data, std::size_t size);

// Builds an input from frames, in the format above.
std::vector<std::uint8_t> makeProtocolFuzzInput(const std::vector<std::string>& frames);

}  // namespace tandem::transport::fuzz

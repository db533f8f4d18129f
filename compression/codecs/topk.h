#pragma once
// `topk:<ratio>`: keeps the k = topkCount(ratio, numel) elements of largest magnitude and
// drops the rest (decoded as 0). Which elements are kept is fully determined: larger |x|
// first, equal magnitudes by lower index, so payloads are bit-identical whatever the
// thread count. NaNs count as larger than any number.
//
// Payload (little-endian):
//   u32  k                 must equal topkCount(ratio, numel)
//   k × u32 index          strictly increasing, each < numel
//   k × f32 value          the kept values, in index order
// Size: 4 + 8 · k bytes.

#include <cstddef>
#include <memory>
#include <string>

#include "compression/codec.h"

namespace tandem::compression {

// ceil(ratio · numel), at least 1 for a non-empty tensor. A product within a relative 1e-9
// of an integer counts as that integer: topk:0.3 of 10 elements keeps 3, although
// 0.3 · 10 is 3.0000000000000004 in binary floating point.
std::size_t topkCount(double ratio, std::size_t numel);

// Parses the argument of "topk:<ratio>": a plain decimal number (no hex, inf or nan) with
// 0 < ratio <= 1. Throws CodecError naming the argument otherwise.
double parseTopkRatio(const std::string& argument);

// Throws CodecError unless 0 < ratio <= 1.
std::unique_ptr<Codec> makeTopkCodec(double ratio);

}  // namespace tandem::compression

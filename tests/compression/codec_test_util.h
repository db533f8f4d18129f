#pragma once
// Data generators and the per-family accuracy contract shared by the codec tests.

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "compression/codec.h"

namespace tandem::compression::test {

// Named float data sets, each of n values from a fixed seed.
struct DataSet {
  std::string name;
  std::vector<float> (*make)(std::size_t n, std::uint32_t seed);
};
// normal, relu (half zeros), negative_only, huge_range (±3e38), tiny_range (1 + a few ulps),
// constant, signed_zeros, subnormal, mixed_magnitudes (1e-30 to 1e30), ties (few distinct).
const std::vector<DataSet>& dataSets();

std::vector<float> normalData(std::size_t n, std::uint32_t seed, float mean = 0.0f, float stddev = 1.0f);

// Checks that `decoded` honours the documented contract of `spec` (its lossless stage, if
// any, changes nothing) for input x of `shape`: bit-exact for none, correctly rounded
// bounds for fp16/bf16, |error| <= scale/2 per group for intB[_channel], exactly the
// top-k magnitudes for topk. Reports failures through gtest (ADD_FAILURE), at most a few.
void expectWithinContract(const std::string& spec, const std::vector<float>& x, const std::vector<std::int64_t>& shape,
                          const std::vector<float>& decoded);

// The part of a spec before its lossless stage: "int8" for "int8+zstd".
std::string baseSpec(const std::string& spec);

// Bit-exact equality that treats every NaN pattern as itself (memcmp).
bool sameBits(const std::vector<float>& a, const std::vector<float>& b);

// What decoding `payload` as `shape` throws (CodecError's message), or "(no error)".
std::string decodeError(const Codec& codec, const std::vector<std::uint8_t>& payload, const std::vector<std::int64_t>& shape);

// A gtest-safe test name for a spec: "topk:0.1+zstd" -> "topk_0_1_zstd".
std::string specTestName(const std::string& spec);

}  // namespace tandem::compression::test

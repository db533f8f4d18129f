#pragma once
// The inner loops of the affine quantiser (compression/codecs/affine_kernels.h), where its
// time goes. Each has a scalar definition, an SSE2 version (the x86-64 baseline) and an AVX2
// version chosen at run time when the CPU has it; all versions perform the same IEEE
// operations in the same order, so they produce identical bits and a payload decodes the
// same on every machine. Internal to compression/.
// Threading: pure functions.

#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace tandem::compression::detail {

struct FloatRange {
  float min = std::numeric_limits<float>::infinity();
  float max = -std::numeric_limits<float>::infinity();
};

// Written as `b < a ? b : a` rather than std::min so that NaN never enters the
// accumulator (comparisons with NaN are false), matching minps/maxps operand semantics.
inline FloatRange combine(FloatRange a, FloatRange b) {
  return {b.min < a.min ? b.min : a.min, b.max > a.max ? b.max : a.max};
}

// Min and max of x[0, n) folded into `acc`; NaNs are skipped, ±inf take part.
FloatRange rangeOf(const float* x, std::size_t n, FloatRange acc);

// code = clamp(round((x − min) · inv), 0, qmax), rounding as +0.5 then truncation (exact
// enough because the value is non-negative); NaN becomes 0. qmax <= 255.
inline std::uint8_t quantizeOne(float x, float min, float inv, float qmax) {
  float v = (x - min) * inv + 0.5f;
  v = v > 0.0f ? v : 0.0f;  // NaN fails the comparison and lands on 0 before the cast
  v = v < qmax ? v : qmax;
  return static_cast<std::uint8_t>(static_cast<std::int32_t>(v));
}

void quantizeSpan(const float* x, std::size_t n, float min, float inv, float qmax, std::uint8_t* codes);

// out[i] = min + codes[i] · scale (a multiply then an add, never fused).
void dequantizeSpan(const std::uint8_t* codes, std::size_t n, float min, float scale, float* out);

// Which version runs on this CPU: "avx2", "sse2" or "scalar" (reported by the benchmark).
const char* affineKernelIsa();

// One version of the three kernels.
struct AffineKernels {
  const char* isa;
  FloatRange (*range)(const float* x, std::size_t n, FloatRange acc);
  void (*quantize)(const float* x, std::size_t n, float min, float inv, float qmax, std::uint8_t* codes);
  void (*dequantize)(const std::uint8_t* codes, std::size_t n, float min, float scale, float* out);
};

// Every version this CPU can run, the one the functions above use first; the tests check
// that they all agree bit for bit.
const std::vector<AffineKernels>& availableAffineKernels();

}  // namespace tandem::compression::detail

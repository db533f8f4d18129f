#pragma once
// IEEE binary16 (fp16) and bfloat16 conversions, round-to-nearest-even, written out so the
// library needs no compiler extension type. Exact for every value representable in the
// target format. fp16 follows IEEE overflow rules: finite floats with |x| >= 65520 become
// ±inf. NaNs stay NaNs (quietened, sign and top payload bits kept), as F16C hardware does.
//
// The bulk functions use the F16C instructions when the CPU has them (checked once at run
// time) and the scalar functions otherwise; both give the same bits for every input.
// Threading: pure functions, callable from any thread.

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace tandem::compression {

inline std::uint32_t floatBits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

inline float bitsToFloat(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline std::uint16_t floatToHalfBits(float f) {
  std::uint32_t x = floatBits(f);
  const std::uint32_t sign = x & 0x80000000u;
  x ^= sign;
  std::uint32_t h;
  if (x >= 0x47800000u) {
    // |f| >= 65536, inf or NaN. (Finite values in [65520, 65536) overflow to inf in the
    // normal branch below through the rounding carry.)
    h = x > 0x7F800000u ? (0x7E00u | ((x >> 13) & 0x3FFu)) : 0x7C00u;
  } else if (x < 0x38800000u) {
    // |f| < 2^-14: a half subnormal or zero. Adding 0.5 puts the half-subnormal ulp (2^-24)
    // at the float ulp of [0.5, 1), so the FPU's own round-to-nearest-even does the work.
    h = floatBits(bitsToFloat(x) + 0.5f) - 0x3F000000u;
  } else {
    // Normal range: rebias the exponent (15 - 127) and round the 13 dropped mantissa bits
    // to nearest even; a carry out of the mantissa correctly bumps the exponent.
    const std::uint32_t mantissaOdd = (x >> 13) & 1u;
    x += 0xC8000FFFu;
    x += mantissaOdd;
    h = x >> 13;
  }
  return static_cast<std::uint16_t>(h | (sign >> 16));
}

inline float halfBitsToFloat(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1Fu;
  const std::uint32_t mantissa = h & 0x3FFu;
  std::uint32_t bits;
  if (exponent == 0x1Fu) {
    bits = 0x7F800000u | (mantissa << 13) | (mantissa != 0 ? 0x00400000u : 0u);
  } else if (exponent == 0) {
    // Zero or subnormal: mantissa · 2^-24, exact in float.
    bits = floatBits(static_cast<float>(mantissa) * 5.9604644775390625e-8f);
  } else {
    bits = ((exponent + 112u) << 23) | (mantissa << 13);
  }
  return bitsToFloat(sign | bits);
}

inline std::uint16_t floatToBf16Bits(float f) {
  const std::uint32_t x = floatBits(f);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<std::uint16_t>((x >> 16) | 0x40u);
  return static_cast<std::uint16_t>((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16);
}

inline float bf16BitsToFloat(std::uint16_t b) { return bitsToFloat(static_cast<std::uint32_t>(b) << 16); }

// Bulk conversions of n values; `in` and `out` must not overlap.
void floatsToHalf(const float* in, std::uint16_t* out, std::size_t n);
void halfsToFloat(const std::uint16_t* in, float* out, std::size_t n);
void floatsToBf16(const float* in, std::uint16_t* out, std::size_t n);
void bf16sToFloat(const std::uint16_t* in, float* out, std::size_t n);

// True when the bulk fp16 functions use the F16C instructions on this CPU.
bool halfConversionUsesF16c();

}  // namespace tandem::compression

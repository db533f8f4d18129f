#include "compression/float16.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define TANDEM_F16C_DISPATCH 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define TANDEM_F16C_DISPATCH 0
#endif

namespace tandem::compression {
namespace {

// Branch-free form of floatToBf16Bits so that the loop vectorises. With SSE2 alone the
// compiler narrows 32 to 16 bits through shuffles (about 10 GB/s); built for AVX2 it packs
// directly, hence the second copy below.
inline __attribute__((always_inline)) void floatsToBf16Loop(const float* in, std::uint16_t* out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t x = floatBits(in[i]);
    const std::uint32_t rounded = (x + 0x7FFFu + ((x >> 16) & 1u)) >> 16;
    const std::uint32_t quietNan = (x >> 16) | 0x40u;
    out[i] = static_cast<std::uint16_t>((x & 0x7FFFFFFFu) > 0x7F800000u ? quietNan : rounded);
  }
}

#if TANDEM_F16C_DISPATCH
// Compiled for F16C+AVX through the target attribute, so the rest of the library keeps
// the baseline ISA; only called after the run-time CPU check below.
__attribute__((target("avx,f16c"))) void floatsToHalfF16c(const float* in, std::uint16_t* out, std::size_t n) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(in + i);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  }
  for (; i < n; ++i) out[i] = floatToHalfBits(in[i]);
}

__attribute__((target("avx,f16c"))) void halfsToFloatF16c(const std::uint16_t* in, float* out, std::size_t n) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i));
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; ++i) out[i] = halfBitsToFloat(in[i]);
}

// clang does not know "f16c" as a __builtin_cpu_supports feature, so read CPUID leaf 1
// (ECX bit 29) directly; "avx" also confirms the OS saves the YMM registers.
__attribute__((target("avx2"))) void floatsToBf16Avx2(const float* in, std::uint16_t* out, std::size_t n) {
  floatsToBf16Loop(in, out, n);
}

bool cpuHasAvx2() {
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
}

bool cpuHasF16c() {
  static const bool has = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) == 0) return false;
    return (ecx & (1u << 29)) != 0 && __builtin_cpu_supports("avx");
  }();
  return has;
}
#endif

}  // namespace

bool halfConversionUsesF16c() {
#if TANDEM_F16C_DISPATCH
  return cpuHasF16c();
#else
  return false;
#endif
}

void floatsToHalf(const float* in, std::uint16_t* out, std::size_t n) {
#if TANDEM_F16C_DISPATCH
  if (cpuHasF16c()) {
    floatsToHalfF16c(in, out, n);
    return;
  }
#endif
  for (std::size_t i = 0; i < n; ++i) out[i] = floatToHalfBits(in[i]);
}

void halfsToFloat(const std::uint16_t* in, float* out, std::size_t n) {
#if TANDEM_F16C_DISPATCH
  if (cpuHasF16c()) {
    halfsToFloatF16c(in, out, n);
    return;
  }
#endif
  for (std::size_t i = 0; i < n; ++i) out[i] = halfBitsToFloat(in[i]);
}

void floatsToBf16(const float* in, std::uint16_t* out, std::size_t n) {
#if TANDEM_F16C_DISPATCH
  if (cpuHasAvx2()) {
    floatsToBf16Avx2(in, out, n);
    return;
  }
#endif
  floatsToBf16Loop(in, out, n);
}

void bf16sToFloat(const std::uint16_t* in, float* out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = bf16BitsToFloat(in[i]);
}

}  // namespace tandem::compression

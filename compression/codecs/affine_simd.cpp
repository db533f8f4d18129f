#include "compression/codecs/affine_simd.h"

#if defined(__GNUC__) && defined(__x86_64__)
#define TANDEM_X86_SIMD 1
#include <immintrin.h>
#else
#define TANDEM_X86_SIMD 0
#endif

namespace tandem::compression::detail {
namespace {

FloatRange rangeScalar(const float* x, std::size_t n, FloatRange acc) {
  for (std::size_t i = 0; i < n; ++i) acc = combine(acc, FloatRange{x[i], x[i]});
  return acc;
}

void quantizeScalar(const float* x, std::size_t n, float min, float inv, float qmax, std::uint8_t* codes) {
  for (std::size_t i = 0; i < n; ++i) codes[i] = quantizeOne(x[i], min, inv, qmax);
}

void dequantizeScalar(const std::uint8_t* codes, std::size_t n, float min, float scale, float* out) {
  for (std::size_t i = 0; i < n; ++i) out[i] = min + static_cast<float>(codes[i]) * scale;
}

#if TANDEM_X86_SIMD
// GCC does not vectorise a float min/max reduction without -ffast-math (it may not reorder
// signed zeros), and its own vectorisation of the quantiser narrows int32 to uint8 through
// a long chain of shuffles; hence hand-written loops. min_ps(v, acc) returns acc when v is
// NaN, which is what combine() does; max_ps(v, 0) returns 0 for NaN, like quantizeOne().
// No loop uses FMA: fused results would differ from the scalar version in the last bit.

// Four named accumulators, not an array: GCC keeps an array of vectors on the stack and
// the loop then runs at store-forwarding latency.
FloatRange rangeSse2(const float* x, std::size_t n, FloatRange acc) {
  std::size_t i = 0;
  if (n >= 16) {
    __m128 lo0 = _mm_set1_ps(acc.min), lo1 = lo0, lo2 = lo0, lo3 = lo0;
    __m128 hi0 = _mm_set1_ps(acc.max), hi1 = hi0, hi2 = hi0, hi3 = hi0;
    for (; i + 16 <= n; i += 16) {
      const __m128 v0 = _mm_loadu_ps(x + i);
      const __m128 v1 = _mm_loadu_ps(x + i + 4);
      const __m128 v2 = _mm_loadu_ps(x + i + 8);
      const __m128 v3 = _mm_loadu_ps(x + i + 12);
      lo0 = _mm_min_ps(v0, lo0);
      lo1 = _mm_min_ps(v1, lo1);
      lo2 = _mm_min_ps(v2, lo2);
      lo3 = _mm_min_ps(v3, lo3);
      hi0 = _mm_max_ps(v0, hi0);
      hi1 = _mm_max_ps(v1, hi1);
      hi2 = _mm_max_ps(v2, hi2);
      hi3 = _mm_max_ps(v3, hi3);
    }
    alignas(16) float los[4];
    alignas(16) float his[4];
    _mm_store_ps(los, _mm_min_ps(_mm_min_ps(lo0, lo1), _mm_min_ps(lo2, lo3)));
    _mm_store_ps(his, _mm_max_ps(_mm_max_ps(hi0, hi1), _mm_max_ps(hi2, hi3)));
    for (int k = 0; k < 4; ++k) acc = combine(acc, FloatRange{los[k], his[k]});
  }
  return rangeScalar(x + i, n - i, acc);
}

void quantizeSse2(const float* x, std::size_t n, float min, float inv, float qmax, std::uint8_t* codes) {
  const __m128 vmin = _mm_set1_ps(min);
  const __m128 vinv = _mm_set1_ps(inv);
  const __m128 half = _mm_set1_ps(0.5f);
  const __m128 zero = _mm_setzero_ps();
  const __m128 vqmax = _mm_set1_ps(qmax);
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m128i q[4];
    for (int k = 0; k < 4; ++k) {
      __m128 v = _mm_add_ps(_mm_mul_ps(_mm_sub_ps(_mm_loadu_ps(x + i + 4 * k), vmin), vinv), half);
      q[k] = _mm_cvttps_epi32(_mm_min_ps(_mm_max_ps(v, zero), vqmax));
    }
    // Values are in [0, 255]: two saturating packs narrow them without changing them.
    const __m128i bytes = _mm_packus_epi16(_mm_packs_epi32(q[0], q[1]), _mm_packs_epi32(q[2], q[3]));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(codes + i), bytes);
  }
  quantizeScalar(x + i, n - i, min, inv, qmax, codes + i);
}

__attribute__((target("avx2"))) FloatRange rangeAvx2(const float* x, std::size_t n, FloatRange acc) {
  std::size_t i = 0;
  if (n >= 32) {
    __m256 lo0 = _mm256_set1_ps(acc.min), lo1 = lo0, lo2 = lo0, lo3 = lo0;
    __m256 hi0 = _mm256_set1_ps(acc.max), hi1 = hi0, hi2 = hi0, hi3 = hi0;
    for (; i + 32 <= n; i += 32) {
      const __m256 v0 = _mm256_loadu_ps(x + i);
      const __m256 v1 = _mm256_loadu_ps(x + i + 8);
      const __m256 v2 = _mm256_loadu_ps(x + i + 16);
      const __m256 v3 = _mm256_loadu_ps(x + i + 24);
      lo0 = _mm256_min_ps(v0, lo0);
      lo1 = _mm256_min_ps(v1, lo1);
      lo2 = _mm256_min_ps(v2, lo2);
      lo3 = _mm256_min_ps(v3, lo3);
      hi0 = _mm256_max_ps(v0, hi0);
      hi1 = _mm256_max_ps(v1, hi1);
      hi2 = _mm256_max_ps(v2, hi2);
      hi3 = _mm256_max_ps(v3, hi3);
    }
    alignas(32) float los[8];
    alignas(32) float his[8];
    _mm256_store_ps(los, _mm256_min_ps(_mm256_min_ps(lo0, lo1), _mm256_min_ps(lo2, lo3)));
    _mm256_store_ps(his, _mm256_max_ps(_mm256_max_ps(hi0, hi1), _mm256_max_ps(hi2, hi3)));
    for (int k = 0; k < 8; ++k) acc = combine(acc, FloatRange{los[k], his[k]});
  }
  return rangeScalar(x + i, n - i, acc);
}

__attribute__((target("avx2"))) void quantizeAvx2(const float* x, std::size_t n, float min, float inv, float qmax,
                                                  std::uint8_t* codes) {
  const __m256 vmin = _mm256_set1_ps(min);
  const __m256 vinv = _mm256_set1_ps(inv);
  const __m256 half = _mm256_set1_ps(0.5f);
  const __m256 zero = _mm256_setzero_ps();
  const __m256 vqmax = _mm256_set1_ps(qmax);
  // The packs work within 128-bit lanes, leaving 4-byte groups in the order
  // q0.lo q1.lo q2.lo q3.lo q0.hi q1.hi q2.hi q3.hi; this permutation restores it.
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i q[4];
    for (int k = 0; k < 4; ++k) {
      __m256 v = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8 * k), vmin), vinv), half);
      q[k] = _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(v, zero), vqmax));
    }
    const __m256i packed = _mm256_packus_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(codes + i), _mm256_permutevar8x32_epi32(packed, order));
  }
  quantizeScalar(x + i, n - i, min, inv, qmax, codes + i);
}

__attribute__((target("avx2"))) void dequantizeAvx2(const std::uint8_t* codes, std::size_t n, float min, float scale,
                                                    float* out) {
  const __m256 vmin = _mm256_set1_ps(min);
  const __m256 vscale = _mm256_set1_ps(scale);
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int k = 0; k < 4; ++k) {
      const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + i + 8 * k));
      const __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes));
      _mm256_storeu_ps(out + i + 8 * k, _mm256_add_ps(vmin, _mm256_mul_ps(v, vscale)));
    }
  }
  dequantizeScalar(codes + i, n - i, min, scale, out + i);
}

#endif

}  // namespace

const std::vector<AffineKernels>& availableAffineKernels() {
  static const std::vector<AffineKernels> kernels = [] {
    std::vector<AffineKernels> k;
#if TANDEM_X86_SIMD
    if (__builtin_cpu_supports("avx2")) k.push_back({"avx2", &rangeAvx2, &quantizeAvx2, &dequantizeAvx2});
    // Without AVX2 the compiler's own SSE2 vectorisation of the scalar dequantiser is as
    // good as a hand-written one.
    k.push_back({"sse2", &rangeSse2, &quantizeSse2, &dequantizeScalar});
#endif
    k.push_back({"scalar", &rangeScalar, &quantizeScalar, &dequantizeScalar});
    return k;
  }();
  return kernels;
}

FloatRange rangeOf(const float* x, std::size_t n, FloatRange acc) {
  return availableAffineKernels().front().range(x, n, acc);
}

void quantizeSpan(const float* x, std::size_t n, float min, float inv, float qmax, std::uint8_t* codes) {
  availableAffineKernels().front().quantize(x, n, min, inv, qmax, codes);
}

void dequantizeSpan(const std::uint8_t* codes, std::size_t n, float min, float scale, float* out) {
  availableAffineKernels().front().dequantize(codes, n, min, scale, out);
}

const char* affineKernelIsa() { return availableAffineKernels().front().isa; }

}  // namespace tandem::compression::detail

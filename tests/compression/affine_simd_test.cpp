// The SIMD versions of the quantiser kernels must agree bit for bit with the scalar one
// (payloads may not depend on the machine), including on NaN, ±inf and odd lengths.

#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "compression/codecs/affine_simd.h"
#include "tests/compression/codec_test_util.h"

namespace tandem::compression::detail {
namespace {

std::vector<float> awkwardValues(std::size_t n) {
  std::vector<float> x = test::normalData(n, 77, 0.0f, 4.0f);
  std::mt19937 rng(78);
  const float specials[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(), -0.0f, 0.0f, 1e30f, -1e30f};
  for (std::size_t i = 0; i < n / 10; ++i) x[rng() % n] = specials[rng() % 7];
  return x;
}

TEST(AffineKernels, EveryVersionAgreesWithScalar) {
  const auto& kernels = availableAffineKernels();
  ASSERT_FALSE(kernels.empty());
  EXPECT_STREQ(kernels.back().isa, "scalar");
  EXPECT_STREQ(affineKernelIsa(), kernels.front().isa);
  const AffineKernels& reference = kernels.back();
  for (const std::size_t n : {0u, 1u, 15u, 16u, 17u, 31u, 32u, 33u, 100u, 1027u}) {
    const std::vector<float> x = awkwardValues(n);
    std::vector<std::uint8_t> codes(n);
    for (std::size_t i = 0; i < n; ++i) codes[i] = static_cast<std::uint8_t>(i * 37);
    for (const AffineKernels& k : kernels) {
      SCOPED_TRACE(std::string(k.isa) + ", n = " + std::to_string(n));
      const FloatRange got = k.range(x.data(), n, FloatRange{});
      const FloatRange want = reference.range(x.data(), n, FloatRange{});
      EXPECT_EQ(std::memcmp(&got, &want, sizeof got), 0);
      for (const float qmax : {255.0f, 15.0f, 3.0f}) {
        std::vector<std::uint8_t> a(n);
        std::vector<std::uint8_t> b(n);
        k.quantize(x.data(), n, -3.0f, qmax / 6.0f, qmax, a.data());
        reference.quantize(x.data(), n, -3.0f, qmax / 6.0f, qmax, b.data());
        EXPECT_EQ(a, b) << "qmax " << qmax;
      }
      std::vector<float> a(n);
      std::vector<float> b(n);
      k.dequantize(codes.data(), n, -1.7f, 0.013f, a.data());
      reference.dequantize(codes.data(), n, -1.7f, 0.013f, b.data());
      EXPECT_TRUE(test::sameBits(a, b));
    }
  }
}

}  // namespace
}  // namespace tandem::compression::detail

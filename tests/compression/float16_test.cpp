// fp16 and bf16 conversions: exhaustive over the 16-bit formats, correct rounding against
// an independent reference, and the bulk (F16C where available) path against the scalar one.

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "compression/float16.h"
#include "compression/registry.h"

namespace tandem::compression {
namespace {

// Value of an IEEE binary16 bit pattern, computed independently of the code under test.
double referenceHalfValue(std::uint16_t h) {
  const int sign = (h & 0x8000) ? -1 : 1;
  const int exponent = (h >> 10) & 0x1F;
  const int mantissa = h & 0x3FF;
  if (exponent == 0x1F) return mantissa ? std::numeric_limits<double>::quiet_NaN() : sign * HUGE_VAL;
  if (exponent == 0) return sign * std::ldexp(mantissa, -24);
  return sign * std::ldexp(1024 + mantissa, exponent - 25);
}

std::vector<float> interestingFloats() {
  std::vector<float> v{0.0f, -0.0f, 1.0f, -1.0f, 65504.0f, 65519.99f, 65520.0f, -65520.0f, 1e10f, -1e10f,
                       6.1035156e-05f, 6.0975552e-05f, 5.9604645e-08f, 2.9802322e-08f, 2.9802326e-08f, 1e-30f,
                       std::numeric_limits<float>::denorm_min(), std::numeric_limits<float>::max(),
                       std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                       std::numeric_limits<float>::quiet_NaN(), bitsToFloat(0x7F800001u) /* signalling */,
                       bitsToFloat(0xFFC12345u)};
  // Every half value and every midpoint between neighbours (ties), with the floats just
  // either side of each midpoint.
  for (std::uint32_t h = 0; h < 0x7C00; ++h) {
    const float a = halfBitsToFloat(static_cast<std::uint16_t>(h));
    const float b = h + 1 < 0x7C00 ? halfBitsToFloat(static_cast<std::uint16_t>(h + 1)) : 65520.0f;
    const float mid = static_cast<float>((static_cast<double>(a) + b) / 2);
    for (float x : {a, mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e30f)}) {
      v.push_back(x);
      v.push_back(-x);
    }
  }
  std::mt19937 rng(11);
  for (int i = 0; i < 200000; ++i) v.push_back(bitsToFloat(static_cast<std::uint32_t>(rng())));
  return v;
}

TEST(Float16, DecodesEveryHalfExactly) {
  for (std::uint32_t h = 0; h <= 0xFFFF; ++h) {
    const double expected = referenceHalfValue(static_cast<std::uint16_t>(h));
    const float got = halfBitsToFloat(static_cast<std::uint16_t>(h));
    if (std::isnan(expected)) {
      EXPECT_TRUE(std::isnan(got)) << std::hex << h;
    } else {
      EXPECT_EQ(static_cast<double>(got), expected) << std::hex << h;
      EXPECT_EQ(std::signbit(got), (h & 0x8000) != 0) << std::hex << h;
    }
  }
}

TEST(Float16, EveryHalfRoundTripsBitExactly) {
  for (std::uint32_t h = 0; h <= 0xFFFF; ++h) {
    const auto bits = static_cast<std::uint16_t>(h);
    const bool nan = (h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0;
    // NaNs come back quietened (bit 9 set), as F16C does.
    const std::uint16_t expected = nan ? static_cast<std::uint16_t>(h | 0x200) : bits;
    EXPECT_EQ(floatToHalfBits(halfBitsToFloat(bits)), expected) << std::hex << h;
  }
}

TEST(Float16, RoundsToNearestEven) {
  for (const float x : interestingFloats()) {
    if (std::isnan(x)) {
      EXPECT_TRUE(std::isnan(halfBitsToFloat(floatToHalfBits(x))));
      continue;
    }
    const std::uint16_t h = floatToHalfBits(x);
    const double got = referenceHalfValue(h);
    if (std::fabs(x) >= 65520.0) {
      EXPECT_TRUE(std::isinf(got) && std::signbit(got) == std::signbit(x)) << x;
      continue;
    }
    // No half is nearer, and on a tie the chosen one has an even mantissa.
    const double error = std::fabs(got - x);
    for (int delta : {-1, 1}) {
      const auto neighbour = static_cast<std::uint16_t>((h & 0x7FFF) == 0 && delta < 0 ? (h ^ 0x8000) + 1 : h + delta);
      const double other = referenceHalfValue(neighbour);
      if (std::isnan(other) || std::isinf(other)) continue;
      const double otherError = std::fabs(other - x);
      EXPECT_LE(error, otherError) << "x = " << x << " became " << got << ", " << other << " is nearer";
      if (error == otherError && error != 0.0) {
        EXPECT_EQ(h & 1, 0) << "tie at " << x << " not rounded to even";
      }
    }
  }
}

TEST(Float16, BulkConversionMatchesScalar) {
  const std::vector<float> x = interestingFloats();
  std::vector<std::uint16_t> bulk(x.size());
  floatsToHalf(x.data(), bulk.data(), x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    ASSERT_EQ(bulk[i], floatToHalfBits(x[i])) << "x = " << x[i] << " (F16C: " << halfConversionUsesF16c() << ")";
  }
  std::vector<std::uint16_t> all(0x10000);
  for (std::uint32_t h = 0; h <= 0xFFFF; ++h) all[h] = static_cast<std::uint16_t>(h);
  std::vector<float> back(all.size());
  halfsToFloat(all.data(), back.data(), all.size());
  for (std::uint32_t h = 0; h <= 0xFFFF; ++h) {
    ASSERT_EQ(floatBits(back[h]), floatBits(halfBitsToFloat(static_cast<std::uint16_t>(h)))) << std::hex << h;
  }
}

TEST(Bfloat16, RoundTripsEveryBf16AndRoundsToNearestEven) {
  for (std::uint32_t b = 0; b <= 0xFFFF; ++b) {
    const auto bits = static_cast<std::uint16_t>(b);
    const float x = bf16BitsToFloat(bits);
    EXPECT_EQ(floatBits(x), b << 16);
    const bool nan = (b & 0x7F80) == 0x7F80 && (b & 0x7F) != 0;
    EXPECT_EQ(floatToBf16Bits(x), nan ? static_cast<std::uint16_t>(b | 0x40) : bits) << std::hex << b;
  }
  // Midpoints (low half 0x8000) go to the even neighbour; anything above goes up.
  EXPECT_EQ(floatToBf16Bits(bitsToFloat(0x3F808000u)), 0x3F80);  // 1.0 + half ulp: stays at even 0x3F80
  EXPECT_EQ(floatToBf16Bits(bitsToFloat(0x3F818000u)), 0x3F82);  // odd 0x3F81 + half ulp: up to even
  EXPECT_EQ(floatToBf16Bits(bitsToFloat(0x3F808001u)), 0x3F81);
  EXPECT_EQ(floatToBf16Bits(bitsToFloat(0x3F807FFFu)), 0x3F80);
  EXPECT_EQ(floatToBf16Bits(std::numeric_limits<float>::max()), 0x7F80);  // overflows to +inf
  EXPECT_EQ(floatToBf16Bits(-std::numeric_limits<float>::infinity()), 0xFF80);
}

TEST(Bfloat16, BulkConversionMatchesScalar) {
  const std::vector<float> x = interestingFloats();
  std::vector<std::uint16_t> bulk(x.size());
  floatsToBf16(x.data(), bulk.data(), x.size());
  for (std::size_t i = 0; i < x.size(); ++i) ASSERT_EQ(bulk[i], floatToBf16Bits(x[i])) << x[i];
}

// The codecs are exact on values the format represents.
TEST(HalfCodecs, ExactOnRepresentableValues) {
  std::mt19937 rng(3);
  std::vector<float> halves;
  std::vector<float> bf16s;
  for (int i = 0; i < 4099; ++i) {
    std::uint16_t h = static_cast<std::uint16_t>(rng());
    if ((h & 0x7C00) == 0x7C00) h &= 0xBFFF;  // no inf/NaN
    halves.push_back(halfBitsToFloat(h));
    std::uint16_t b = static_cast<std::uint16_t>(rng());
    if ((b & 0x7F80) == 0x7F80) b &= 0xBFFF;
    bf16s.push_back(bf16BitsToFloat(b));
  }
  for (const auto& [spec, values] : {std::pair{"fp16", &halves}, std::pair{"bf16", &bf16s}}) {
    const auto codec = makeCodec(spec);
    const std::vector<std::int64_t> shape{static_cast<std::int64_t>(values->size())};
    const auto payload = codec->encode(values->data(), shape);
    ASSERT_EQ(payload.size(), 2 * values->size());
    std::vector<float> out(values->size());
    codec->decode(payload.data(), payload.size(), shape, out.data());
    EXPECT_EQ(0, std::memcmp(out.data(), values->data(), out.size() * sizeof(float))) << spec;
  }
}

TEST(HalfCodecs, PayloadIsLittleEndianHalves) {
  const float x[] = {1.0f, -2.0f, 65504.0f};
  const auto payload = makeCodec("fp16")->encode(x, {3});
  EXPECT_EQ(payload, (std::vector<std::uint8_t>{0x00, 0x3C, 0x00, 0xC0, 0xFF, 0x7B}));
  const auto bf = makeCodec("bf16")->encode(x, {3});
  EXPECT_EQ(bf, (std::vector<std::uint8_t>{0x80, 0x3F, 0x00, 0xC0, 0x80, 0x47}));
}

}  // namespace
}  // namespace tandem::compression

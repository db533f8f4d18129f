// int8/int4/int2 per tensor and per channel: the scale/2 error bound read back from the
// payload, exact constants, the packed layout, and rejection of inconsistent payloads.

#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "compression/codecs/affine_quant.h"
#include "compression/codecs/channel_quant.h"
#include "compression/registry.h"
#include "tests/compression/codec_test_util.h"

namespace tandem::compression {
namespace {

using ::testing::HasSubstr;

float floatAt(const std::vector<std::uint8_t>& p, std::size_t offset) {
  float v;
  std::memcpy(&v, p.data() + offset, sizeof v);
  return v;
}

void putFloat(std::vector<std::uint8_t>& p, std::size_t offset, float v) { std::memcpy(p.data() + offset, &v, sizeof v); }

std::vector<float> decode(const Codec& codec, const std::vector<std::uint8_t>& payload, const std::vector<std::int64_t>& shape) {
  std::vector<float> out(static_cast<std::size_t>(checkedNumel(shape)));
  codec.decode(payload.data(), payload.size(), shape, out.data());
  return out;
}

class AffineBits : public ::testing::TestWithParam<int> {};

TEST_P(AffineBits, MaxErrorIsHalfTheStoredScalePerTensor) {
  const int bits = GetParam();
  const auto codec = makeAffineQuantCodec(bits);
  const std::vector<std::int64_t> shape{7, 13, 5};  // 455 elements: odd
  const auto x = test::normalData(455, 21, 3.0f, 10.0f);
  const auto payload = codec->encode(x.data(), shape);
  ASSERT_EQ(payload[0], bits);
  const float min = floatAt(payload, 1);
  const float scale = floatAt(payload, 5);
  const auto [lo, hi] = std::minmax_element(x.begin(), x.end());
  EXPECT_EQ(min, *lo);
  EXPECT_NEAR(scale, (*hi - *lo) / static_cast<float>((1 << bits) - 1), 1e-6 * scale);
  const auto y = decode(*codec, payload, shape);
  double worst = 0;
  for (std::size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::fabs(static_cast<double>(y[i]) - x[i]));
  EXPECT_LE(worst, scale / 2 * (1 + 1e-4) + 4 * FLT_EPSILON * std::fabs(*hi)) << "scale " << scale;
  // The bound is tight: the worst error is close to scale/2 on 455 values.
  EXPECT_GT(worst, scale / 4);
}

TEST_P(AffineBits, MaxErrorIsHalfTheStoredScalePerChannel) {
  const int bits = GetParam();
  const auto codec = makeChannelQuantCodec(bits);
  const std::int64_t channels = 5;
  const std::vector<std::int64_t> shape{3, channels, 3, 7};
  std::vector<float> x(3 * 5 * 21);
  // Channel c lives around 10^c: one shared scale would wreck the small channels.
  for (std::size_t i = 0; i < x.size(); ++i) {
    const std::size_t c = (i / 21) % channels;
    x[i] = std::pow(10.0f, static_cast<float>(c)) * std::sin(static_cast<float>(i) * 0.37f);
  }
  const auto payload = codec->encode(x.data(), shape);
  ASSERT_EQ(payload.size(), 1 + 8 * channels + (x.size() * bits + 7) / 8);
  const auto y = decode(*codec, payload, shape);
  for (std::size_t c = 0; c < channels; ++c) {
    const float scale = floatAt(payload, 1 + 8 * c + 4);
    for (std::size_t i = 0; i < x.size(); ++i) {
      if ((i / 21) % channels != c) continue;
      EXPECT_LE(std::fabs(y[i] - x[i]), scale / 2 * (1 + 1e-4) + 4 * FLT_EPSILON * std::pow(10.0f, c))
          << "channel " << c << " element " << i;
    }
  }
  // Per-tensor error on channel 0 is far larger than per-channel.
  const auto perTensor = makeAffineQuantCodec(bits);
  const auto z = decode(*perTensor, perTensor->encode(x.data(), shape), shape);
  double channelError = 0;
  double tensorError = 0;
  for (std::size_t i = 0; i < 21; ++i) {
    channelError = std::max(channelError, static_cast<double>(std::fabs(y[i] - x[i])));
    tensorError = std::max(tensorError, static_cast<double>(std::fabs(z[i] - x[i])));
  }
  EXPECT_LT(channelError * 100, tensorError);
}

TEST_P(AffineBits, ConstantTensorsAreExact) {
  for (const float value : {0.0f, -0.0f, 1.5f, -3e38f, 1e-42f}) {
    const auto codec = makeChannelQuantCodec(GetParam());
    const std::vector<float> x(2 * 3 * 5, value);
    const std::vector<std::int64_t> shape{2, 3, 5};
    const auto y = decode(*codec, codec->encode(x.data(), shape), shape);
    for (std::size_t i = 0; i < x.size(); ++i) EXPECT_EQ(y[i], x[i]) << value;
  }
}

TEST_P(AffineBits, ExtremeRangesStayWithinTheBound) {
  const int bits = GetParam();
  const auto codec = makeAffineQuantCodec(bits);
  for (const auto& x : {std::vector<float>{-FLT_MAX, FLT_MAX, 0.0f, 1e38f, -2e38f},
                        std::vector<float>{1e-45f, 3e-45f, 7e-45f, 0.0f, 1.4e-44f},
                        std::vector<float>{1e-38f, 1.1e-38f, 1.2e-38f, 1.3e-38f, 1.05e-38f}}) {
    const std::vector<std::int64_t> shape{5};
    const auto payload = codec->encode(x.data(), shape);
    const float scale = floatAt(payload, 5);
    ASSERT_TRUE(std::isfinite(scale));
    const auto y = decode(*codec, payload, shape);
    double largest = 0;
    for (float v : x) largest = std::max(largest, std::fabs(static_cast<double>(v)));
    // scale/2, a few ulps of the largest value, and a few subnormal steps.
    const double tolerance = static_cast<double>(scale) / 2 * (1 + 1e-4) + 4 * FLT_EPSILON * largest + 1e-44;
    for (std::size_t i = 0; i < x.size(); ++i) {
      ASSERT_TRUE(std::isfinite(y[i]));
      EXPECT_LE(std::fabs(static_cast<double>(y[i]) - x[i]), tolerance) << x[i];
    }
  }
}

TEST_P(AffineBits, NonFiniteInputsDecodeToFiniteValues) {
  const auto codec = makeAffineQuantCodec(GetParam());
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> x{1.0f, inf, -inf, std::numeric_limits<float>::quiet_NaN(), 3.0f, 2.0f};
  const std::vector<std::int64_t> shape{6};
  const auto y = decode(*codec, codec->encode(x.data(), shape), shape);
  for (float v : y) EXPECT_TRUE(std::isfinite(v));
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_FLOAT_EQ(y[1], 3.0f);  // +inf saturates at the top of the finite range
  EXPECT_EQ(y[2], 1.0f);        // -inf at the bottom
  EXPECT_FLOAT_EQ(y[4], 3.0f);
  const std::vector<float> allNan(4, std::numeric_limits<float>::quiet_NaN());
  for (float v : decode(*codec, codec->encode(allNan.data(), {4}), {4})) EXPECT_EQ(v, 0.0f);
}

TEST_P(AffineBits, RejectsAnotherBitWidth) {
  const int bits = GetParam();
  const auto codec = makeAffineQuantCodec(bits);
  const auto x = test::normalData(15, 2);
  auto payload = codec->encode(x.data(), {15});
  for (int other : {0, 1, 3, 7, 9, 255, bits == 8 ? 4 : 8}) {
    payload[0] = static_cast<std::uint8_t>(other);
    EXPECT_THAT(test::decodeError(*codec, payload, {15}), HasSubstr("bit-width of " + std::to_string(other)));
  }
}

TEST_P(AffineBits, RejectsNonFiniteOrNegativeScalesAndMinima) {
  const auto codec = makeChannelQuantCodec(GetParam());
  const std::vector<std::int64_t> shape{2, 3, 4};
  const auto x = test::normalData(24, 8);
  const auto valid = codec->encode(x.data(), shape);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  struct Case {
    std::size_t offset;
    float value;
    std::string reason;
  };
  // Channel 1: minimum at 1 + 8, scale at 1 + 8 + 4.
  for (const Case& c : {Case{13, nan, "channel 1 has scale nan"}, Case{13, inf, "channel 1 has scale inf"},
                        Case{13, -0.5f, "channel 1 has scale -0.5"}, Case{9, nan, "channel 1 has minimum nan"},
                        Case{9, -inf, "channel 1 has minimum -inf"}}) {
    auto payload = valid;
    putFloat(payload, c.offset, c.value);
    EXPECT_THAT(test::decodeError(*codec, payload, shape), HasSubstr(c.reason));
  }
  const auto tensorCodec = makeAffineQuantCodec(GetParam());
  auto payload = tensorCodec->encode(x.data(), shape);
  putFloat(payload, 5, nan);
  EXPECT_THAT(test::decodeError(*tensorCodec, payload, shape), HasSubstr("tensor has scale nan"));
}

TEST_P(AffineBits, HostileButValidScalesSaturateInsteadOfOverflowing) {
  const auto codec = makeAffineQuantCodec(GetParam());
  std::vector<std::uint8_t> payload(1 + 8 + 1, 0xFF);
  payload[0] = static_cast<std::uint8_t>(GetParam());
  putFloat(payload, 1, FLT_MAX);
  putFloat(payload, 5, FLT_MAX);
  const std::int64_t n = 8 / GetParam();
  const auto y = decode(*codec, payload, {n});
  for (float v : y) EXPECT_EQ(v, FLT_MAX);
}

INSTANTIATE_TEST_SUITE_P(Bits, AffineBits, ::testing::Values(8, 4, 2),
                         [](const ::testing::TestParamInfo<int>& info) { return "int" + std::to_string(info.param); });

TEST(AffineQuant, PacksCodesLsbFirstWithZeroPadding) {
  // Values 0..n-1 with range n-1 = qmax give codes equal to the values.
  const std::vector<float> x4{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 15, 0, 5};
  const auto p4 = makeAffineQuantCodec(4)->encode(x4.data(), {19});
  ASSERT_EQ(p4.size(), 9u + 10u);
  EXPECT_EQ(std::vector<std::uint8_t>(p4.begin() + 9, p4.end()),
            (std::vector<std::uint8_t>{0x10, 0x32, 0x54, 0x76, 0x98, 0xBA, 0xDC, 0xFE, 0x0F, 0x05}));
  const std::vector<float> x2{0, 1, 2, 3, 3, 2, 1};
  const auto p2 = makeAffineQuantCodec(2)->encode(x2.data(), {7});
  ASSERT_EQ(p2.size(), 9u + 2u);
  EXPECT_EQ(p2[9], 0xE4);  // 3 2 1 0 from the top bits down
  EXPECT_EQ(p2[10], 0x1B);  // padding 00, then 1 2 3
  const std::vector<float> x8{-1.0f, 0.0f, 254.0f};
  const auto p8 = makeAffineQuantCodec(8)->encode(x8.data(), {3});
  EXPECT_EQ(std::vector<std::uint8_t>(p8.begin() + 9, p8.end()), (std::vector<std::uint8_t>{0, 1, 255}));
}

TEST(AffineQuant, RejectsNonZeroPaddingBits) {
  const auto codec = makeAffineQuantCodec(4);
  const auto x = test::normalData(15, 1);
  auto payload = codec->encode(x.data(), {15});
  payload.back() |= 0x80;
  std::vector<float> out(15);
  try {
    codec->decode(payload.data(), payload.size(), {15}, out.data());
    ADD_FAILURE() << "accepted nonzero padding";
  } catch (const CodecError& e) {
    EXPECT_THAT(e.what(), HasSubstr("unused bits"));
  }
}

TEST(AffineQuant, ErrorsNameTheCodecAndTheSizes) {
  const auto codec = makeAffineQuantCodec(8);
  const auto x = test::normalData(15, 1);
  auto payload = codec->encode(x.data(), {3, 5});
  payload.pop_back();
  std::vector<float> out(15);
  try {
    codec->decode(payload.data(), payload.size(), {3, 5}, out.data());
    ADD_FAILURE() << "accepted a truncated payload";
  } catch (const CodecError& e) {
    EXPECT_THAT(e.what(), HasSubstr("int8: payload is 23 bytes, expected 24 for shape [3, 5]"));
  }
}

TEST(ChannelQuant, RankOneAndBelowIsOneChannel) {
  const auto channel = makeChannelQuantCodec(8);
  const auto tensor = makeAffineQuantCodec(8);
  const auto x = test::normalData(10, 3);
  EXPECT_EQ(channel->encode(x.data(), {10}), tensor->encode(x.data(), {10}));
  EXPECT_EQ(channel->encode(x.data(), {}), tensor->encode(x.data(), {}));
  EXPECT_EQ(channel->encodedSize({2, 5}), 1 + 8 * 5 + 10u);
}

TEST(AffineQuant, FactoriesRejectUnsupportedBitWidths) {
  for (int bits : {0, 1, 3, 5, 16}) {
    EXPECT_THROW(makeAffineQuantCodec(bits), CodecError);
    EXPECT_THROW(makeChannelQuantCodec(bits), CodecError);
  }
}

}  // namespace
}  // namespace tandem::compression

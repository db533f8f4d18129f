// topk:<ratio>: exactly the k largest magnitudes, deterministic ties, the documented
// payload layout, and rejection of inconsistent k and indices.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "compression/codecs/topk.h"
#include "compression/registry.h"
#include "tests/compression/codec_test_util.h"

namespace tandem::compression {
namespace {

using ::testing::HasSubstr;

std::uint32_t u32At(const std::vector<std::uint8_t>& p, std::size_t offset) {
  std::uint32_t v;
  std::memcpy(&v, p.data() + offset, sizeof v);
  return v;
}

void putU32(std::vector<std::uint8_t>& p, std::size_t offset, std::uint32_t v) { std::memcpy(p.data() + offset, &v, sizeof v); }

TEST(Topk, CountIsTheCeilingOfRatioTimesNumel) {
  EXPECT_EQ(topkCount(0.1, 0), 0u);
  EXPECT_EQ(topkCount(0.1, 1), 1u);
  EXPECT_EQ(topkCount(0.1, 10), 1u);
  EXPECT_EQ(topkCount(0.1, 11), 2u);
  EXPECT_EQ(topkCount(0.3, 10), 3u);  // 0.3 · 10 = 3.0000000000000004 in binary
  EXPECT_EQ(topkCount(0.7, 10), 7u);
  EXPECT_EQ(topkCount(0.01, 12345), 124u);
  EXPECT_EQ(topkCount(1e-9, 1000), 1u);
  EXPECT_EQ(topkCount(1.0, 77), 77u);
}

TEST(Topk, KeepsExactlyTheKLargestMagnitudes) {
  const auto codec = makeCodec("topk:0.05");
  const auto x = test::normalData(10007, 17);
  const std::vector<std::int64_t> shape{10007};
  const auto payload = codec->encode(x.data(), shape);
  const std::size_t k = topkCount(0.05, x.size());
  ASSERT_EQ(u32At(payload, 0), k);
  ASSERT_EQ(payload.size(), 4 + 8 * k);
  std::vector<float> y(x.size());
  codec->decode(payload.data(), payload.size(), shape, y.data());
  std::vector<float> magnitudes(x.size());
  std::transform(x.begin(), x.end(), magnitudes.begin(), [](float v) { return std::fabs(v); });
  std::nth_element(magnitudes.begin(), magnitudes.begin() + static_cast<std::ptrdiff_t>(k - 1), magnitudes.end(),
                   std::greater<float>());
  const float kth = magnitudes[k - 1];
  std::size_t kept = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (y[i] != 0.0f) {
      ++kept;
      EXPECT_EQ(y[i], x[i]);
      EXPECT_GE(std::fabs(x[i]), kth);
    } else {
      EXPECT_LE(std::fabs(x[i]), kth);
    }
  }
  EXPECT_EQ(kept, k);
}

TEST(Topk, BreaksTiesByLowestIndex) {
  const auto codec = makeCodec("topk:0.5");
  // Eight elements, k = 4: one 5, then five elements of magnitude 2 compete for 3 places.
  const std::vector<float> x{2.0f, 1.0f, -2.0f, 5.0f, 2.0f, 0.0f, -2.0f, 2.0f};
  const auto payload = codec->encode(x.data(), {8});
  ASSERT_EQ(u32At(payload, 0), 4u);
  EXPECT_EQ(u32At(payload, 4), 0u);
  EXPECT_EQ(u32At(payload, 8), 2u);
  EXPECT_EQ(u32At(payload, 12), 3u);
  EXPECT_EQ(u32At(payload, 16), 4u);
  std::vector<float> y(8);
  codec->decode(payload.data(), payload.size(), {8}, y.data());
  EXPECT_EQ(y, (std::vector<float>{2.0f, 0.0f, -2.0f, 5.0f, 2.0f, 0.0f, 0.0f, 0.0f}));
}

TEST(Topk, NaNCountsAsLargest) {
  const auto codec = makeCodec("topk:0.25");
  const std::vector<float> x{1.0f, std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::infinity(), 3.0f,
                             0.5f, 0.25f, 0.0f, 2.0f};
  const auto payload = codec->encode(x.data(), {8});
  ASSERT_EQ(u32At(payload, 0), 2u);
  EXPECT_EQ(u32At(payload, 4), 1u);
  EXPECT_EQ(u32At(payload, 8), 2u);
}

TEST(Topk, RejectsKAboveNumel) {
  const auto codec = makeCodec("topk:0.5");
  const auto x = test::normalData(10, 1);
  auto payload = codec->encode(x.data(), {10});
  putU32(payload, 0, 11);
  EXPECT_THAT(test::decodeError(*codec, payload, {10}), HasSubstr("k = 11 values, more than the 10 elements"));
  putU32(payload, 0, 0xFFFFFFFFu);
  EXPECT_THAT(test::decodeError(*codec, payload, {10}), HasSubstr("more than the 10 elements"));
}

TEST(Topk, RejectsAKOtherThanTheRatioGives) {
  const auto codec = makeCodec("topk:0.5");
  const auto x = test::normalData(10, 1);
  auto payload = codec->encode(x.data(), {10});
  putU32(payload, 0, 4);
  EXPECT_THAT(test::decodeError(*codec, payload, {10}), HasSubstr("topk:0.5 of 10 elements keeps 5"));
}

TEST(Topk, RejectsBadIndices) {
  const auto codec = makeCodec("topk:0.5");
  const auto x = test::normalData(10, 1);
  const auto valid = codec->encode(x.data(), {10});
  auto outOfRange = valid;
  putU32(outOfRange, 4 + 4 * 4, 10);
  EXPECT_THAT(test::decodeError(*codec, outOfRange, {10}), HasSubstr("index 10 at position 4 is out of range"));
  auto repeated = valid;
  putU32(repeated, 4 + 4 * 2, u32At(valid, 4 + 4 * 1));
  EXPECT_THAT(test::decodeError(*codec, repeated, {10}), HasSubstr("not strictly increasing at position 2"));
}

TEST(Topk, FailedDecodeLeavesOutputUntouched) {
  const auto codec = makeCodec("topk:0.5");
  const auto x = test::normalData(10, 1);
  auto payload = codec->encode(x.data(), {10});
  putU32(payload, 4 + 4 * 4, 10);
  std::vector<float> out(10, 7.0f);
  EXPECT_THROW(codec->decode(payload.data(), payload.size(), {10}, out.data()), CodecError);
  EXPECT_EQ(out, std::vector<float>(10, 7.0f));
}

TEST(Topk, RatioParsing) {
  EXPECT_EQ(parseTopkRatio("0.1"), 0.1);
  EXPECT_EQ(parseTopkRatio("1"), 1.0);
  EXPECT_EQ(parseTopkRatio("5e-3"), 0.005);
  for (const char* bad : {"", "0", "-0.1", "1.5", "abc", "nan", "inf", "0x1p-3", "0.1.2", "+0.1", "1e400"}) {
    EXPECT_THROW(parseTopkRatio(bad), CodecError) << bad;
  }
  EXPECT_THROW(makeTopkCodec(0.0), CodecError);
  EXPECT_THROW(makeTopkCodec(std::numeric_limits<double>::quiet_NaN()), CodecError);
}

}  // namespace
}  // namespace tandem::compression

// The +zstd and +lz4 stages: they compress what is compressible, fall back to storing what
// is not, and reject frames and blocks that disagree with the shape.

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zstd.h>

#include "compression/codecs/lossless.h"
#include "compression/codecs/none.h"
#include "compression/registry.h"
#include "tests/compression/codec_test_util.h"

namespace tandem::compression {
namespace {

using ::testing::HasSubstr;

class Stage : public ::testing::TestWithParam<std::string> {};

TEST_P(Stage, CompressesRedundantPayloads) {
  const auto codec = makeCodec("int8+" + GetParam());
  std::vector<float> x = test::normalData(4096, 1);
  for (float& v : x) v = std::max(0.0f, v - 1.3f);  // a sparse activation: 90 % zeros
  const auto payload = codec->encode(x.data(), {4096});
  EXPECT_EQ(payload[0], 1) << "compressed mode";
  EXPECT_LT(payload.size(), makeCodec("int8")->encodedSize({4096}) / 2);
  std::vector<float> y(x.size());
  codec->decode(payload.data(), payload.size(), {4096}, y.data());
  test::expectWithinContract("int8", x, {4096}, y);
}

TEST_P(Stage, StoresIncompressiblePayloads) {
  const auto codec = makeCodec("none+" + GetParam());
  std::mt19937 rng(5);
  std::vector<float> x(1000);
  for (float& v : x) {
    const std::uint32_t bits = static_cast<std::uint32_t>(rng());  // uniformly random bytes
    std::memcpy(&v, &bits, sizeof v);
  }
  const auto payload = codec->encode(x.data(), {1000});
  EXPECT_EQ(payload[0], 0) << "stored mode";
  EXPECT_EQ(payload.size(), 1 + 4000u);
  EXPECT_EQ(payload.size(), codec->encodedSize({1000}));
  std::vector<float> y(x.size());
  codec->decode(payload.data(), payload.size(), {1000}, y.data());
  EXPECT_TRUE(test::sameBits(x, y));
}

TEST_P(Stage, RejectsUnknownModes) {
  const auto codec = makeCodec("none+" + GetParam());
  const std::vector<float> x(8, 0.0f);
  auto payload = codec->encode(x.data(), {8});
  payload[0] = 2;
  EXPECT_THAT(test::decodeError(*codec, payload, {8}), HasSubstr("unknown payload mode 2"));
}

TEST_P(Stage, KeepsTheInnerCodecsLosslessness) {
  EXPECT_TRUE(makeCodec("none+" + GetParam())->lossless());
  EXPECT_FALSE(makeCodec("int8+" + GetParam())->lossless());
  EXPECT_EQ(makeCodec("topk:0.10+" + GetParam())->spec(), "topk:0.1+" + GetParam());
}

INSTANTIATE_TEST_SUITE_P(Stages, Stage, ::testing::Values("zstd", "lz4"));

TEST(ZstdStage, RejectsAFrameOfTheWrongSize) {
  const auto codec = makeCodec("none+zstd");
  // A valid zstd frame holding 36 zero floats, sent for a 3×5 tensor.
  const std::vector<float> zeros(36, 0.0f);
  const auto payload = codec->encode(zeros.data(), {36});
  ASSERT_EQ(payload[0], 1);
  EXPECT_THAT(test::decodeError(*codec, payload, {3, 5}), HasSubstr("zstd frame decompresses to 144 bytes, expected 60"));
}

TEST(ZstdStage, RejectsFramesWithoutContentSizeAndTrailingBytes) {
  const auto codec = makeCodec("none+zstd");
  const std::vector<float> zeros(64, 0.0f);
  // A streaming frame records no content size: refuse to guess how much it inflates to.
  ZSTD_CCtx* context = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(context, ZSTD_c_contentSizeFlag, 0);
  std::vector<std::uint8_t> frame(ZSTD_compressBound(256));
  const std::size_t n = ZSTD_compress2(context, frame.data(), frame.size(), zeros.data(), 256);
  ZSTD_freeCCtx(context);
  ASSERT_FALSE(ZSTD_isError(n));
  std::vector<std::uint8_t> payload(1 + n, 1);  // mode byte 1 (zstd), then the frame
  std::copy_n(frame.begin(), n, payload.begin() + 1);
  EXPECT_THAT(test::decodeError(*codec, payload, {64}), HasSubstr("does not record its decompressed size"));

  auto valid = codec->encode(zeros.data(), {64});
  valid.push_back(0);
  EXPECT_THAT(test::decodeError(*codec, valid, {64}), HasSubstr("1 bytes follow the zstd frame"));
  const std::vector<std::uint8_t> notAFrame{1, 'n', 'o', 't', ' ', 'z', 's', 't', 'd'};
  EXPECT_THAT(test::decodeError(*codec, notAFrame, {64}), HasSubstr("not a zstd frame"));
}

TEST(Lz4Stage, RejectsBlocksOfTheWrongSizeAndGarbage) {
  const auto codec = makeCodec("none+lz4");
  const std::vector<float> ones(36, 1.0f);
  const auto payload = codec->encode(ones.data(), {36});
  ASSERT_EQ(payload[0], 1);
  EXPECT_THAT(test::decodeError(*codec, payload, {3, 5}), HasSubstr("malformed LZ4 block"));
  EXPECT_THAT(test::decodeError(*codec, payload, {6, 7}), HasSubstr("LZ4 block decompressed to 144 bytes, expected 168"));
  const std::vector<std::uint8_t> garbage{1, 0xFF, 0xFF, 0xFF, 0x00, 0x10};
  EXPECT_THAT(test::decodeError(*codec, garbage, {36}), HasSubstr("malformed LZ4 block"));
}

TEST(LosslessStage, CannotStackOrWrapNothing) {
  EXPECT_THROW(makeLosslessStage("zstd", makeCodec("int8+lz4")), CodecError);
  EXPECT_THROW(makeLosslessStage("zstd", nullptr), CodecError);
  EXPECT_THROW(makeLosslessStage("gzip", makeNoneCodec()), CodecError);
  EXPECT_EQ(losslessStageNames(), (std::vector<std::string>{"lz4", "zstd"}));
}

}  // namespace
}  // namespace tandem::compression

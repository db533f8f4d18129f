#include "runtime/scheduler/profile.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <limits>

#include "runtime/common/error.h"

namespace tandem::scheduler {
namespace {

using ::testing::HasSubstr;

TEST(ModelProfile, ActivationBytesAreBatchTimesShapeTimesFour) {
  ModelProfile p;
  p.batch_size = 8;
  p.num_stages = 2;
  p.boundary_shapes = {{3, 32, 32}, {16, 8, 8}, {10}};
  EXPECT_EQ(p.activationBytes(0), 8 * 3 * 32 * 32 * 4);
  EXPECT_EQ(p.activationBytes(1), 8 * 16 * 8 * 8 * 4);
  EXPECT_EQ(p.activationBytes(2), 8 * 10 * 4);
  EXPECT_THROW(p.activationBytes(3), InvariantError);
  EXPECT_THROW(p.activationBytes(-1), InvariantError);
}

TEST(SideProfile, JsonRoundTrips) {
  SideProfile side;
  side.host = "jetson-01";
  side.batch_size = 32;
  side.forward_seconds = {0.0125, 0.5, 0.0};
  side.backward_seconds = {0.025, 1.25, 3e-7};
  const auto text = toJson(side);
  EXPECT_EQ(text.find('\n'), std::string::npos);
  const auto back = sideFromJson(text);
  EXPECT_EQ(back.host, side.host);
  EXPECT_EQ(back.batch_size, side.batch_size);
  EXPECT_EQ(back.forward_seconds, side.forward_seconds);
  EXPECT_EQ(back.backward_seconds, side.backward_seconds);
}

std::string errorOf(const std::string& text) {
  try {
    sideFromJson(text);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(SideProfile, RejectsMalformedJsonWithTheReason) {
  const std::string good_tail = R"("forward_seconds": [1, 2], "backward_seconds": [1, 2]})";
  EXPECT_THAT(errorOf("{not json"), HasSubstr("not JSON"));
  EXPECT_THAT(errorOf("[1, 2]"), HasSubstr("expected a JSON object, got array"));
  EXPECT_THAT(errorOf(R"({"batch_size": 4, )" + good_tail), HasSubstr("missing field \"host\""));
  EXPECT_THAT(errorOf(R"({"host": 7, "batch_size": 4, )" + good_tail), HasSubstr("\"host\" must be a string"));
  EXPECT_THAT(errorOf(R"({"host": "h", "batch_size": 0, )" + good_tail),
              HasSubstr("\"batch_size\" must be a positive integer, got 0"));
  EXPECT_THAT(errorOf(R"({"host": "h", "batch_size": 2.5, )" + good_tail),
              HasSubstr("\"batch_size\" must be a positive integer"));
  EXPECT_THAT(errorOf(R"({"host": "h", "batch_size": 4, "backward_seconds": [1]})"),
              HasSubstr("missing field \"forward_seconds\""));
  EXPECT_THAT(errorOf(R"({"host": "h", "batch_size": 4, "forward_seconds": 1, "backward_seconds": [1]})"),
              HasSubstr("\"forward_seconds\" must be an array of seconds, got number"));
  EXPECT_THAT(errorOf(R"({"host": "h", "batch_size": 4, "forward_seconds": [1, "x"], "backward_seconds": [1, 2]})"),
              HasSubstr("\"forward_seconds\"[1] must be a number, got string"));
  EXPECT_THAT(errorOf(R"({"host": "h", "batch_size": 4, "forward_seconds": [1, 2], "backward_seconds": [1, -2]})"),
              HasSubstr("\"backward_seconds\"[1] = -2 is not a time"));
  EXPECT_THAT(errorOf(R"({"host": "h", "batch_size": 4, "forward_seconds": [1e999], "backward_seconds": [1]})"),
              HasSubstr("not JSON"));
  EXPECT_THAT(errorOf(R"({"host": "h", "batch_size": 4, "forward_seconds": [1, 2], "backward_seconds": [1]})"),
              HasSubstr("2 forward times but 1 backward times"));
}

TEST(SideProfile, ANonFiniteTimeDoesNotSurviveTheRoundTrip) {
  // JSON has no NaN or infinity: they are written as null, which reading rejects.
  SideProfile side;
  side.host = "h";
  side.batch_size = 1;
  side.forward_seconds = {std::numeric_limits<double>::quiet_NaN()};
  side.backward_seconds = {std::numeric_limits<double>::infinity()};
  EXPECT_THAT(errorOf(toJson(side)), HasSubstr("\"forward_seconds\"[0] must be a number, got null"));
}

TEST(SideProfile, CodecCostsRoundTripAndAreOptional) {
  SideProfile side;
  side.host = "h";
  side.batch_size = 4;
  side.forward_seconds = {0.1};
  side.backward_seconds = {0.2};
  side.codec_seconds_per_byte = {{"int8", 1.5e-10}, {"topk:0.1", 3e-9}};
  const auto back = sideFromJson(toJson(side));
  EXPECT_EQ(back.codec_seconds_per_byte, side.codec_seconds_per_byte);
  // Profiles cached before calibration existed have none.
  const std::string old = R"({"host": "h", "batch_size": 4, "forward_seconds": [1], "backward_seconds": [1]})";
  EXPECT_TRUE(sideFromJson(old).codec_seconds_per_byte.empty());
  const std::string head = R"({"host": "h", "batch_size": 4, "forward_seconds": [1], "backward_seconds": [1], )";
  EXPECT_THAT(errorOf(head + R"("codec_seconds_per_byte": 3})"), HasSubstr("must be an object"));
  EXPECT_THAT(errorOf(head + R"("codec_seconds_per_byte": {"int8": -1}})"), HasSubstr("is not a cost"));
  EXPECT_THAT(errorOf(head + R"("codec_seconds_per_byte": {"int8": "x"}})"), HasSubstr("is not a cost"));
}

}  // namespace
}  // namespace tandem::scheduler

// One suite every codec must pass, instantiated for every spec (with and without a lossless
// stage): round trips within the codec's contract on 0-D to 5-D shapes, odd and empty
// tensors, adversarial data; exact encodedSize(); rejection of truncated, extended and
// mutated payloads without crashing; payloads independent of the thread count.

#include <algorithm>
#include <cstring>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <tbb/task_arena.h>

#include "compression/codec.h"
#include "compression/codecs/lossless.h"
#include "compression/registry.h"
#include "tests/compression/codec_test_util.h"

namespace tandem::compression {
namespace {

using test::dataSets;
using test::expectWithinContract;
using test::sameBits;

const std::vector<std::string>& conformanceSpecs() {
  static const std::vector<std::string> specs{
      "none",          "fp16",          "bf16",         "int8",          "int4",           "int2",
      "int8_channel",  "int4_channel",  "int2_channel", "topk:0.1",      "topk:0.5",       "topk:1",
      "topk:0.003",    "none+zstd",     "none+lz4",     "fp16+zstd",     "bf16+lz4",       "int8+zstd",
      "int8+lz4",      "int4+zstd",     "int2+lz4",     "int8_channel+zstd", "int4_channel+lz4", "topk:0.1+zstd",
      "topk:0.1+lz4"};
  return specs;
}

const std::vector<std::vector<std::int64_t>>& shapes() {
  static const std::vector<std::vector<std::int64_t>> s{
      {},                 // a scalar: one element
      {1},     {7},     {64},     {3, 5},  {17, 3},  {2, 3, 5}, {4, 3, 1, 5}, {2, 3, 2, 3, 3},
      {5, 1, 9},          // one channel
      {1, 33, 1, 1},      // channels of one element each
      {2, 7, 4, 4},       // NCHW with odd channel count
  };
  return s;
}

class CodecConformance : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { codec_ = makeCodec(GetParam()); }

  bool exactSize() const { return GetParam().find('+') == std::string::npos; }

  // Encodes, checks the size against encodedSize(), decodes and checks the contract.
  std::vector<std::uint8_t> roundTrip(const std::vector<float>& x, const std::vector<std::int64_t>& shape) {
    std::vector<std::uint8_t> payload = codec_->encode(x.data(), shape);
    if (exactSize()) {
      EXPECT_EQ(payload.size(), codec_->encodedSize(shape));
    } else {
      EXPECT_LE(payload.size(), codec_->encodedSize(shape));
    }
    std::vector<float> decoded(x.size(), 12345.0f);
    codec_->decode(payload.data(), payload.size(), shape, decoded.data());
    expectWithinContract(GetParam(), x, shape, decoded);
    return payload;
  }

  std::unique_ptr<Codec> codec_;
};

TEST_P(CodecConformance, SpecRoundTripsThroughRegistry) {
  EXPECT_EQ(makeCodec(codec_->spec())->spec(), codec_->spec());
  EXPECT_EQ(codec_->spec(), GetParam());
}

TEST_P(CodecConformance, RoundTripsEveryShapeAndDataSet) {
  std::uint32_t seed = 1;
  for (const auto& shape : shapes()) {
    const auto n = static_cast<std::size_t>(checkedNumel(shape));
    for (const auto& data : dataSets()) {
      SCOPED_TRACE("shape of " + std::to_string(n) + " elements, rank " + std::to_string(shape.size()) + ", data " +
                   data.name);
      roundTrip(data.make(n, seed++), shape);
    }
  }
}

TEST_P(CodecConformance, EmptyTensors) {
  for (const std::vector<std::int64_t>& shape : {std::vector<std::int64_t>{0}, {4, 0}, {0, 3, 5}, {2, 0, 2}, {3, 2, 0}}) {
    const std::vector<std::uint8_t> payload = codec_->encode(nullptr, shape);
    if (exactSize()) {
      EXPECT_EQ(payload.size(), codec_->encodedSize(shape));
    }
    codec_->decode(payload.data(), payload.size(), shape, nullptr);
  }
}

TEST_P(CodecConformance, LargeTensorsRoundTripOnTheParallelPath) {
  // Above the parallel threshold, with a length that is no multiple of any chunk size.
  const std::vector<std::int64_t> shape{3, 7, 181, 191};
  const auto x = test::normalData(static_cast<std::size_t>(checkedNumel(shape)), 99, 0.5f, 3.0f);
  roundTrip(x, shape);
}

TEST_P(CodecConformance, PayloadDoesNotDependOnThreadCount) {
  const std::vector<std::int64_t> shape{2, 5, 257, 255};
  const auto x = test::dataSets()[1].make(static_cast<std::size_t>(checkedNumel(shape)), 5);  // relu: many ties
  std::vector<std::uint8_t> single;
  tbb::task_arena one(1);
  one.execute([&] { single = codec_->encode(x.data(), shape); });
  tbb::task_arena three(3);
  std::vector<std::uint8_t> parallel;
  three.execute([&] { parallel = codec_->encode(x.data(), shape); });
  ASSERT_EQ(single, parallel);

  std::vector<float> a(x.size());
  std::vector<float> b(x.size());
  one.execute([&] { codec_->decode(single.data(), single.size(), shape, a.data()); });
  three.execute([&] { codec_->decode(single.data(), single.size(), shape, b.data()); });
  EXPECT_TRUE(sameBits(a, b));
}

TEST_P(CodecConformance, RejectsEveryTruncation) {
  for (const std::vector<std::int64_t>& shape : {std::vector<std::int64_t>{3, 5}, {2, 3, 2, 3}}) {
    const auto x = test::normalData(static_cast<std::size_t>(checkedNumel(shape)), 3);
    const std::vector<std::uint8_t> payload = codec_->encode(x.data(), shape);
    std::vector<float> out(x.size());
    for (std::size_t length = 0; length < payload.size(); ++length) {
      // A copy of exactly `length` bytes, so AddressSanitizer flags any read beyond it.
      const std::vector<std::uint8_t> truncated(payload.begin(), payload.begin() + static_cast<std::ptrdiff_t>(length));
      EXPECT_THROW(codec_->decode(truncated.data(), truncated.size(), shape, out.data()), CodecError)
          << "truncated to " << length << " of " << payload.size() << " bytes";
    }
  }
}

TEST_P(CodecConformance, RejectsAnExtraByte) {
  const std::vector<std::int64_t> shape{3, 5};
  const auto x = test::normalData(15, 4);
  std::vector<std::uint8_t> payload = codec_->encode(x.data(), shape);
  std::vector<float> out(x.size());
  for (std::uint8_t extra : {0x00, 0x5A, 0xFF}) {
    std::vector<std::uint8_t> extended = payload;
    extended.push_back(extra);
    EXPECT_THROW(codec_->decode(extended.data(), extended.size(), shape, out.data()), CodecError);
  }
}

TEST_P(CodecConformance, RejectsAPayloadForAnotherShape) {
  const auto x = test::normalData(15, 6);
  const std::vector<std::uint8_t> payload = codec_->encode(x.data(), {3, 5});
  std::vector<float> out(31 * 20);
  EXPECT_THROW(codec_->decode(payload.data(), payload.size(), {31, 20}, out.data()), CodecError);
}

TEST_P(CodecConformance, RejectsInvalidShapes) {
  std::vector<float> out(1);
  const std::vector<std::uint8_t> payload(64);
  EXPECT_THROW(codec_->decode(payload.data(), payload.size(), {2, -1}, out.data()), CodecError);
  EXPECT_THROW(codec_->decode(payload.data(), payload.size(), {1, 1, 1, 1, 1, 1, 1, 1, 1}, out.data()), CodecError);
  EXPECT_THROW(codec_->decode(payload.data(), payload.size(), {1 << 20, 1 << 20}, out.data()), CodecError);
  EXPECT_THROW(codec_->encodedSize({1 << 20, 1 << 20}), CodecError);
}

TEST_P(CodecConformance, SurvivesRandomMutations) {
  std::mt19937 rng(static_cast<std::uint32_t>(std::hash<std::string>()(GetParam())));
  for (const std::vector<std::int64_t>& shape : {std::vector<std::int64_t>{3, 5}, {2, 3, 2, 3}, {64}}) {
    const auto x = test::normalData(static_cast<std::size_t>(checkedNumel(shape)), 7);
    const std::vector<std::uint8_t> payload = codec_->encode(x.data(), shape);
    std::vector<float> out(x.size());
    int rejected = 0;
    for (int trial = 0; trial < 150; ++trial) {
      std::vector<std::uint8_t> mutated = payload;
      const int edits = 1 + static_cast<int>(rng() % 4);
      for (int e = 0; e < edits && !mutated.empty(); ++e) {
        const std::size_t at = rng() % mutated.size();
        switch (rng() % 4) {
          case 0: mutated[at] ^= static_cast<std::uint8_t>(1u << (rng() % 8)); break;
          case 1: mutated[at] = static_cast<std::uint8_t>(rng()); break;
          case 2: mutated.erase(mutated.begin() + static_cast<std::ptrdiff_t>(at)); break;
          default: mutated.insert(mutated.begin() + static_cast<std::ptrdiff_t>(at), static_cast<std::uint8_t>(rng())); break;
        }
      }
      // Either a typed rejection or some output; anything else fails the test (or crashes
      // under the sanitizers).
      try {
        codec_->decode(mutated.data(), mutated.size(), shape, out.data());
      } catch (const CodecError&) {
        ++rejected;
      }
    }
    RecordProperty("rejected_of_150_shape_" + std::to_string(x.size()), rejected);
  }
}

INSTANTIATE_TEST_SUITE_P(AllCodecs, CodecConformance, ::testing::ValuesIn(conformanceSpecs()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return test::specTestName(info.param); });

// A codec added to the registry must be added to conformanceSpecs() too: every builtin codec
// family and every lossless stage appears in at least one spec of the suite.
TEST(CodecConformanceCoverage, EveryBuiltinCodecAndStageIsInTheSuite) {
  std::set<std::string> names;
  std::set<std::string> stages;
  for (const auto& spec : conformanceSpecs()) {
    names.insert(spec.substr(0, spec.find_first_of(":+")));
    const auto plus = spec.find('+');
    if (plus != std::string::npos) stages.insert(spec.substr(plus + 1));
  }
  const auto builtins = builtinCodecNames();
  EXPECT_GE(builtins.size(), 10u);  // none, fp16, bf16, int8/4/2 (+ _channel), topk at least
  for (const auto& name : builtins) {
    EXPECT_TRUE(names.count(name)) << "codec '" << name << "' is registered (compression/registry.cpp) but not in "
                                   << "conformanceSpecs() of tests/compression/codec_conformance_test.cpp";
  }
  for (const auto& stage : losslessStageNames()) {
    EXPECT_TRUE(stages.count(stage)) << "lossless stage '+" << stage << "' is not in conformanceSpecs()";
  }
  // And the suite names nothing the registry does not know.
  for (const auto& name : names) {
    EXPECT_TRUE(std::find(builtins.begin(), builtins.end(), name) != builtins.end())
        << "conformanceSpecs() names '" << name << "', which is not a builtin codec";
  }
}

}  // namespace
}  // namespace tandem::compression

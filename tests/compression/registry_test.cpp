// Codec specs: every builtin parses, canonical specs round-trip, mistakes get a reason.

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "compression/codecs/none.h"
#include "compression/registry.h"

namespace tandem::compression {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

std::string specError(const std::string& spec) {
  try {
    makeCodec(spec);
  } catch (const CodecError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Registry, ListsTheBuiltinFamiliesSorted) {
  const std::vector<std::string> names = codecNames();
  for (const char* builtin : {"bf16", "fp16", "int2", "int2_channel", "int4", "int4_channel", "int8", "int8_channel",
                              "none", "topk"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), builtin), names.end()) << builtin;
  }
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
}

TEST(Registry, EveryBuiltinParsesAndItsCanonicalSpecRoundTrips) {
  for (const std::string base : {"none", "fp16", "bf16", "int8", "int4", "int2", "int8_channel", "int4_channel",
                                 "int2_channel", "topk:0.1", "topk:1", "topk:0.25"}) {
    for (const std::string stage : {"", "+zstd", "+lz4"}) {
      const auto codec = makeCodec(base + stage);
      EXPECT_EQ(codec->spec(), base + stage);
      EXPECT_EQ(makeCodec(codec->spec())->spec(), codec->spec());
    }
  }
}

TEST(Registry, CanonicalisesTopkRatios) {
  EXPECT_EQ(makeCodec("topk:0.10")->spec(), "topk:0.1");
  EXPECT_EQ(makeCodec("topk:1e-2")->spec(), "topk:0.01");
  EXPECT_EQ(makeCodec("topk:1.0+zstd")->spec(), "topk:1+zstd");
}

TEST(Registry, UnknownNamesListTheKnownOnesWithASuggestion) {
  EXPECT_THAT(specError("int9"), AllOf(HasSubstr("unknown codec 'int9' in spec 'int9'"),
                                       HasSubstr("known codecs: bf16, fp16, int2"), HasSubstr("did you mean 'int")));
  EXPECT_THAT(specError("in8+zstd"), AllOf(HasSubstr("unknown codec 'in8' in spec 'in8+zstd'"),
                                           HasSubstr("did you mean 'int8'?")));
  EXPECT_THAT(specError("int8chanel"), HasSubstr("did you mean 'int8_channel'?"));
  EXPECT_THAT(specError("tokp:0.1"), HasSubstr("did you mean 'topk'?"));
  EXPECT_THAT(specError("gzip"), AllOf(HasSubstr("unknown codec 'gzip'"), ::testing::Not(HasSubstr("did you mean"))));
  EXPECT_THAT(specError("zstd"), HasSubstr("'zstd' is a lossless stage; write it after a codec, e.g. 'int8+zstd'"));
  EXPECT_THAT(specError(""), HasSubstr("empty codec spec; known codecs:"));
}

TEST(Registry, RejectsBadArguments) {
  EXPECT_THAT(specError("topk:0"), HasSubstr("bad ratio '0': out of range"));
  EXPECT_THAT(specError("topk:2"), HasSubstr("bad ratio '2': out of range"));
  EXPECT_THAT(specError("topk:abc"), HasSubstr("bad ratio 'abc': not a decimal number"));
  EXPECT_THAT(specError("topk:nan"), HasSubstr("not a decimal number"));
  EXPECT_THAT(specError("topk"), HasSubstr("bad ratio '': missing"));
  EXPECT_THAT(specError("topk:"), HasSubstr("empty argument after 'topk:'"));
  EXPECT_THAT(specError("int8:3"), HasSubstr("codec 'int8' takes no argument, got 'int8:3'"));
  EXPECT_THAT(specError("int8+gzip"),
              AllOf(HasSubstr("unknown lossless stage 'gzip' in spec 'int8+gzip'"), HasSubstr("known stages: lz4, zstd")));
  EXPECT_THAT(specError("int8+zstdd"), HasSubstr("did you mean 'zstd'?"));
  EXPECT_THAT(specError("int8+zstd+lz4"), HasSubstr("more than one lossless stage"));
  EXPECT_THAT(specError("int8+"), HasSubstr("unknown lossless stage ''"));
  EXPECT_THAT(specError(" int8"), HasSubstr("contains whitespace"));
  EXPECT_THAT(specError("int8 +zstd"), HasSubstr("contains whitespace"));
}

TEST(Registry, CustomCodecsRegisterOnceUnderValidNames) {
  registerCodec("test_registry_custom", [](const std::string& argument) {
    if (!argument.empty()) throw CodecError("test_registry_custom takes no argument");
    return makeNoneCodec();
  });
  EXPECT_EQ(makeCodec("test_registry_custom")->spec(), "none");
  EXPECT_THAT(specError("test_registry_custom:1"), HasSubstr("takes no argument"));
  EXPECT_THROW(registerCodec("test_registry_custom", [](const std::string&) { return makeNoneCodec(); }), CodecError);
  EXPECT_THROW(registerCodec("int8", [](const std::string&) { return makeNoneCodec(); }), CodecError);
  EXPECT_THROW(registerCodec("bad:name", [](const std::string&) { return makeNoneCodec(); }), CodecError);
  EXPECT_THROW(registerCodec("bad+name", [](const std::string&) { return makeNoneCodec(); }), CodecError);
  EXPECT_THROW(registerCodec("", [](const std::string&) { return makeNoneCodec(); }), CodecError);
  EXPECT_THROW(registerCodec("no_factory", nullptr), CodecError);
  registerCodec("test_registry_null", [](const std::string&) { return std::unique_ptr<Codec>(); });
  EXPECT_THAT(specError("test_registry_null"), HasSubstr("returned no codec"));
}

TEST(Registry, RegistrationIsIdempotentAndThreadSafe) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([] {
      for (int i = 0; i < 50; ++i) {
        registerBuiltinCodecs();
        makeCodec("int8+zstd");
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(makeCodec("int8")->spec(), "int8");
}

}  // namespace
}  // namespace tandem::compression

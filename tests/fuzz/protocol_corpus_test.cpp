// Runs every file of the protocol fuzz corpus through the fuzzer's entry point, so CI
// exercises the parser on them without clang; and checks that the seeds mean what their
// names say.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <cstring>
#include <iterator>
#include <random>

#include "runtime/transport/message_parser.h"
#include "tests/fuzz/protocol_fuzz_entry.h"

namespace tandem::transport::fuzz {
namespace {

namespace fs = std::filesystem;

std::vector<std::uint8_t> read(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(ProtocolCorpus, EveryFileRunsWithoutAnInvariantViolation) {
  const fs::path dir = fs::path(TANDEM_SOURCE_DIR) / "tests/fuzz/corpus/protocol";
  ASSERT_TRUE(fs::is_directory(dir)) << dir;
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const auto bytes = read(entry.path());
    SCOPED_TRACE(entry.path().filename().string());
    EXPECT_NO_THROW(runProtocolFuzzInput(bytes.data(), bytes.size()));
    ++files;
  }
  EXPECT_GE(files, 20);
}

TEST(ProtocolCorpus, MutationsOfTheSeedsNeverCrash) {
  const fs::path dir = fs::path(TANDEM_SOURCE_DIR) / "tests/fuzz/corpus/protocol";
  std::mt19937 rng(7);
  for (const auto& entry : fs::directory_iterator(dir)) {
    const auto seed = read(entry.path());
    for (int i = 0; i < 300; ++i) {
      auto bytes = seed;
      if (bytes.empty()) bytes.push_back(0);
      const int edits = 1 + static_cast<int>(rng() % 6);
      for (int e = 0; e < edits; ++e) {
        switch (rng() % 3) {
          case 0: bytes[rng() % bytes.size()] = static_cast<std::uint8_t>(rng()); break;
          case 1: bytes.resize(rng() % (bytes.size() + 1)); break;
          default: bytes.insert(bytes.begin() + static_cast<long>(rng() % (bytes.size() + 1)), static_cast<std::uint8_t>(rng()));
        }
        if (bytes.empty()) bytes.push_back(1);
      }
      EXPECT_NO_THROW(runProtocolFuzzInput(bytes.data(), bytes.size()));
    }
  }
}

TEST(ProtocolCorpus, SeedsParseOrFailAsNamed) {
  const fs::path dir = fs::path(TANDEM_SOURCE_DIR) / "tests/fuzz/corpus/protocol";
  const auto parses = [&](const std::string& name) {
    const auto bytes = read(dir / name);
    std::vector<FrameView> frames;
    std::size_t pos = 1;
    for (std::size_t i = 0; i < bytes[0]; ++i) {
      std::uint32_t length = 0;
      std::memcpy(&length, bytes.data() + pos, 4);
      pos += 4;
      frames.push_back({bytes.data() + pos, length});
      pos += length;
    }
    try {
      parseFrames(frames, Limits{});
      return true;
    } catch (const WireError&) {
      return false;
    }
  };
  // bad_int8_payload parses (the frame has the declared size); its codec rejects it later.
  for (const auto* name : {"hello", "welcome", "activations", "activations_int8", "gradients", "probe", "migrate",
                           "checkpoint", "error", "bad_int8_payload", "gradients_diverged", "rollback", "average"}) {
    EXPECT_TRUE(parses(name)) << name;
  }
  for (const auto* name : {"missing_payload", "short_payload", "extra_payload", "truncated_header", "garbage"}) {
    EXPECT_FALSE(parses(name)) << name;
  }
}

}  // namespace
}  // namespace tandem::transport::fuzz

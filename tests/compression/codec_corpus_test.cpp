// Runs every file of the codec fuzzer's seed corpus through the fuzzer's own entry point,
// so CI exercises the hostile-input paths on every build, without clang or libFuzzer.

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include <gtest/gtest.h>

#include "compression/registry.h"
#include "tests/fuzz/codec_fuzz_entry.h"

namespace tandem::compression {
namespace {

std::vector<std::filesystem::path> corpusFiles() {
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(TANDEM_CODEC_CORPUS_DIR)) {
    if (entry.is_regular_file()) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

TEST(CodecCorpus, EveryFileRunsCleanly) {
  const auto files = corpusFiles();
  // The generator writes 108; far fewer means the corpus went missing, not that all is well.
  ASSERT_GE(files.size(), 100u) << "corpus directory " << TANDEM_CODEC_CORPUS_DIR;
  for (const auto& path : files) {
    SCOPED_TRACE(path.filename().string());
    std::ifstream in(path, std::ios::binary);
    const std::vector<std::uint8_t> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_NO_THROW(fuzz::runCodecFuzzInput(data.data(), data.size()));
  }
}

TEST(CodecCorpus, ValidSeedsDecodeAndBrokenOnesAreRejected) {
  // The entry point swallows CodecError; check the seeds mean what their names say.
  for (const auto& path : corpusFiles()) {
    const std::string name = path.filename().string();
    std::ifstream in(path, std::ios::binary);
    const std::vector<std::uint8_t> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ASSERT_GE(data.size(), 2u) << name;
    const bool valid = name.find("-valid-") != std::string::npos || name == "none_zstd-zeros" || name == "none_lz4-ones" ||
                       name == "int8-overflowing-range";
    const auto codec = makeCodec(fuzz::fuzzedCodecSpecs()[data[0] % fuzz::fuzzedCodecSpecs().size()]);
    const std::size_t rank = data[1] % 6;
    std::vector<std::int64_t> shape;
    for (std::size_t d = 0; d < rank; ++d) shape.push_back(data[2 + d] % 17);
    std::vector<float> out(static_cast<std::size_t>(checkedNumel(shape)));
    bool decoded = true;
    try {
      codec->decode(data.data() + 2 + rank, data.size() - 2 - rank, shape, out.data());
    } catch (const CodecError&) {
      decoded = false;
    }
    EXPECT_EQ(decoded, valid) << name;
  }
}

}  // namespace
}  // namespace tandem::compression

// Writes the seed corpus of the codec fuzzer (tests/fuzz/corpus/codec/): for every fuzzed
// codec a few valid payloads (odd sizes, an empty tensor) and their off-by-one corruptions,
// plus payloads that hit each validation of the decoders. Regenerate after a payload format
// change:
//   build/tests/fuzz/make_codec_corpus tests/fuzz/corpus/codec

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "compression/codec.h"
#include "compression/registry.h"
#include "tests/fuzz/codec_fuzz_entry.h"

namespace {

using tandem::compression::checkedNumel;
using tandem::compression::makeCodec;
using tandem::compression::fuzz::fuzzedCodecSpecs;
using tandem::compression::fuzz::makeCodecFuzzInput;

std::filesystem::path outputDir;
int written = 0;

void write(const std::string& name, std::size_t specIndex, const std::vector<std::int64_t>& shape,
           const std::vector<std::uint8_t>& payload) {
  const std::vector<std::uint8_t> input = makeCodecFuzzInput(specIndex, shape, payload);
  std::ofstream out(outputDir / name, std::ios::binary);
  out.write(reinterpret_cast<const char*>(input.data()), static_cast<std::streamsize>(input.size()));
  if (!out) throw std::runtime_error("cannot write " + (outputDir / name).string());
  ++written;
}

std::string fileStem(std::string spec) {
  for (char& c : spec) {
    if (c == ':' || c == '+') c = '_';
  }
  return spec;
}

std::vector<float> sample(std::size_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

std::size_t indexOf(const std::string& spec) {
  const auto& specs = fuzzedCodecSpecs();
  for (std::size_t i = 0; i < specs.size(); ++i) {
    if (specs[i] == spec) return i;
  }
  throw std::runtime_error("not a fuzzed codec: " + spec);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: " << argv[0] << " OUTPUT_DIR\n";
    return 2;
  }
  outputDir = argv[1];
  std::filesystem::create_directories(outputDir);
  std::mt19937 rng(2024);

  const std::vector<std::int64_t> odd{3, 5};       // 15 elements: odd for packed widths
  const std::vector<std::int64_t> nchw{2, 3, 2, 3};  // 36 elements, 3 channels
  const std::vector<std::int64_t> empty{4, 0};
  for (std::size_t i = 0; i < fuzzedCodecSpecs().size(); ++i) {
    const auto codec = makeCodec(fuzzedCodecSpecs()[i]);
    const std::string stem = fileStem(codec->spec());
    const std::vector<float> x = sample(36, rng);
    const auto a = codec->encode(x.data(), odd);
    const auto b = codec->encode(x.data(), nchw);
    const auto c = codec->encode(x.data(), empty);
    write(stem + "-valid-3x5", i, odd, a);
    write(stem + "-valid-2x3x2x3", i, nchw, b);
    write(stem + "-valid-empty", i, empty, c);
    std::vector<std::uint8_t> truncated(b.begin(), b.end() - 1);
    write(stem + "-truncated", i, nchw, truncated);
    std::vector<std::uint8_t> extended = a;
    extended.push_back(0);
    write(stem + "-extra-byte", i, odd, extended);
  }

  // Payloads aimed at specific checks (formats in compression/codecs/*.h).
  const std::vector<float> x = sample(36, rng);
  {
    auto p = makeCodec("int8")->encode(x.data(), odd);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(p.data() + 5, &nan, sizeof nan);  // the scale
    write("int8-nan-scale", indexOf("int8"), odd, p);
    const float negative = -1.0f;
    std::memcpy(p.data() + 5, &negative, sizeof negative);
    write("int8-negative-scale", indexOf("int8"), odd, p);
    const float huge = 3e38f;
    std::memcpy(p.data() + 1, &huge, sizeof huge);  // the minimum, with a positive scale
    std::memcpy(p.data() + 5, &huge, sizeof huge);
    write("int8-overflowing-range", indexOf("int8"), odd, p);
  }
  {
    auto p = makeCodec("int4")->encode(x.data(), odd);
    p[0] = 8;
    write("int4-wrong-bit-width", indexOf("int4"), odd, p);
    p[0] = 4;
    p.back() |= 0xF0;  // 15 codes: the high nibble of the last byte is padding
    write("int4-nonzero-padding", indexOf("int4"), odd, p);
  }
  {
    auto p = makeCodec("int8_channel")->encode(x.data(), nchw);
    const float inf = std::numeric_limits<float>::infinity();
    std::memcpy(p.data() + 1 + 8 * 2, &inf, sizeof inf);  // channel 2's minimum
    write("int8_channel-inf-min", indexOf("int8_channel"), nchw, p);
  }
  {
    const std::size_t topk = indexOf("topk:0.1");
    auto p = makeCodec("topk:0.1")->encode(x.data(), nchw);  // k = 4
    auto tooMany = p;
    tooMany[0] = 37;
    write("topk-k-above-numel", topk, nchw, tooMany);
    auto wrongK = p;
    wrongK[0] = 5;
    write("topk-k-not-ratio", topk, nchw, wrongK);
    auto outOfRange = p;
    outOfRange[4 + 3 * 4] = 200;  // last index
    write("topk-index-out-of-range", topk, nchw, outOfRange);
    auto unordered = p;
    std::swap_ranges(unordered.begin() + 4, unordered.begin() + 8, unordered.begin() + 8);
    write("topk-indices-unordered", topk, nchw, unordered);
  }
  {
    auto p = makeCodec("none+zstd")->encode(std::vector<float>(36, 0.0f).data(), nchw);
    if (p[0] != 1) throw std::runtime_error("zeros did not compress with zstd");
    write("none_zstd-zeros", indexOf("none+zstd"), nchw, p);
    write("none_zstd-frame-for-other-shape", indexOf("none+zstd"), odd, p);
    auto mode = p;
    mode[0] = 7;
    write("none_zstd-unknown-mode", indexOf("none+zstd"), nchw, mode);
    auto trailing = p;
    trailing.insert(trailing.end(), {0x28, 0xB5, 0x2F, 0xFD});
    write("none_zstd-trailing-magic", indexOf("none+zstd"), nchw, trailing);
  }
  {
    auto p = makeCodec("none+lz4")->encode(std::vector<float>(36, 1.0f).data(), nchw);
    if (p[0] != 1) throw std::runtime_error("a constant tensor did not compress with lz4");
    write("none_lz4-ones", indexOf("none+lz4"), nchw, p);
    write("none_lz4-block-for-other-shape", indexOf("none+lz4"), odd, p);
    std::vector<std::uint8_t> garbage{1, 0xFF, 0xFF, 0xFF, 0x00, 0x10};
    write("none_lz4-garbage-block", indexOf("none+lz4"), nchw, garbage);
  }
  write("tiny-input", 0, {}, {});
  std::cout << "wrote " << written << " files to " << outputDir << "\n";
  return 0;
}

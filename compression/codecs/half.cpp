#include "compression/codecs/half.h"

#include <algorithm>
#include <cstring>

#include "compression/float16.h"
#include "compression/parallel.h"
#include "compression/payload.h"

namespace tandem::compression {
namespace {

// The two formats differ only in their conversion functions.
using ToHalf = void (*)(const float*, std::uint16_t*, std::size_t);
using FromHalf = void (*)(const std::uint16_t*, float*, std::size_t);

class HalfCodec final : public Codec {
 public:
  HalfCodec(const char* name, ToHalf toHalf, FromHalf fromHalf) : name_(name), toHalf_(toHalf), fromHalf_(fromHalf) {}

  std::string spec() const override { return name_; }
  bool lossless() const override { return false; }

  std::vector<std::uint8_t> encode(const float* values, const std::vector<std::int64_t>& shape) const override {
    const std::size_t n = static_cast<std::size_t>(checkedNumel(shape));
    std::vector<std::uint8_t> payload(n * sizeof(std::uint16_t));
    std::uint8_t* bytes = payload.data();
    // Converted through a small staging block (L1-resident, so nearly free) and memcpy'd,
    // rather than writing uint16_t through a pointer into a byte buffer.
    detail::forEachChunk(n, [&](std::size_t begin, std::size_t end) {
      std::uint16_t staging[kStagingElements];
      for (std::size_t i = begin; i < end; i += kStagingElements) {
        const std::size_t count = std::min(kStagingElements, end - i);
        toHalf_(values + i, staging, count);
        std::memcpy(bytes + i * sizeof(std::uint16_t), staging, count * sizeof(std::uint16_t));
      }
    });
    return payload;
  }

  void decode(const std::uint8_t* bytes, std::size_t size, const std::vector<std::int64_t>& shape,
              float* out) const override {
    const std::size_t n = static_cast<std::size_t>(checkedNumel(shape));
    detail::expectPayloadSize(name_, size, n * sizeof(std::uint16_t), shape);
    // The staging block also makes receive buffers at odd addresses safe to read.
    detail::forEachChunk(n, [&](std::size_t begin, std::size_t end) {
      std::uint16_t staging[kStagingElements];
      for (std::size_t i = begin; i < end; i += kStagingElements) {
        const std::size_t count = std::min(kStagingElements, end - i);
        std::memcpy(staging, bytes + i * sizeof(std::uint16_t), count * sizeof(std::uint16_t));
        fromHalf_(staging, out + i, count);
      }
    });
  }

  std::size_t encodedSize(const std::vector<std::int64_t>& shape) const override {
    return static_cast<std::size_t>(checkedNumel(shape)) * sizeof(std::uint16_t);
  }

 private:
  static constexpr std::size_t kStagingElements = 2048;

  const char* name_;
  ToHalf toHalf_;
  FromHalf fromHalf_;
};

}  // namespace

std::unique_ptr<Codec> makeFp16Codec() { return std::make_unique<HalfCodec>("fp16", &floatsToHalf, &halfsToFloat); }
std::unique_ptr<Codec> makeBf16Codec() { return std::make_unique<HalfCodec>("bf16", &floatsToBf16, &bf16sToFloat); }

}  // namespace tandem::compression

#include "compression/codecs/none.h"

#include <cstring>

#include "compression/payload.h"

namespace tandem::compression {
namespace {

class NoneCodec final : public Codec {
 public:
  std::string spec() const override { return "none"; }
  bool lossless() const override { return true; }

  std::vector<std::uint8_t> encode(const float* values, const std::vector<std::int64_t>& shape) const override {
    const std::size_t n = static_cast<std::size_t>(checkedNumel(shape));
    std::vector<std::uint8_t> payload(n * sizeof(float));
    if (n > 0) std::memcpy(payload.data(), values, payload.size());
    return payload;
  }

  void decode(const std::uint8_t* bytes, std::size_t size, const std::vector<std::int64_t>& shape,
              float* out) const override {
    const std::size_t expected = encodedSize(shape);
    detail::expectPayloadSize(spec(), size, expected, shape);
    if (expected > 0) std::memcpy(out, bytes, expected);
  }

  std::size_t encodedSize(const std::vector<std::int64_t>& shape) const override {
    return static_cast<std::size_t>(checkedNumel(shape)) * sizeof(float);
  }
};

}  // namespace

std::unique_ptr<Codec> makeNoneCodec() { return std::make_unique<NoneCodec>(); }

}  // namespace tandem::compression

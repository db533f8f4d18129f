#include "compression/codecs/channel_quant.h"

#include "compression/codecs/affine_kernels.h"

namespace tandem::compression {
namespace {

class ChannelQuantCodec final : public Codec {
 public:
  explicit ChannelQuantCodec(int bits) : bits_(bits), spec_("int" + std::to_string(bits) + "_channel") {}

  std::string spec() const override { return spec_; }
  bool lossless() const override { return false; }

  std::vector<std::uint8_t> encode(const float* values, const std::vector<std::int64_t>& shape) const override {
    return detail::encodeAffine(values, detail::perChannelLayout(shape), bits_);
  }

  void decode(const std::uint8_t* bytes, std::size_t size, const std::vector<std::int64_t>& shape,
              float* out) const override {
    detail::decodeAffine(spec_, bytes, size, detail::perChannelLayout(shape), bits_, shape, out);
  }

  std::size_t encodedSize(const std::vector<std::int64_t>& shape) const override {
    return detail::affinePayloadSize(detail::perChannelLayout(shape), bits_);
  }

 private:
  int bits_;
  std::string spec_;
};

}  // namespace

std::unique_ptr<Codec> makeChannelQuantCodec(int bits) {
  if (!detail::isSupportedBitWidth(bits)) {
    throw CodecError("per-channel quantisation supports 2, 4 or 8 bits, not " + std::to_string(bits));
  }
  return std::make_unique<ChannelQuantCodec>(bits);
}

}  // namespace tandem::compression

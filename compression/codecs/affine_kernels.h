#pragma once
// The affine min–max quantiser shared by the per-tensor (compression/codecs/affine_quant.h)
// and per-channel (compression/codecs/channel_quant.h) codecs; they differ only in how
// elements are grouped.
//
// Each group g stores min_g and scale_g = (max_g − min_g) / (2^bits − 1); element x of
// group g becomes code q = round((x − min_g) / scale_g), clamped to [0, 2^bits − 1], and
// decodes to min_g + q · scale_g, so |decoded − x| <= scale_g / 2 (plus float rounding).
// A constant group has scale 0 and decodes exactly. Non-finite inputs do not take part in
// min/max (±inf saturate to the ends of the range, NaN decodes to min_g).
//
// Payload (little-endian):
//   u8   bits                      must equal the codec's bit-width
//   groups × { f32 min, f32 scale } min finite, scale finite and >= 0
//   codes                          ceil(numel · bits / 8) bytes; element i's code is in bits
//                                  [i·bits, (i+1)·bits) counted from the LSB of the first
//                                  code byte; unused bits of the last byte are zero
//
// Threading: pure functions; tensors above detail::kParallelMinElements are processed with
// oneTBB in the caller's arena, with results independent of the thread count.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace tandem::compression::detail {

// Element i belongs to group (i / inner) % groups. Per tensor: groups = 1, inner = numel.
// Per channel (channel = dim 1 of an N×C×… tensor): groups = C, inner = product of the
// dimensions after 1; rank <= 1 tensors are one group.
struct QuantLayout {
  std::size_t numel = 0;
  std::size_t groups = 1;
  std::size_t inner = 0;
};

// Both throw CodecError on an invalid shape (see checkedNumel()).
QuantLayout perTensorLayout(const std::vector<std::int64_t>& shape);
QuantLayout perChannelLayout(const std::vector<std::int64_t>& shape);

// True for the bit-widths the quantiser packs: 2, 4 and 8.
bool isSupportedBitWidth(int bits);

std::size_t affinePayloadSize(const QuantLayout& layout, int bits);

// `spec` and `shape` only label error messages.
std::vector<std::uint8_t> encodeAffine(const float* values, const QuantLayout& layout, int bits);
void decodeAffine(const std::string& spec, const std::uint8_t* bytes, std::size_t size, const QuantLayout& layout,
                  int bits, const std::vector<std::int64_t>& shape, float* out);

}  // namespace tandem::compression::detail

#include "compression/codecs/affine_kernels.h"

#include <algorithm>
#include <array>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>

#include "compression/codec.h"
#include "compression/codecs/affine_simd.h"
#include "compression/parallel.h"
#include "compression/payload.h"

// uint8_t code buffers may alias anything as far as the compiler knows; restrict lets it
// vectorise the per-element loops without run-time overlap checks.
#if defined(__GNUC__)
#define TANDEM_RESTRICT __restrict__
#else
#define TANDEM_RESTRICT
#endif

namespace tandem::compression::detail {
namespace {

constexpr std::size_t kHeaderBytes = 1;
constexpr std::size_t kGroupBytes = 2 * sizeof(float);

// Sub-byte codes are produced into (and unpacked from) a stack block of this many
// elements. A multiple of 8 that divides kChunkElements, so every block starts on a byte
// boundary of the packed stream whatever the bit-width.
constexpr std::size_t kBlockElements = 4096;
static_assert(kChunkElements % kBlockElements == 0 && kBlockElements % 8 == 0);

// Visits [begin, end) as maximal pieces of constant group, calling
// span(offset, count, group) for pieces of one group or, for per-channel layouts with
// inner == 1 (an N×C matrix), row(offset, count, firstGroup) for a piece of one row whose
// element k belongs to group firstGroup + k.
template <class Span, class Row>
void forEachPiece(const QuantLayout& layout, std::size_t begin, std::size_t end, const Span& span, const Row& row) {
  if (layout.groups == 1) {
    if (begin < end) span(begin, end - begin, std::size_t{0});
    return;
  }
  std::size_t i = begin;
  while (i < end) {
    std::size_t count;
    if (layout.inner == 1) {
      const std::size_t group = i % layout.groups;
      count = std::min(end - i, layout.groups - group);
      row(i, count, group);
    } else {
      const std::size_t run = i / layout.inner;
      count = std::min(end, (run + 1) * layout.inner) - i;
      span(i, count, run % layout.groups);
    }
    i += count;
  }
}

std::vector<FloatRange> groupRanges(const float* values, const QuantLayout& layout) {
  const std::size_t groups = layout.groups;
  std::vector<FloatRange> ranges;
  if (groups == 1) {
    ranges.push_back(reduceChunks(
        layout.numel, FloatRange{},
        [&](std::size_t begin, std::size_t end) { return rangeOf(values + begin, end - begin, FloatRange{}); },
        [](FloatRange a, FloatRange b) { return combine(a, b); }));
  } else {
    using Ranges = std::vector<FloatRange>;
    ranges = reduceChunks(
        layout.numel, Ranges(groups, FloatRange{}),
        [&](std::size_t begin, std::size_t end) {
          Ranges local(groups, FloatRange{});
          forEachPiece(
              layout, begin, end,
              [&](std::size_t offset, std::size_t count, std::size_t group) {
                local[group] = rangeOf(values + offset, count, local[group]);
              },
              [&](std::size_t offset, std::size_t count, std::size_t group) {
                for (std::size_t k = 0; k < count; ++k) {
                  const float v = values[offset + k];
                  local[group + k] = combine(local[group + k], FloatRange{v, v});
                }
              });
          return local;
        },
        [](Ranges a, const Ranges& b) {
          for (std::size_t g = 0; g < a.size(); ++g) a[g] = combine(a[g], b[g]);
          return a;
        });
  }

  // ±inf made a range infinite (NaNs were skipped already); an all-NaN or empty group has
  // no range at all. Recompute over finite values only; rare enough to do serially.
  const bool anyNonFinite = std::any_of(ranges.begin(), ranges.end(), [](const FloatRange& r) {
    return !std::isfinite(r.min) || !std::isfinite(r.max);
  });
  if (anyNonFinite && layout.numel > 0) {
    std::fill(ranges.begin(), ranges.end(), FloatRange{});
    for (std::size_t i = 0; i < layout.numel; ++i) {
      const float v = values[i];
      if (!std::isfinite(v)) continue;
      FloatRange& r = ranges[groups == 1 ? 0 : (i / layout.inner) % groups];
      r = combine(r, FloatRange{v, v});
    }
  }
  return ranges;
}

// ----- quantisation kernels ---------------------------------------------------------------

void quantizeRow(const float* TANDEM_RESTRICT x, std::size_t n, const float* TANDEM_RESTRICT min,
                 const float* TANDEM_RESTRICT inv, float qmax, std::uint8_t* TANDEM_RESTRICT codes) {
  for (std::size_t i = 0; i < n; ++i) codes[i] = quantizeOne(x[i], min[i], inv[i], qmax);
}

// The double-precision path for groups whose range nears FLT_MAX (x − min would overflow
// in float) or whose scale is subnormal (1 / scale would overflow).
inline std::uint8_t quantizeWide(float x, float min, float scale, float qmax) {
  double v = scale > 0.0f ? (static_cast<double>(x) - min) / scale + 0.5 : 0.0;
  v = v > 0.0 ? v : 0.0;
  v = v < qmax ? v : qmax;
  return static_cast<std::uint8_t>(static_cast<std::int32_t>(v));
}

void dequantizeRow(const std::uint8_t* TANDEM_RESTRICT codes, std::size_t n, const float* TANDEM_RESTRICT min,
                   const float* TANDEM_RESTRICT scale, float* TANDEM_RESTRICT out) {
  for (std::size_t i = 0; i < n; ++i) out[i] = min[i] + static_cast<float>(codes[i]) * scale[i];
}

// Evaluates min + code · scale in double and saturates, for groups where float could
// overflow (only a hostile payload or a range near FLT_MAX gets here).
inline float dequantizeWide(std::uint8_t code, float min, float scale) {
  const double v = static_cast<double>(min) + static_cast<double>(code) * scale;
  return static_cast<float>(std::clamp(v, -static_cast<double>(FLT_MAX), static_cast<double>(FLT_MAX)));
}

// ----- bit packing ------------------------------------------------------------------------

// Packs n codes (n rounded up to a whole byte, the extra codes zero) into out.
void packCodes(std::uint8_t* codes, std::size_t n, int bits, std::uint8_t* TANDEM_RESTRICT out) {
  const std::size_t perByte = 8 / static_cast<std::size_t>(bits);
  const std::size_t bytes = (n + perByte - 1) / perByte;
  std::fill(codes + n, codes + bytes * perByte, std::uint8_t{0});
  if (bits == 4) {
    for (std::size_t j = 0; j < bytes; ++j) {
      out[j] = static_cast<std::uint8_t>(codes[2 * j] | (codes[2 * j + 1] << 4));
    }
  } else {
    for (std::size_t j = 0; j < bytes; ++j) {
      out[j] = static_cast<std::uint8_t>(codes[4 * j] | (codes[4 * j + 1] << 2) | (codes[4 * j + 2] << 4) |
                                         (codes[4 * j + 3] << 6));
    }
  }
}

// Unpacks n codes from the first ceil(n · bits / 8) bytes of `in`.
void unpackCodes(const std::uint8_t* TANDEM_RESTRICT in, std::size_t n, int bits,
                 std::uint8_t* TANDEM_RESTRICT codes) {
  if (bits == 4) {
    const std::size_t whole = n / 2;
    for (std::size_t j = 0; j < whole; ++j) {
      codes[2 * j] = in[j] & 0x0Fu;
      codes[2 * j + 1] = static_cast<std::uint8_t>(in[j] >> 4);
    }
    if (n % 2 != 0) codes[n - 1] = in[whole] & 0x0Fu;
  } else {
    // A table of the four codes of every byte: the compiler does not vectorise the
    // shift-and-mask form (four interleaved byte stores), and it ran at a tenth of int4.
    static const auto table = [] {
      std::array<std::array<std::uint8_t, 4>, 256> t{};
      for (unsigned b = 0; b < 256; ++b) {
        for (unsigned k = 0; k < 4; ++k) t[b][k] = static_cast<std::uint8_t>((b >> (2 * k)) & 0x03u);
      }
      return t;
    }();
    const std::size_t whole = n / 4;
    for (std::size_t j = 0; j < whole; ++j) std::memcpy(codes + 4 * j, table[in[j]].data(), 4);
    for (std::size_t k = whole * 4; k < n; ++k) codes[k] = (in[whole] >> (2 * (k - whole * 4))) & 0x03u;
  }
}

std::size_t groupOf(const QuantLayout& layout, std::size_t i) {
  return layout.groups == 1 ? 0 : (i / layout.inner) % layout.groups;
}

float qmaxFor(int bits) { return static_cast<float>((1u << bits) - 1u); }

}  // namespace

QuantLayout perTensorLayout(const std::vector<std::int64_t>& shape) {
  const auto n = static_cast<std::size_t>(checkedNumel(shape));
  return QuantLayout{n, 1, n};
}

QuantLayout perChannelLayout(const std::vector<std::int64_t>& shape) {
  const auto n = static_cast<std::size_t>(checkedNumel(shape));
  if (shape.size() < 2) return QuantLayout{n, 1, n};
  std::size_t inner = 1;
  for (std::size_t d = 2; d < shape.size(); ++d) inner *= static_cast<std::size_t>(shape[d]);
  // A zero-sized dimension makes numel 0; inner is then irrelevant but kept consistent.
  return QuantLayout{n, static_cast<std::size_t>(shape[1]), inner};
}

bool isSupportedBitWidth(int bits) { return bits == 2 || bits == 4 || bits == 8; }

std::size_t affinePayloadSize(const QuantLayout& layout, int bits) {
  return kHeaderBytes + layout.groups * kGroupBytes + (layout.numel * static_cast<std::size_t>(bits) + 7) / 8;
}

std::vector<std::uint8_t> encodeAffine(const float* values, const QuantLayout& layout, int bits) {
  const float qmax = qmaxFor(bits);
  const std::size_t groups = layout.groups;
  const std::vector<FloatRange> ranges = groupRanges(values, layout);

  std::vector<float> mins(groups);
  std::vector<float> scales(groups);
  std::vector<float> invs(groups);
  bool wide = false;
  for (std::size_t g = 0; g < groups; ++g) {
    const FloatRange r = ranges[g];
    if (!(r.min <= r.max)) continue;  // no finite element: min 0, scale 0
    // +0.0f turns a −0 minimum into +0, so the payload does not depend on which of two
    // equal zeros the (thread-count dependent) reduction met first.
    mins[g] = r.min + 0.0f;
    const double range = static_cast<double>(r.max) - static_cast<double>(r.min);
    if (range > 0.0) {
      float scale = static_cast<float>(range / qmax);
      // A range below qmax · 2^-150 rounds to a zero scale; keep it distinguishable from a
      // constant group (the error is then far below a float ulp of the values anyway).
      if (scale == 0.0f) scale = std::numeric_limits<float>::denorm_min();
      scales[g] = scale;
      invs[g] = 1.0f / scale;
      if (scale < FLT_MIN) wide = true;
    }
    if (std::max(std::fabs(r.min), std::fabs(r.max)) > FLT_MAX / 4) wide = true;
  }

  std::vector<std::uint8_t> payload(affinePayloadSize(layout, bits));
  payload[0] = static_cast<std::uint8_t>(bits);
  for (std::size_t g = 0; g < groups; ++g) {
    storeF32(payload.data() + kHeaderBytes + g * kGroupBytes, mins[g]);
    storeF32(payload.data() + kHeaderBytes + g * kGroupBytes + sizeof(float), scales[g]);
  }
  std::uint8_t* packed = payload.data() + kHeaderBytes + groups * kGroupBytes;

  forEachChunk(layout.numel, [&](std::size_t begin, std::size_t end) {
    std::uint8_t staging[kBlockElements];
    for (std::size_t block = begin; block < end; block += kBlockElements) {
      const std::size_t count = std::min(kBlockElements, end - block);
      std::uint8_t* codes = bits == 8 ? packed + block : staging;
      if (wide) {
        for (std::size_t k = 0; k < count; ++k) {
          const std::size_t g = groupOf(layout, block + k);
          codes[k] = quantizeWide(values[block + k], mins[g], scales[g], qmax);
        }
      } else {
        forEachPiece(
            layout, block, block + count,
            [&](std::size_t offset, std::size_t n, std::size_t g) {
              quantizeSpan(values + offset, n, mins[g], invs[g], qmax, codes + (offset - block));
            },
            [&](std::size_t offset, std::size_t n, std::size_t g) {
              quantizeRow(values + offset, n, mins.data() + g, invs.data() + g, qmax, codes + (offset - block));
            });
      }
      if (bits != 8) packCodes(staging, count, bits, packed + block * static_cast<std::size_t>(bits) / 8);
    }
  });
  return payload;
}

void decodeAffine(const std::string& spec, const std::uint8_t* bytes, std::size_t size, const QuantLayout& layout,
                  int bits, const std::vector<std::int64_t>& shape, float* out) {
  expectHeader(spec, size, kHeaderBytes);
  if (bytes[0] != bits) {
    throw CodecError(spec + ": payload declares a bit-width of " + std::to_string(bytes[0]) + ", the codec uses " +
                     std::to_string(bits) + " bits");
  }
  expectPayloadSize(spec, size, affinePayloadSize(layout, bits), shape);

  const std::size_t groups = layout.groups;
  const float qmax = qmaxFor(bits);
  std::vector<float> mins(groups);
  std::vector<float> scales(groups);
  bool wide = false;
  for (std::size_t g = 0; g < groups; ++g) {
    const float min = loadF32(bytes + kHeaderBytes + g * kGroupBytes);
    const float scale = loadF32(bytes + kHeaderBytes + g * kGroupBytes + sizeof(float));
    const std::string what = groups == 1 ? std::string("tensor") : "channel " + std::to_string(g);
    if (!std::isfinite(min)) {
      throw CodecError(spec + ": " + what + " has minimum " + std::to_string(min) + "; expected a finite number");
    }
    if (!std::isfinite(scale) || scale < 0.0f) {
      throw CodecError(spec + ": " + what + " has scale " + std::to_string(scale) +
                       "; expected a finite number >= 0");
    }
    if (std::fabs(static_cast<double>(min)) + static_cast<double>(qmax) * scale > FLT_MAX / 2) wide = true;
    mins[g] = min;
    scales[g] = scale;
  }

  const std::uint8_t* packed = bytes + kHeaderBytes + groups * kGroupBytes;
  const std::size_t usedBits = layout.numel * static_cast<std::size_t>(bits) % 8;
  if (usedBits != 0 && (packed[layout.numel * static_cast<std::size_t>(bits) / 8] >> usedBits) != 0) {
    throw CodecError(spec + ": the unused bits of the last code byte are not zero");
  }

  forEachChunk(layout.numel, [&](std::size_t begin, std::size_t end) {
    std::uint8_t staging[kBlockElements];
    for (std::size_t block = begin; block < end; block += kBlockElements) {
      const std::size_t count = std::min(kBlockElements, end - block);
      const std::uint8_t* codes = packed + block;
      if (bits != 8) {
        unpackCodes(packed + block * static_cast<std::size_t>(bits) / 8, count, bits, staging);
        codes = staging;
      }
      if (wide) {
        for (std::size_t k = 0; k < count; ++k) {
          const std::size_t g = groupOf(layout, block + k);
          out[block + k] = dequantizeWide(codes[k], mins[g], scales[g]);
        }
      } else {
        forEachPiece(
            layout, block, block + count,
            [&](std::size_t offset, std::size_t n, std::size_t g) {
              dequantizeSpan(codes + (offset - block), n, mins[g], scales[g], out + offset);
            },
            [&](std::size_t offset, std::size_t n, std::size_t g) {
              dequantizeRow(codes + (offset - block), n, mins.data() + g, scales.data() + g, out + offset);
            });
      }
    }
  });
}

}  // namespace tandem::compression::detail

#include "compression/codecs/lossless.h"

#include <climits>
#include <cstring>

#include <lz4.h>
#include <zstd.h>

#include "compression/payload.h"

namespace tandem::compression {
namespace {

enum class Mode : std::uint8_t { kStored = 0, kCompressed = 1 };
constexpr std::size_t kHeaderBytes = 1;
constexpr int kZstdLevel = 1;

// One compression context per thread, reused across calls: creating a zstd context costs
// more than compressing a small tensor.
ZSTD_CCtx* threadCompressionContext() {
  thread_local std::unique_ptr<ZSTD_CCtx, decltype(&ZSTD_freeCCtx)> context(ZSTD_createCCtx(), &ZSTD_freeCCtx);
  if (!context) throw CodecError("zstd: cannot allocate a compression context");
  return context.get();
}

ZSTD_DCtx* threadDecompressionContext() {
  thread_local std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> context(ZSTD_createDCtx(), &ZSTD_freeDCtx);
  if (!context) throw CodecError("zstd: cannot allocate a decompression context");
  return context.get();
}

class LosslessStage final : public Codec {
 public:
  enum class Method { kZstd, kLz4 };

  LosslessStage(Method method, std::unique_ptr<Codec> inner)
      : method_(method), inner_(std::move(inner)), spec_(inner_->spec() + (method == Method::kZstd ? "+zstd" : "+lz4")) {}

  std::string spec() const override { return spec_; }
  bool lossless() const override { return inner_->lossless(); }

  std::vector<std::uint8_t> encode(const float* values, const std::vector<std::int64_t>& shape) const override {
    const std::vector<std::uint8_t> inner = inner_->encode(values, shape);
    std::vector<std::uint8_t> payload(kHeaderBytes + inner.size());
    // Compress into at most inner.size() bytes: if it does not fit, it did not pay off.
    const std::size_t compressed = compress(inner, payload.data() + kHeaderBytes, inner.size());
    if (compressed == 0) {
      payload[0] = static_cast<std::uint8_t>(Mode::kStored);
      if (!inner.empty()) std::memcpy(payload.data() + kHeaderBytes, inner.data(), inner.size());
    } else {
      payload[0] = static_cast<std::uint8_t>(Mode::kCompressed);
      payload.resize(kHeaderBytes + compressed);
    }
    return payload;
  }

  void decode(const std::uint8_t* bytes, std::size_t size, const std::vector<std::int64_t>& shape,
              float* out) const override {
    detail::expectHeader(spec_, size, kHeaderBytes);
    // Exact for every codec a stage may wrap, and derived from the checked shape only.
    const std::size_t expected = inner_->encodedSize(shape);
    switch (bytes[0]) {
      case static_cast<std::uint8_t>(Mode::kStored):
        detail::expectPayloadSize(spec_, size, kHeaderBytes + expected, shape);
        inner_->decode(bytes + kHeaderBytes, expected, shape, out);
        return;
      case static_cast<std::uint8_t>(Mode::kCompressed): {
        std::vector<std::uint8_t> inner(expected);
        decompress(bytes + kHeaderBytes, size - kHeaderBytes, inner.data(), expected);
        inner_->decode(inner.data(), expected, shape, out);
        return;
      }
      default:
        throw CodecError(spec_ + ": unknown payload mode " + std::to_string(bytes[0]) +
                         " (0 = stored, 1 = compressed)");
    }
  }

  std::size_t encodedSize(const std::vector<std::int64_t>& shape) const override {
    return kHeaderBytes + inner_->encodedSize(shape);
  }

 private:
  // Returns the compressed size, or 0 when the result would not fit in `capacity`.
  std::size_t compress(const std::vector<std::uint8_t>& in, std::uint8_t* out, std::size_t capacity) const {
    if (in.empty()) return 0;
    if (method_ == Method::kZstd) {
      const std::size_t n = ZSTD_compressCCtx(threadCompressionContext(), out, capacity, in.data(), in.size(), kZstdLevel);
      return ZSTD_isError(n) ? 0 : n;
    }
    if (in.size() > static_cast<std::size_t>(LZ4_MAX_INPUT_SIZE)) return 0;
    const int n = LZ4_compress_default(reinterpret_cast<const char*>(in.data()), reinterpret_cast<char*>(out),
                                       static_cast<int>(in.size()), static_cast<int>(capacity));
    return n > 0 ? static_cast<std::size_t>(n) : 0;
  }

  // Decompresses exactly `expected` bytes into `out`, or throws.
  void decompress(const std::uint8_t* in, std::size_t size, std::uint8_t* out, std::size_t expected) const {
    if (method_ == Method::kZstd) {
      const unsigned long long content = ZSTD_getFrameContentSize(in, size);
      if (content == ZSTD_CONTENTSIZE_ERROR) throw CodecError(spec_ + ": compressed data is not a zstd frame");
      if (content == ZSTD_CONTENTSIZE_UNKNOWN) {
        throw CodecError(spec_ + ": zstd frame does not record its decompressed size");
      }
      if (content != expected) {
        throw CodecError(spec_ + ": zstd frame decompresses to " + std::to_string(content) + " bytes, expected " +
                         std::to_string(expected));
      }
      const std::size_t frame = ZSTD_findFrameCompressedSize(in, size);
      if (ZSTD_isError(frame)) throw CodecError(spec_ + ": bad zstd frame: " + ZSTD_getErrorName(frame));
      if (frame != size) {
        throw CodecError(spec_ + ": " + std::to_string(size - frame) + " bytes follow the zstd frame");
      }
      const std::size_t n = ZSTD_decompressDCtx(threadDecompressionContext(), out, expected, in, size);
      if (ZSTD_isError(n)) throw CodecError(spec_ + ": bad zstd frame: " + ZSTD_getErrorName(n));
      if (n != expected) {
        throw CodecError(spec_ + ": zstd frame decompressed to " + std::to_string(n) + " bytes, expected " +
                         std::to_string(expected));
      }
      return;
    }
    if (size > static_cast<std::size_t>(INT_MAX) || expected > static_cast<std::size_t>(LZ4_MAX_INPUT_SIZE)) {
      throw CodecError(spec_ + ": LZ4 block of " + std::to_string(size) + " bytes for " + std::to_string(expected) +
                       " decompressed bytes exceeds LZ4's limits");
    }
    // LZ4_decompress_safe never writes past `expected` nor reads past `size`.
    char empty = 0;
    char* dst = expected == 0 ? &empty : reinterpret_cast<char*>(out);
    const int n = LZ4_decompress_safe(reinterpret_cast<const char*>(in), dst, static_cast<int>(size),
                                      static_cast<int>(expected));
    if (n < 0) throw CodecError(spec_ + ": malformed LZ4 block");
    if (static_cast<std::size_t>(n) != expected) {
      throw CodecError(spec_ + ": LZ4 block decompressed to " + std::to_string(n) + " bytes, expected " +
                       std::to_string(expected));
    }
  }

  Method method_;
  std::unique_ptr<Codec> inner_;
  std::string spec_;
};

}  // namespace

const std::vector<std::string>& losslessStageNames() {
  static const std::vector<std::string> names{"lz4", "zstd"};
  return names;
}

std::unique_ptr<Codec> makeLosslessStage(const std::string& stage, std::unique_ptr<Codec> inner) {
  if (!inner) throw CodecError("lossless stage '" + stage + "' needs a codec to wrap");
  if (inner->spec().find('+') != std::string::npos) {
    throw CodecError("cannot stack lossless stage '" + stage + "' on '" + inner->spec() +
                     "': at most one lossless stage per codec");
  }
  if (stage == "zstd") return std::make_unique<LosslessStage>(LosslessStage::Method::kZstd, std::move(inner));
  if (stage == "lz4") return std::make_unique<LosslessStage>(LosslessStage::Method::kLz4, std::move(inner));
  throw CodecError("unknown lossless stage '" + stage + "'; known: lz4, zstd");
}

}  // namespace tandem::compression

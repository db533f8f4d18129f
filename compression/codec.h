#pragma once
// The codec interface. A codec turns a contiguous float32 tensor into bytes and back.
// What a receiver needs besides the bytes — the codec spec and the logical shape — travels
// in the message header (CodecMeta); everything else a codec needs to decode (scales,
// offsets, indices) is inside its payload and is validated by decode().
//
// This library depends on nothing in runtime/ and not on LibTorch: it works on raw float
// buffers so it is cheap to build, benchmark and fuzz. runtime/ adapts tensors to it.
//
// Threading: Codec objects are immutable after construction; encode() and decode() may be
// called concurrently from any number of threads. The builtin codecs split tensors of 2 MiB
// and more across cores with oneTBB, in the calling thread's task arena: call them inside a
// tbb::task_arena to bound the threads they use. Their payloads do not depend on the
// number of threads.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace tandem::compression {

// Bad codec spec, bad payload, or a payload inconsistent with its metadata.
class CodecError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Upper bounds that decoders check before allocating or reading anything.
inline constexpr std::int64_t kMaxDims = 8;
inline constexpr std::int64_t kMaxElements = std::int64_t{1} << 31;  // 8 GiB of float32

// Product of the dimensions; throws CodecError on a negative dimension, more than kMaxDims
// dimensions, or a product above kMaxElements (checked without overflow).
std::int64_t checkedNumel(const std::vector<std::int64_t>& shape);

class Codec {
 public:
  virtual ~Codec() = default;

  // The canonical spec that recreates this codec with makeCodec(): "int8", "topk:0.1",
  // "int8+zstd".
  virtual std::string spec() const = 0;

  // True when decode(encode(x)) == x bit for bit (none, and lossless stages over it).
  virtual bool lossless() const = 0;

  // Encodes `values` (numel(shape) floats, contiguous, row-major) and returns the payload.
  // Per-channel codecs treat dimension 1 as the channel dimension for tensors of rank >= 2
  // (NCHW activations) and the whole tensor as one channel for rank <= 1.
  // Non-finite inputs are not an error but their decoded values are unspecified.
  virtual std::vector<std::uint8_t> encode(const float* values, const std::vector<std::int64_t>& shape) const = 0;

  // Decodes `size` bytes into `out`, which holds numel(shape) floats. Throws CodecError with
  // a reason when the payload is truncated, too long, or internally inconsistent (bad
  // bit-width, k out of range, NaN/inf scale, index out of range); never reads outside
  // [bytes, bytes + size) and never allocates from an unchecked size.
  virtual void decode(const std::uint8_t* bytes, std::size_t size, const std::vector<std::int64_t>& shape,
                      float* out) const = 0;

  // Payload size for a tensor of this shape, when it depends only on the shape (exact for
  // every codec without a lossless stage); used by the scheduler's cost model. Codecs with
  // a data-dependent size (zstd/lz4 stages) return an upper bound.
  virtual std::size_t encodedSize(const std::vector<std::int64_t>& shape) const = 0;
};

}  // namespace tandem::compression

#pragma once
// Tensors to payload frames and back. Raw tensors travel without a copy: the frame points
// into the tensor's memory and keeps the tensor alive until ZeroMQ has sent it; a received
// raw frame becomes a tensor that owns the frame. Compressed tensors go through a codec
// from compression/.

#include <torch/types.h>
#include <zmq.hpp>

#include <map>
#include <memory>
#include <string>

#include "compression/codec.h"
#include "runtime/transport/protocol.h"

namespace tandem::transport {

struct TensorFrame {
  TensorMeta meta;
  zmq::message_t frame;
};

// Codecs by spec, built once each. Not thread-safe: one per thread.
class CodecCache {
 public:
  const compression::Codec& get(const std::string& spec);

 private:
  std::map<std::string, std::unique_ptr<compression::Codec>> codecs_;
};

DType toWire(torch::ScalarType type);  // throws InvariantError for unsupported types

// The tensor's bytes, without copying when it is contiguous.
TensorFrame rawFrame(const torch::Tensor& tensor);

// A float32 tensor encoded with `codec` ("none" still goes through the codec, giving the
// same bytes as raw but labelled as a codec payload).
TensorFrame encodedFrame(const torch::Tensor& tensor, const compression::Codec& codec);
// The same from an already encoded payload (error feedback encodes itself).
TensorFrame payloadFrame(const torch::Tensor& tensor, const std::string& codec_spec, std::vector<std::uint8_t> bytes);

// The tensor a validated frame carries (see decodeHeaderFrame): a raw frame is wrapped
// without a copy (the tensor owns the frame); a codec frame is decoded. Throws WireError
// (kInvalidTensor) when a codec rejects the payload.
torch::Tensor frameToTensor(const TensorMeta& meta, zmq::message_t frame, CodecCache& codecs);

}  // namespace tandem::transport

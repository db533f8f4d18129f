#include "runtime/transport/tensor_frames.h"

#include <cstring>

#include "compression/registry.h"

namespace tandem::transport {

const compression::Codec& CodecCache::get(const std::string& spec) {
  auto it = codecs_.find(spec);
  if (it == codecs_.end()) it = codecs_.emplace(spec, compression::makeCodec(spec)).first;
  return *it->second;
}

DType toWire(torch::ScalarType type) {
  switch (type) {
    case torch::kFloat32: return DType::kFloat32;
    case torch::kInt64: return DType::kInt64;
    case torch::kUInt8: return DType::kUInt8;
    default: break;
  }
  throw InvariantError(std::string("tensors of type ") + c10::toString(type) + " cannot be sent");
}

namespace {

torch::ScalarType fromWire(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return torch::kFloat32;
    case DType::kInt64: return torch::kInt64;
    case DType::kUInt8: return torch::kUInt8;
  }
  return torch::kFloat32;
}

TensorMeta metaOf(const torch::Tensor& t, std::string codec, std::uint64_t bytes) {
  TensorMeta meta;
  meta.dtype = toWire(t.scalar_type());
  meta.shape = t.sizes().vec();
  meta.codec = std::move(codec);
  meta.bytes = bytes;
  return meta;
}

}  // namespace

TensorFrame rawFrame(const torch::Tensor& tensor) {
  // The frame's deleter owns a reference to the (contiguous, CPU) tensor.
  auto* keep = new torch::Tensor(tensor.detach().to(torch::kCPU).contiguous());
  const std::size_t bytes = static_cast<std::size_t>(keep->numel()) * keep->element_size();
  TensorFrame out;
  out.meta = metaOf(*keep, kRawCodec, bytes);
  if (bytes == 0) {
    delete keep;
    return out;
  }
  out.frame = zmq::message_t(
      keep->data_ptr(), bytes, [](void*, void* hint) { delete static_cast<torch::Tensor*>(hint); }, keep);
  return out;
}

TensorFrame payloadFrame(const torch::Tensor& tensor, const std::string& codec_spec, std::vector<std::uint8_t> bytes) {
  TensorFrame out;
  out.meta = metaOf(tensor, codec_spec, bytes.size());
  auto* keep = new std::vector<std::uint8_t>(std::move(bytes));
  if (keep->empty()) {
    delete keep;
    return out;
  }
  out.frame = zmq::message_t(
      keep->data(), keep->size(), [](void*, void* hint) { delete static_cast<std::vector<std::uint8_t>*>(hint); },
      keep);
  return out;
}

TensorFrame encodedFrame(const torch::Tensor& tensor, const compression::Codec& codec) {
  TANDEM_ENFORCE(tensor.scalar_type() == torch::kFloat32, "codecs encode float32 tensors");
  const auto t = tensor.detach().to(torch::kCPU).contiguous();
  return payloadFrame(t, codec.spec(), codec.encode(t.data_ptr<float>(), t.sizes().vec()));
}

torch::Tensor frameToTensor(const TensorMeta& meta, zmq::message_t frame, CodecCache& codecs) {
  const auto type = fromWire(meta.dtype);
  if (meta.codec == kRawCodec) {
    if (frame.size() == 0) return torch::empty(meta.shape, type);
    if (reinterpret_cast<std::uintptr_t>(frame.data()) % dtypeSize(meta.dtype) != 0) {
      // Not aligned for the element type (ZeroMQ stores tiny frames inline): copy.
      auto out = torch::empty(meta.shape, type);
      std::memcpy(out.data_ptr(), frame.data(), frame.size());
      return out;
    }
    auto* keep = new zmq::message_t(std::move(frame));
    return torch::from_blob(
        keep->data(), meta.shape, [keep](void*) { delete keep; }, torch::TensorOptions().dtype(type));
  }
  auto out = torch::empty(meta.shape, torch::kFloat32);
  try {
    codecs.get(meta.codec).decode(static_cast<const std::uint8_t*>(frame.data()), frame.size(), meta.shape,
                                  out.data_ptr<float>());
  } catch (const compression::CodecError& e) {
    throw WireError(ErrorCode::kInvalidTensor, "codec '" + meta.codec + "' rejected the payload: " + e.what());
  }
  return out;
}

}  // namespace tandem::transport

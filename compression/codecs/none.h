#pragma once
// `none`: the tensor's float32 bytes as they are. Payload: numel · 4 bytes, little-endian.
// Lossless; the reference every other codec's ratio is measured against.

#include <memory>

#include "compression/codec.h"

namespace tandem::compression {

std::unique_ptr<Codec> makeNoneCodec();

}  // namespace tandem::compression

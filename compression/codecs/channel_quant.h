#pragma once
// `int8_channel`, `int4_channel`, `int2_channel`: affine min–max quantisation with one min
// and scale per channel — dimension 1 of a tensor of rank >= 2 (the C of N×C×H×W
// activations, the features of N×F), the whole tensor for rank <= 1. Worth it when channels
// have very different ranges (after batch norm, before ReLU). Format and error bound:
// compression/codecs/affine_kernels.h. Payload size: 1 + 8 · C + ceil(numel · bits / 8).

#include <memory>

#include "compression/codec.h"

namespace tandem::compression {

// `bits` is 2, 4 or 8; anything else throws CodecError.
std::unique_ptr<Codec> makeChannelQuantCodec(int bits);

}  // namespace tandem::compression

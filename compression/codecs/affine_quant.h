#pragma once
// `int8`, `int4`, `int2`: affine min–max quantisation with one min and scale for the whole
// tensor, codes bit-packed (two int4 or four int2 codes per byte, odd counts padded with
// zero bits). Format and error bound: compression/codecs/affine_kernels.h. Payload size:
// 9 + ceil(numel · bits / 8) bytes.

#include <memory>

#include "compression/codec.h"

namespace tandem::compression {

// `bits` is 2, 4 or 8; anything else throws CodecError.
std::unique_ptr<Codec> makeAffineQuantCodec(int bits);

}  // namespace tandem::compression

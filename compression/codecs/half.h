#pragma once
// `fp16` and `bf16`: each float rounded to nearest even in IEEE binary16 or bfloat16
// (conversions in compression/float16.h). Payload: numel · 2 bytes, little-endian, no
// header. Exact for values representable in the format; fp16 turns |x| >= 65520 into ±inf
// (IEEE overflow), bf16 keeps float32's range with 8 bits of precision.

#include <memory>

#include "compression/codec.h"

namespace tandem::compression {

std::unique_ptr<Codec> makeFp16Codec();
std::unique_ptr<Codec> makeBf16Codec();

}  // namespace tandem::compression

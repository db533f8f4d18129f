#pragma once
// Lossless stages `+zstd` and `+lz4`: wrap any codec and compress its payload again. They
// pay off on payloads with redundancy (int8 codes of ReLU activations, sparse top-k
// indices); on incompressible payloads they cost one byte.
//
// Payload: u8 mode, then
//   mode 0 (stored):     the inner payload as is, when compressing did not shrink it
//   mode 1 (compressed): one zstd frame that records its content size, or one raw LZ4 block;
//                        either must decompress to exactly inner.encodedSize(shape) bytes
// Decoding never allocates more than the inner codec's exact size for the shape, which is
// why a stage can only wrap a codec whose encodedSize() is exact (not another stage).
//
// zstd runs at level 1 and lz4 in its default (fast) mode: activations are streamed every
// step, so compression speed matters more than the last percent of ratio.
// Threading: like every codec, immutable and callable from any thread.

#include <memory>
#include <string>
#include <vector>

#include "compression/codec.h"

namespace tandem::compression {

// "lz4", "zstd".
const std::vector<std::string>& losslessStageNames();

// Wraps `inner` (not null, not itself a lossless stage) in the stage named `stage`; throws
// CodecError for an unknown stage name (listing the known ones) or a stacked stage.
std::unique_ptr<Codec> makeLosslessStage(const std::string& stage, std::unique_ptr<Codec> inner);

}  // namespace tandem::compression

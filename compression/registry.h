#pragma once
// Codecs by name. Spec grammar (no whitespace anywhere):
//   spec     := codec [ "+" stage ]
//   codec    := name [ ":" argument ]
//   name     := none | fp16 | bf16 | int8 | int4 | int2 | int8_channel | int4_channel
//             | int2_channel | topk | any name given to registerCodec()
//   argument := for topk, a decimal ratio with 0 < ratio <= 1 ("topk:0.1"); the other
//               builtins take none ("int8:3" is an error)
//   stage    := zstd | lz4   (at most one; compression/codecs/lossless.h)
// e.g. "int8", "int8_channel+zstd", "topk:0.1+lz4". Codec::spec() returns the canonical
// form ("topk:0.10" becomes "topk:0.1"), which makeCodec() maps back to an equal codec.
// Each codec's payload format is documented in its header under compression/codecs/.
//
// The registry lives in a function-local static, filled by registerBuiltinCodecs(); it is
// safe to call that more than once and from several threads. makeCodec() registers the
// builtins itself on first use, so callers need not remember to.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "compression/codec.h"

namespace tandem::compression {

// Builds a codec from the part of the spec after its name and ':' (empty when absent),
// e.g. "0.1" for "topk:0.1". Throws CodecError on a bad argument.
using CodecFactory = std::function<std::unique_ptr<Codec>(const std::string& argument)>;

// Adds a codec family; throws CodecError if `name` is already registered (builtins
// included), is empty, contains ':', '+' or whitespace, or `factory` is empty. A codec that
// is to be stacked with a lossless stage must report an exact encodedSize().
void registerCodec(const std::string& name, CodecFactory factory);

// Registers none, fp16, bf16, int8, int4, int2, int8_channel, int4_channel, int2_channel
// and topk. Idempotent.
void registerBuiltinCodecs();

// Parses a spec and returns a codec. An unknown name throws CodecError listing the known
// ones (with a "did you mean" for a near miss).
std::unique_ptr<Codec> makeCodec(const std::string& spec);

// Names of the registered codec families (builtins registered first), sorted.
std::vector<std::string> codecNames();

// Names of the codec families registerBuiltinCodecs() registers (the ones Tandem ships,
// each of which the conformance suite must cover), sorted; without those added by
// registerCodec().
std::vector<std::string> builtinCodecNames();

}  // namespace tandem::compression

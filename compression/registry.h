#pragma once
// Codecs by name. Specs: none, fp16, bf16, int8, int8_channel, int4, int2, topk:<ratio>
// (0 < ratio <= 1), each optionally followed by a lossless stage "+zstd" or "+lz4"
// (e.g. "int8+zstd", "topk:0.1+lz4"). Whitespace is not allowed.
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

// Adds a codec family; throws CodecError if `name` is already registered.
void registerCodec(const std::string& name, CodecFactory factory);

// Registers none, fp16, bf16, int8, int8_channel, int4, int2 and topk. Idempotent.
void registerBuiltinCodecs();

// Parses a spec and returns a codec. An unknown name throws CodecError listing the known
// ones (with a "did you mean" for a near miss).
std::unique_ptr<Codec> makeCodec(const std::string& spec);

// Names of the registered codec families, sorted.
std::vector<std::string> codecNames();

}  // namespace tandem::compression

#pragma once
// Helpers the codecs share to write and validate payloads. Internal to compression/: not
// part of the codec interface, but a header so each codec file can stay small.
//
// Byte order: every multi-byte field of every payload is little-endian. The library only
// builds on little-endian hosts (x86-64, AArch64), where that is a plain memcpy.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "compression/codec.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "tandem_compression writes little-endian payloads with memcpy; port payload.h first"
#endif

namespace tandem::compression::detail {

// "[2, 3, 4]", for error messages.
std::string shapeString(const std::vector<std::int64_t>& shape);

// Throws CodecError "<spec>: payload is <size> bytes, expected <expected> for shape [..]"
// unless size == expected. Every decoder calls this before reading past its header.
void expectPayloadSize(const std::string& spec, std::size_t size, std::size_t expected,
                       const std::vector<std::int64_t>& shape);

// Throws CodecError "<spec>: payload is <size> bytes, shorter than its <header>-byte header".
void expectHeader(const std::string& spec, std::size_t size, std::size_t header);

// Unaligned little-endian loads and stores; callers have checked the bounds.
inline std::uint32_t loadU32(const std::uint8_t* p) {
  std::uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline float loadF32(const std::uint8_t* p) {
  float v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void storeU32(std::uint8_t* p, std::uint32_t v) { std::memcpy(p, &v, sizeof v); }
inline void storeF32(std::uint8_t* p, float v) { std::memcpy(p, &v, sizeof v); }

}  // namespace tandem::compression::detail

#include "compression/payload.h"

namespace tandem::compression::detail {

std::string shapeString(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

void expectPayloadSize(const std::string& spec, std::size_t size, std::size_t expected,
                       const std::vector<std::int64_t>& shape) {
  if (size != expected) {
    throw CodecError(spec + ": payload is " + std::to_string(size) + " bytes, expected " + std::to_string(expected) +
                     " for shape " + shapeString(shape));
  }
}

void expectHeader(const std::string& spec, std::size_t size, std::size_t header) {
  if (size < header) {
    throw CodecError(spec + ": payload is " + std::to_string(size) + " bytes, shorter than its " +
                     std::to_string(header) + "-byte header");
  }
}

}  // namespace tandem::compression::detail

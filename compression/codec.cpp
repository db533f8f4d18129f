#include "compression/codec.h"

#include <string>

namespace tandem::compression {

std::int64_t checkedNumel(const std::vector<std::int64_t>& shape) {
  if (static_cast<std::int64_t>(shape.size()) > kMaxDims) {
    throw CodecError("tensor has " + std::to_string(shape.size()) + " dimensions, at most " +
                     std::to_string(kMaxDims) + " allowed");
  }
  std::int64_t n = 1;
  for (std::int64_t d : shape) {
    if (d < 0) throw CodecError("negative dimension " + std::to_string(d));
    if (d != 0 && n > kMaxElements / d) {
      throw CodecError("tensor has more than " + std::to_string(kMaxElements) + " elements");
    }
    n *= d;
  }
  return n;
}

}  // namespace tandem::compression

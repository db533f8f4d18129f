#include "runtime/transport/transport.h"

namespace tandem::transport {

std::uint64_t wireBytes(const Message& message) {
  std::uint64_t bytes = encodeHeaderFrame(message.header, message.body).size();
  for (const auto& p : message.payloads) bytes += p.size();
  return bytes;
}

}  // namespace tandem::transport

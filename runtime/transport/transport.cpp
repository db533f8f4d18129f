#include "runtime/transport/transport.h"

namespace tandem::transport {

double steadySeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::uint64_t wireBytes(const Message& message) {
  std::uint64_t bytes = encodeHeaderFrame(message.header, message.body).size();
  for (const auto& p : message.payloads) bytes += p.size();
  return bytes;
}

}  // namespace tandem::transport

#include "runtime/transport/transport.h"

namespace tandem::transport {

Message copyMessage(Message& message) {
  Message copy;
  copy.header = message.header;
  copy.body = message.body;
  copy.peer = message.peer;
  for (auto& p : message.payloads) {
    copy.payloads.emplace_back();
    copy.payloads.back().copy(p);
  }
  return copy;
}

double steadySeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::uint64_t wireBytes(const Message& message) {
  std::uint64_t bytes = encodeHeaderFrame(message.header, message.body).size();
  for (const auto& p : message.payloads) bytes += p.size();
  return bytes;
}

}  // namespace tandem::transport

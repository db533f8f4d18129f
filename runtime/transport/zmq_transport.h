#pragma once
// The ZeroMQ transport as one object: ZmqFrameSocket (zmq_frame_socket.h: the socket, its
// thread, CURVE, validation) → optional FaultInjector (fault_injection.h) →
// SequencedLink (sequenced_link.h: sequence numbers, gaps, heartbeats, liveness). The
// link emulator, when wanted, wraps the result (runtime/pipeline/link.h builds the whole
// stack from the config).

#include <chrono>
#include <memory>
#include <vector>

#include "runtime/transport/fault_injection.h"
#include "runtime/transport/sequenced_link.h"
#include "runtime/transport/zmq_frame_socket.h"

namespace tandem::transport {

// The socket's options (mode, endpoint, limits, queue capacity, context, CURVE) plus the
// sequencing layer's timers.
struct ZmqOptions : ZmqSocketOptions {
  std::chrono::milliseconds heartbeat_interval{1000};
  std::chrono::milliseconds peer_timeout{15000};
  // After peer_timeout of silence the peer is reported silent (a LinkEvent::kTrouble) and
  // only declared lost after this much more: a link outage shorter than the grace period
  // does not end the run.
  std::chrono::milliseconds reconnect_grace{0};
  double peer_messages_per_s = 0.0;  // see SequencedLinkOptions

  SequencedLinkOptions link() const;
};

class ZmqTransport final : public SequencedLink {
 public:
  // Binds or connects before returning; throws TransportError when that fails (address in
  // use, bad endpoint). `faults`, when any, are injected between the socket and the
  // sequencing layer.
  explicit ZmqTransport(const ZmqOptions& options, std::vector<std::unique_ptr<Fault>> faults = {});
};

}  // namespace tandem::transport

#include "runtime/transport/zmq_transport.h"

namespace tandem::transport {
namespace {

std::unique_ptr<FrameSocket> socketStack(const ZmqOptions& options, std::vector<std::unique_ptr<Fault>> faults) {
  std::unique_ptr<FrameSocket> socket = std::make_unique<ZmqFrameSocket>(options);
  if (faults.empty()) return socket;
  return std::make_unique<FaultInjector>(std::move(socket), std::move(faults), options.log_component);
}

}  // namespace

SequencedLinkOptions ZmqOptions::link() const {
  SequencedLinkOptions o;
  o.log_component = log_component;
  o.heartbeat_interval = heartbeat_interval;
  o.peer_timeout = peer_timeout;
  o.reconnect_grace = reconnect_grace;
  o.queue_capacity = queue_capacity;
  return o;
}

ZmqTransport::ZmqTransport(const ZmqOptions& options, std::vector<std::unique_ptr<Fault>> faults)
    : SequencedLink(socketStack(options, std::move(faults)), options.link()) {}

}  // namespace tandem::transport

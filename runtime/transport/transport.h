#pragma once
// The transport interface: ordered, validated messages between an edge and a cloud. The
// ZeroMQ implementation (zmq_transport.h) owns its socket on its own thread; wrappers
// (link emulation, fault injection) implement the same interface around another
// transport.
//
// Threading: send() and receive() may be called from any thread, but each from one
// thread at a time in practice (the compute thread). close() from the owning thread.

#include <zmq.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "runtime/transport/protocol.h"

namespace tandem::transport {

struct Message {
  Header header;
  Body body;
  std::vector<zmq::message_t> payloads;  // one per header.tensors entry
  std::string peer;                      // routing id of the sender / recipient (cloud side)
  // Received messages: who the sender is beyond its connection, for per-peer limits: its
  // CURVE key ("key:<z85>"), else its address ("ip:<address>"), else "local".
  std::string origin;
  std::uint64_t wire_bytes = 0;          // received messages: header and payload bytes
  double received_at = 0.0;              // received messages: steady clock (s) when complete

  Message() = default;
  Message(MessageType type, Body b) : body(std::move(b)) { header.type = type; }
  Message(Message&&) = default;
  Message& operator=(Message&&) = default;
};

// Something the transport observed about a peer rather than a message from it, delivered
// in order with that peer's messages.
struct LinkEvent {
  enum class Kind {
    // Messages from `peer` were lost (a sequence gap), or it has been silent for
    // peer_timeout (still within the reconnect grace): time to resynchronise.
    kTrouble,
    // `peer` has been silent past the reconnect grace: it is gone (binding side only; the
    // connecting side's receive() throws instead).
    kPeerLost,
  };
  Kind kind = Kind::kTrouble;
  std::string peer;  // routing id (cloud side); empty on the edge
};

// What receive() delivers: a valid message, or an event about a peer.
using Incoming = std::variant<Message, LinkEvent>;

inline Message* asMessage(Incoming& incoming) { return std::get_if<Message>(&incoming); }
inline const LinkEvent* asEvent(const Incoming& incoming) { return std::get_if<LinkEvent>(&incoming); }

struct TransportStats {
  std::uint64_t bytes_sent = 0;
  std::uint64_t bytes_received = 0;
  std::uint64_t messages_sent = 0;
  std::uint64_t messages_received = 0;
  std::uint64_t messages_rejected = 0;
  std::uint64_t connections_refused = 0;  // failed CURVE authentication or mechanism mismatch
  std::uint64_t messages_lost = 0;        // gaps in the peer's sequence numbers
  std::uint64_t messages_dropped = 0;     // dropped by an injected outage
  // Outgoing messages dropped because their peer had limits.peer_queue_messages waiting
  // (a peer that does not read); the peer sees the gap in our sequence numbers.
  std::uint64_t messages_overflowed = 0;
  // Incoming messages dropped because their peer sent more than limits.peer_messages_per_s.
  std::uint64_t messages_rate_limited = 0;
};

// A copy of `message` sharing its payload memory (ZeroMQ reference-counts large frames),
// to keep a reply that may have to be sent again.
Message copyMessage(Message& message);

// Seconds on this machine's steady clock (the clock message times are stamped with).
double steadySeconds();

// Bytes `message` occupies on the wire: its header frame and payloads.
std::uint64_t wireBytes(const Message& message);

class Transport {
 public:
  virtual ~Transport() = default;

  // Queues `message` (to message.peer on the cloud side); blocks while the outbound queue
  // is full. The transport assigns header.sequence. Throws TransportError once closed or
  // failed.
  virtual void send(Message message) = 0;

  // The next valid incoming message or link event, or nullopt after `timeout`. Invalid
  // messages never reach the caller: they are logged, counted, and answered with an Error.
  // On the edge side a peer silent past the reconnect grace throws TransportError; on the
  // cloud side it arrives as a LinkEvent::kPeerLost.
  virtual std::optional<Incoming> receive(std::chrono::milliseconds timeout) = 0;

  virtual TransportStats stats() const = 0;

  // The local endpoint (what a bind resolved to, e.g. tcp://127.0.0.1:41234) or the
  // remote one for a connecting transport.
  virtual std::string endpoint() const = 0;

  // Flushes queued messages for up to `linger`, then stops.
  virtual void close(std::chrono::milliseconds linger) = 0;
};

}  // namespace tandem::transport

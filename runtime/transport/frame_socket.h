#pragma once
// The bottom layer of a transport: one validated multipart message at a time to or from a
// peer, nothing more. No sequence numbers, no heartbeats, no liveness: those belong to
// SequencedLink (sequenced_link.h), which runs over any FrameSocket. Implementations:
// ZmqFrameSocket (zmq_frame_socket.h: ROUTER bind / DEALER connect, CURVE) and the
// in-memory hub (in_memory_frame_socket.h: no sockets, one process). FaultInjector
// (fault_injection.h) wraps one.
//
// Every incoming message is validated (parseFrames, against the receiver's Limits) before
// it is handed up. An invalid one never arrives as a Message: it is counted in
// messages_rejected and handed up as a Rejection, which the layer above answers with an
// Error. (The answer has to carry the next sequence number of that direction, which only
// the sequencing layer knows; an unsequenced Error would be discarded as a replay.)
//
// Threading: send()/trySend() from any thread, one at a time (the layer above serialises
// them); receive() from one thread; close() from the owner once nothing else calls in.

#include <zmq.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "runtime/transport/protocol.h"
#include "runtime/transport/transport.h"

namespace tandem::transport {

// An incoming message that failed validation.
struct Rejection {
  std::string peer;  // routing id of the sender (binding side); empty on the connecting side
  ErrorCode code = ErrorCode::kMalformed;
  std::string reason;
  // The rejected message's type when its header frame decoded (so an Error is never
  // answered with an Error); nullopt when it did not.
  std::optional<MessageType> type;
  std::uint64_t wire_bytes = 0;
};

// What FrameSocket::receive() hands up: a valid message (heartbeats included, with the
// sequence number the peer gave it) or the rejection of an invalid one.
using Received = std::variant<Message, Rejection>;

class FrameSocket {
 public:
  virtual ~FrameSocket() = default;

  // Queues `message` as is (header.sequence included) for message.peer (binding side) or
  // the peer (connecting side); blocks while the outbound queue is full. A message for a
  // peer that is gone is dropped. Throws TransportError once closed or failed.
  virtual void send(Message message) = 0;

  // As send(), but never blocks: false (and `message` dropped) when the queue is full.
  virtual bool trySend(Message message) = 0;

  // The next valid message or rejection, or nullopt after `timeout`. Throws
  // TransportError once the socket failed (on the connecting side: the security
  // handshake was refused).
  virtual std::optional<Received> receive(std::chrono::milliseconds timeout) = 0;

  // bytes_* and messages_* of what crossed this socket (heartbeats included; bytes
  // exclude routing ids), messages_rejected, connections_refused. The other fields are 0.
  virtual TransportStats stats() const = 0;

  // True for the binding side (many peers, each message names its peer).
  virtual bool binds() const = 0;

  // As Transport::endpoint().
  virtual std::string endpoint() const = 0;

  // Delivers what is queued for up to `linger`, then stops. Idempotent.
  virtual void close(std::chrono::milliseconds linger) = 0;
};

// Printable form of a routing id (binary for ZeroMQ ROUTER sockets): "peer-0a1b…", or
// "peer" for the empty id of the connecting side's only peer.
std::string peerName(const std::string& id);

// Validates the frames of one received message (`frames` excludes any routing id) with
// parseFrames and builds the Message (payload frames moved out of `frames`) or the
// Rejection. `peer` is the sender's routing id.
Received decodeReceived(std::string peer, std::vector<zmq::message_t>& frames, const Limits& limits);

// The frames of `message` on the wire: its header frame, then its payloads (moved out).
std::vector<zmq::message_t> encodeFrames(Message& message);

}  // namespace tandem::transport

#pragma once
// The in-memory frame socket: an edge–cloud link inside one process, no sockets, no
// threads. An InMemoryHub stands for one endpoint: bind() makes its cloud end, connect()
// one edge end per call. A message is encoded to its frames on send (the header frame is
// serialised, payloads move without a copy) and pushed into the receiver's bounded inbox;
// the receiver validates the frames against its Limits exactly as the ZeroMQ socket does,
// so invalid messages become Rejections the same way.
//
// Differences from ZeroMQ, on purpose: an edge's message sent while no cloud end is bound
// is dropped (ZeroMQ would hold it until the connection is up); an oversized tensor is
// rejected with an Error rather than cutting the connection; there is no security
// handshake. Peers are named "mem-<n>" in the order they connected.
//
// Threading: an end is a FrameSocket (see its contract); the hub may be used from any
// thread and outlives no end it made (ends share ownership of it).

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "runtime/transport/frame_socket.h"

namespace tandem::transport {

struct InMemoryOptions {
  std::string name = "memory";      // endpoint() reads memory://<name>
  Limits limits;                    // what every end accepts
  std::size_t queue_capacity = 64;  // messages waiting in each end's inbox
};

class InMemoryHub : public std::enable_shared_from_this<InMemoryHub> {
 public:
  static std::shared_ptr<InMemoryHub> create(InMemoryOptions options = {});

  // The cloud end. Throws TransportError while another cloud end is bound (as an address
  // in use would); after that one is closed, binding again is allowed.
  std::unique_ptr<FrameSocket> bind();
  // A new edge end, heard by the cloud end under a new peer id.
  std::unique_ptr<FrameSocket> connect();

  std::string endpoint() const { return "memory://" + options_.name; }
  const InMemoryOptions& options() const { return options_; }

  struct Inbox;  // an end's bounded queue of frames (in_memory_frame_socket.cpp)

 private:
  friend class InMemoryEnd;
  explicit InMemoryHub(InMemoryOptions options) : options_(std::move(options)) {}

  std::shared_ptr<Inbox> cloudInbox();
  std::shared_ptr<Inbox> edgeInbox(const std::string& id);
  void unbind(const std::shared_ptr<Inbox>& inbox);
  void disconnect(const std::string& id);

  const InMemoryOptions options_;
  mutable std::mutex mutex_;
  std::shared_ptr<Inbox> cloud_;
  std::map<std::string, std::shared_ptr<Inbox>> edges_;
  std::size_t connected_ = 0;
};

}  // namespace tandem::transport

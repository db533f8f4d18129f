#pragma once
// One conformance suite for every Transport stack (STYLE.md: one suite per interface). The
// tests (transport_conformance.cpp) are written against a Backend: a factory for the
// binding ("cloud") transport, connecting ("edge") transports, and bare frame sockets on
// the same link that play a peer doing exactly what a test tells it (any sequence number,
// invalid metadata, silence). Each backend is instantiated by one line next to its own
// tests:
//   INSTANTIATE_TEST_SUITE_P(InMemory, TransportConformance,
//                            ::testing::Values(BackendParam{"InMemory", [] { ... }}), backendName);

#include <gtest/gtest.h>
#include <zmq.hpp>

#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include "runtime/transport/frame_socket.h"
#include "runtime/transport/in_memory_frame_socket.h"
#include "runtime/transport/sequenced_link.h"
#include "runtime/transport/transport.h"
#include "runtime/transport/zmq_frame_socket.h"

namespace tandem::transport::conformance {

// Frame sockets on one link: bind() makes the cloud's, connect() an edge's (connected to
// the socket bound last).
class SocketMaker {
 public:
  virtual ~SocketMaker() = default;
  virtual std::unique_ptr<FrameSocket> bind() = 0;
  virtual std::unique_ptr<FrameSocket> connect() = 0;
};

// ZeroMQ over inproc:// (one shared context) or tcp://127.0.0.1:* (ephemeral ports).
class ZmqSockets final : public SocketMaker {
 public:
  explicit ZmqSockets(bool inproc) : inproc_(inproc) {}
  std::unique_ptr<FrameSocket> bind() override {
    static int counter = 0;
    auto o = options(ZmqSocketOptions::Mode::kBind);
    o.endpoint = inproc_ ? "inproc://conformance-" + std::to_string(counter++) : "tcp://127.0.0.1:*";
    auto socket = std::make_unique<ZmqFrameSocket>(o);
    endpoint_ = socket->endpoint();
    return socket;
  }
  std::unique_ptr<FrameSocket> connect() override {
    auto o = options(ZmqSocketOptions::Mode::kConnect);
    o.endpoint = endpoint_;
    return std::make_unique<ZmqFrameSocket>(o);
  }

 private:
  ZmqSocketOptions options(ZmqSocketOptions::Mode mode) const {
    ZmqSocketOptions o;
    o.mode = mode;
    o.context = context_;
    o.log_component = mode == ZmqSocketOptions::Mode::kBind ? "test.cloud" : "test.edge";
    return o;
  }
  bool inproc_;
  std::shared_ptr<zmq::context_t> context_ = std::make_shared<zmq::context_t>(1);
  std::string endpoint_;
};

class InMemorySockets final : public SocketMaker {
 public:
  std::unique_ptr<FrameSocket> bind() override { return hub_->bind(); }
  std::unique_ptr<FrameSocket> connect() override { return hub_->connect(); }

 private:
  std::shared_ptr<InMemoryHub> hub_ = InMemoryHub::create();
};

// A transport stack over a SocketMaker: socket → [socket wrapper] → SequencedLink →
// [transport wrapper]. The wrappers are told whether they wrap the binding side.
class Backend {
 public:
  using SocketWrap = std::function<std::unique_ptr<FrameSocket>(std::unique_ptr<FrameSocket>, bool binds)>;
  using TransportWrap = std::function<std::unique_ptr<Transport>(std::unique_ptr<Transport>, bool binds)>;

  explicit Backend(std::unique_ptr<SocketMaker> sockets, SocketWrap wrap_socket = {}, TransportWrap wrap_transport = {})
      : sockets_(std::move(sockets)),
        wrap_socket_(std::move(wrap_socket)),
        wrap_transport_(std::move(wrap_transport)) {}

  // The cloud's whole stack, bound.
  std::unique_ptr<Transport> cloud(const SequencedLinkOptions& link) { return stack(sockets_->bind(), link, true); }
  // An edge's whole stack, connected to the cloud (or to rawCloud()) made last.
  std::unique_ptr<Transport> edge(const SequencedLinkOptions& link) { return stack(sockets_->connect(), link, false); }
  // A bare frame socket connected to the cloud: it sends exactly what it is given
  // (sequence numbers included) and never a heartbeat.
  std::unique_ptr<FrameSocket> rawEdge() { return sockets_->connect(); }
  // A bare frame socket bound in the cloud's place, for edge() to connect to.
  std::unique_ptr<FrameSocket> rawCloud() { return sockets_->bind(); }

 private:
  std::unique_ptr<Transport> stack(std::unique_ptr<FrameSocket> socket, const SequencedLinkOptions& link, bool binds) {
    if (wrap_socket_) socket = wrap_socket_(std::move(socket), binds);
    std::unique_ptr<Transport> t = std::make_unique<SequencedLink>(std::move(socket), link);
    if (wrap_transport_) t = wrap_transport_(std::move(t), binds);
    return t;
  }

  std::unique_ptr<SocketMaker> sockets_;
  SocketWrap wrap_socket_;
  TransportWrap wrap_transport_;
};

struct BackendParam {
  std::string name;
  std::function<std::unique_ptr<Backend>()> make;
};
inline void PrintTo(const BackendParam& param, std::ostream* os) { *os << param.name; }
inline std::string backendName(const ::testing::TestParamInfo<BackendParam>& info) { return info.param.name; }

class TransportConformance : public ::testing::TestWithParam<BackendParam> {
 protected:
  void SetUp() override { backend_ = GetParam().make(); }
  Backend& backend() { return *backend_; }

 private:
  std::unique_ptr<Backend> backend_;
};

}  // namespace tandem::transport::conformance

// The ZeroMQ transport: the conformance suite over inproc:// and tcp://127.0.0.1:*, then
// what only ZeroMQ has (raw sockets speaking bytes, the wire layout, bind errors).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <zmq_addon.hpp>

#include "runtime/transport/zmq_transport.h"
#include "tests/runtime/receive_util.h"
#include "tests/runtime/transport_conformance.h"

namespace tandem::transport {
namespace {

using namespace std::chrono_literals;
using conformance::TransportConformance;
using ::testing::HasSubstr;

conformance::BackendParam zmqBackend(const std::string& name, bool inproc) {
  return {name, [inproc] {
            return std::make_unique<conformance::Backend>(std::make_unique<conformance::ZmqSockets>(inproc));
          }};
}

INSTANTIATE_TEST_SUITE_P(Zmq, TransportConformance,
                         ::testing::Values(zmqBackend("Inproc", true), zmqBackend("Tcp", false)),
                         conformance::backendName);

ZmqOptions options(ZmqOptions::Mode mode, const std::string& endpoint, std::shared_ptr<zmq::context_t> context) {
  ZmqOptions o;
  o.mode = mode;
  o.endpoint = endpoint;
  o.context = std::move(context);
  o.heartbeat_interval = 100ms;
  o.peer_timeout = 600ms;
  o.log_component = mode == ZmqOptions::Mode::kBind ? "test.cloud" : "test.edge";
  return o;
}

class ZmqWire : public ::testing::TestWithParam<std::string> {
 protected:
  std::string bindEndpoint() const {
    static int counter = 0;
    return GetParam() == "inproc" ? "inproc://transport-test-" + std::to_string(counter++) : "tcp://127.0.0.1:*";
  }

  std::shared_ptr<zmq::context_t> context_ = std::make_shared<zmq::context_t>(1);
};

Message hello(std::uint64_t step) {
  Message m(MessageType::kHello, Hello{"edge", "run", "cnn", "fp", 5, 2, 64, 0, "recompute", "none", "none", 1, false, {}});
  m.header.step = step;
  return m;
}

std::vector<zmq::message_t> receiveRaw(zmq::socket_t& socket, std::chrono::milliseconds timeout) {
  std::vector<zmq::message_t> frames;
  zmq::pollitem_t items[] = {{socket.handle(), 0, ZMQ_POLLIN, 0}};
  if (zmq::poll(items, 1, timeout) > 0 && !zmq::recv_multipart(socket, std::back_inserter(frames))) frames.clear();
  return frames;
}

TEST_P(ZmqWire, InvalidMessagesGetAnErrorAndServingContinues) {
  ZmqTransport cloud(options(ZmqOptions::Mode::kBind, bindEndpoint(), context_));
  ZmqTransport edge(options(ZmqOptions::Mode::kConnect, cloud.endpoint(), context_));
  // A raw DEALER socket that speaks bytes, not the protocol.
  zmq::socket_t raw(*context_, zmq::socket_type::dealer);
  raw.set(zmq::sockopt::linger, 0);
  raw.connect(cloud.endpoint());
  // Garbage, then a header declaring a tensor whose frame is missing, then a valid one.
  raw.send(zmq::str_buffer("not a tandem message"), zmq::send_flags::none);
  auto reply = receiveRaw(raw, 2000ms);
  ASSERT_EQ(reply.size(), 1u);
  auto decoded = decodeHeaderFrame(reply[0].data(), reply[0].size(), Limits{});
  EXPECT_EQ(decoded.header.type, MessageType::kError);
  EXPECT_EQ(std::get<ErrorInfo>(decoded.body).code, ErrorCode::kMalformed);
  EXPECT_EQ(decoded.header.sequence, 0u);  // the first message the cloud sent this peer

  Header h;
  h.type = MessageType::kActivations;
  TensorMeta t;
  t.shape = {2};
  t.bytes = 8;
  h.tensors = {t};
  raw.send(zmq::buffer(encodeHeaderFrame(h, std::monostate{})), zmq::send_flags::none);
  reply = receiveRaw(raw, 2000ms);
  ASSERT_EQ(reply.size(), 1u);
  decoded = decodeHeaderFrame(reply[0].data(), reply[0].size(), Limits{});
  EXPECT_THAT(std::get<ErrorInfo>(decoded.body).message, HasSubstr("declares 1 tensors but has 0 payload frames"));
  EXPECT_EQ(decoded.header.sequence, 1u);
  EXPECT_EQ(cloud.stats().messages_rejected, 2u);

  // The good edge is unaffected.
  edge.send(hello(0));
  auto m = tandem::test_util::receiveMessage(cloud, 2s);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->header.type, MessageType::kHello);
}

TEST_P(ZmqWire, SilentCloudFailsTheEdge) {
  zmq::socket_t router(*context_, zmq::socket_type::router);
  router.set(zmq::sockopt::linger, 0);
  std::string endpoint = GetParam() == "inproc" ? "inproc://silent-cloud" : "tcp://127.0.0.1:*";
  router.bind(endpoint);
  endpoint = router.get(zmq::sockopt::last_endpoint);
  ZmqTransport edge(options(ZmqOptions::Mode::kConnect, endpoint, context_));
  edge.send(hello(0));
  auto frames = receiveRaw(router, 2000ms);
  ASSERT_EQ(frames.size(), 2u);  // routing id, header
  // Answer once, then fall silent.
  Header h;
  h.type = MessageType::kWelcome;
  const std::string welcome = encodeHeaderFrame(h, Welcome{});
  std::array<zmq::const_buffer, 2> reply = {zmq::buffer(frames[0].data(), frames[0].size()), zmq::buffer(welcome)};
  zmq::send_multipart(router, reply);
  ASSERT_TRUE(tandem::test_util::receiveMessage(edge, 2s));
  try {
    while (true) {
      if (!edge.receive(3s)) FAIL() << "no failure reported";
    }
  } catch (const TransportError& e) {
    EXPECT_THAT(e.what(), HasSubstr("no message from the cloud"));
    EXPECT_THAT(e.what(), HasSubstr("link.peer_timeout_s"));
  }
}

INSTANTIATE_TEST_SUITE_P(Zmq, ZmqWire, ::testing::Values("inproc", "tcp"));

TEST(ZmqTransport, BindFailureIsReported) {
  ZmqOptions o;
  o.mode = ZmqOptions::Mode::kBind;
  o.endpoint = "tcp://127.0.0.1:*";
  ZmqTransport first(o);
  o.endpoint = first.endpoint();
  try {
    ZmqTransport second(o);
    FAIL() << "bound twice";
  } catch (const TransportError& e) {
    EXPECT_THAT(e.what(), HasSubstr("cannot bind '" + first.endpoint() + "'"));
  }
  o.endpoint = "nonsense://x";
  EXPECT_THROW(ZmqTransport bad(o), TransportError);
}

TEST(ZmqTransport, OversizedFramesNeverReachTheCloud) {
  // ZeroMQ cuts off a peer whose frame exceeds the limit, before allocating it.
  auto context = std::make_shared<zmq::context_t>(1);
  auto o = options(ZmqOptions::Mode::kBind, "tcp://127.0.0.1:*", context);
  o.limits.max_tensor_bytes = 1000;
  ZmqTransport cloud(o);
  ZmqTransport edge(options(ZmqOptions::Mode::kConnect, cloud.endpoint(), context));
  Message big(MessageType::kActivations, std::monostate{});
  TensorMeta meta;
  meta.dtype = DType::kUInt8;
  meta.shape = {100000};
  meta.bytes = 100000;
  big.header.tensors = {meta};
  big.payloads.emplace_back(100000);
  edge.send(std::move(big));
  EXPECT_FALSE(tandem::test_util::receiveMessage(cloud, 500ms).has_value());
  EXPECT_EQ(cloud.stats().messages_received, 0u);
}

}  // namespace
}  // namespace tandem::transport

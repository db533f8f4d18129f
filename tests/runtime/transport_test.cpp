// One transport suite, instantiated for ZeroMQ over inproc:// and tcp://127.0.0.1:*.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/types.h>

#include <thread>
#include <zmq_addon.hpp>

#include "tests/runtime/receive_util.h"
#include "runtime/transport/tensor_frames.h"
#include "runtime/transport/zmq_transport.h"

namespace tandem::transport {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

struct Pair {
  std::shared_ptr<zmq::context_t> context = std::make_shared<zmq::context_t>(1);
  std::unique_ptr<ZmqTransport> cloud;
  std::unique_ptr<ZmqTransport> edge;
};

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

class TransportSuite : public ::testing::TestWithParam<std::string> {
 protected:
  std::string bindEndpoint() const {
    static int counter = 0;
    return GetParam() == "inproc" ? "inproc://transport-test-" + std::to_string(counter++) : "tcp://127.0.0.1:*";
  }

  Pair makePair() {
    Pair p;
    p.cloud = std::make_unique<ZmqTransport>(options(ZmqOptions::Mode::kBind, bindEndpoint(), p.context));
    p.edge = std::make_unique<ZmqTransport>(options(ZmqOptions::Mode::kConnect, p.cloud->endpoint(), p.context));
    return p;
  }

  // A raw DEALER socket that speaks bytes, not the protocol.
  zmq::socket_t rawDealer(Pair& p) {
    zmq::socket_t s(*p.context, zmq::socket_type::dealer);
    s.set(zmq::sockopt::linger, 0);
    s.connect(p.cloud->endpoint());
    return s;
  }
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

TEST_P(TransportSuite, DeliversInOrderBothWays) {
  auto p = makePair();
  for (std::uint64_t i = 0; i < 50; ++i) p.edge->send(hello(i));
  std::string peer;
  for (std::uint64_t i = 0; i < 50; ++i) {
    auto m = tandem::test_util::receiveMessage(*p.cloud, 2s);
    ASSERT_TRUE(m) << "message " << i;
    EXPECT_EQ(m->header.step, i);
    EXPECT_EQ(m->header.sequence, i);
    EXPECT_EQ(std::get<Hello>(m->body).model, "cnn");
    peer = m->peer;
  }
  for (std::uint64_t i = 0; i < 20; ++i) {
    Message r(MessageType::kGradients, StepResult{0.5, 3, 4});
    r.header.step = i;
    r.peer = peer;
    p.cloud->send(std::move(r));
  }
  for (std::uint64_t i = 0; i < 20; ++i) {
    auto m = tandem::test_util::receiveMessage(*p.edge, 2s);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->header.step, i);
    EXPECT_EQ(std::get<StepResult>(m->body).correct, 3);
  }
  EXPECT_GT(p.edge->stats().bytes_sent, 0u);
  EXPECT_EQ(p.edge->stats().bytes_sent, p.cloud->stats().bytes_received);
}

TEST_P(TransportSuite, ReceiveTimesOut) {
  auto p = makePair();
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(tandem::test_util::receiveMessage(*p.cloud, 150ms).has_value());
  EXPECT_GE(std::chrono::steady_clock::now() - start, 140ms);
}

TEST_P(TransportSuite, TensorsTravelIntact) {
  auto p = makePair();
  CodecCache codecs;
  const auto activation = torch::randn({4, 3, 5});
  const auto labels = torch::tensor({1, 2, 3, 4}, torch::kInt64);
  Message m(MessageType::kActivations, std::monostate{});
  for (const auto& t : {activation, labels}) {
    auto f = rawFrame(t);
    m.header.tensors.push_back(f.meta);
    m.payloads.push_back(std::move(f.frame));
  }
  p.edge->send(std::move(m));
  auto got = tandem::test_util::receiveMessage(*p.cloud, 2s);
  ASSERT_TRUE(got);
  ASSERT_EQ(got->payloads.size(), 2u);
  const auto a = frameToTensor(got->header.tensors[0], std::move(got->payloads[0]), codecs);
  const auto l = frameToTensor(got->header.tensors[1], std::move(got->payloads[1]), codecs);
  EXPECT_TRUE(a.equal(activation));
  EXPECT_TRUE(l.equal(labels));
}

TEST_P(TransportSuite, ReceiverFollowsTheCodecOfEachMessage) {
  auto p = makePair();
  CodecCache codecs;
  const auto activation = torch::randn({4, 3, 5});
  for (const std::string spec : {"int8", "fp16", "none", "topk:0.5", "int4"}) {
    Message m(MessageType::kActivations, std::monostate{});
    auto f = spec == "none" ? rawFrame(activation) : encodedFrame(activation, codecs.get(spec));
    m.header.tensors.push_back(f.meta);
    m.payloads.push_back(std::move(f.frame));
    p.edge->send(std::move(m));
  }
  for (const std::string spec : {"int8", "fp16", "raw", "topk:0.5", "int4"}) {
    auto got = tandem::test_util::receiveMessage(*p.cloud, 2s);
    ASSERT_TRUE(got);
    EXPECT_EQ(got->header.tensors[0].codec, spec);
    const auto t = frameToTensor(got->header.tensors[0], std::move(got->payloads[0]), codecs);
    EXPECT_EQ(t.sizes(), activation.sizes());
    const double tolerance = spec == "topk:0.5" ? 10.0 : (spec == "int4" ? 0.6 : 0.05);
    EXPECT_LT((t - activation).abs().max().item<double>(), tolerance) << spec;
  }
}

TEST_P(TransportSuite, InvalidMessagesGetAnErrorAndServingContinues) {
  auto p = makePair();
  auto raw = rawDealer(p);
  // Garbage, then a header declaring a tensor whose frame is missing, then a valid one.
  raw.send(zmq::str_buffer("not a tandem message"), zmq::send_flags::none);
  auto reply = receiveRaw(raw, 2000ms);
  ASSERT_EQ(reply.size(), 1u);
  auto decoded = decodeHeaderFrame(reply[0].data(), reply[0].size(), Limits{});
  EXPECT_EQ(decoded.header.type, MessageType::kError);
  EXPECT_EQ(std::get<ErrorInfo>(decoded.body).code, ErrorCode::kMalformed);

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
  EXPECT_EQ(p.cloud->stats().messages_rejected, 2u);

  // The good edge is unaffected.
  p.edge->send(hello(0));
  auto m = tandem::test_util::receiveMessage(*p.cloud, 2s);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->header.type, MessageType::kHello);
}

TEST_P(TransportSuite, SequenceGapsAreCountedAndReplaysRejected) {
  auto p = makePair();
  auto raw = rawDealer(p);
  Header h;
  h.type = MessageType::kEpochBegin;
  h.sequence = 5;  // messages 0..4 were lost on the way: counted, this one delivered
  raw.send(zmq::buffer(encodeHeaderFrame(h, EpochInfo{})), zmq::send_flags::none);
  auto trouble = p.cloud->receive(2s);  // the pipeline hears of the loss first
  ASSERT_TRUE(trouble);
  ASSERT_NE(asEvent(*trouble), nullptr);
  EXPECT_EQ(asEvent(*trouble)->kind, LinkEvent::Kind::kTrouble);
  auto first = tandem::test_util::receiveMessage(*p.cloud, 2s);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->header.sequence, 5u);
  EXPECT_EQ(p.cloud->stats().messages_lost, 5u);
  h.sequence = 3;  // a replay of an older message
  raw.send(zmq::buffer(encodeHeaderFrame(h, EpochInfo{})), zmq::send_flags::none);
  DecodedHeader decoded;
  do {  // the peer is known now, so heartbeats may come first
    auto reply = receiveRaw(raw, 2000ms);
    ASSERT_EQ(reply.size(), 1u);
    decoded = decodeHeaderFrame(reply[0].data(), reply[0].size(), Limits{});
  } while (decoded.header.type == MessageType::kHeartbeat);
  EXPECT_THAT(std::get<ErrorInfo>(decoded.body).message, HasSubstr("has sequence 3, expected 6 or later"));
  EXPECT_FALSE(tandem::test_util::receiveMessage(*p.cloud, 100ms).has_value());
}

TEST_P(TransportSuite, HeartbeatsKeepAnIdleLinkAlive) {
  auto p = makePair();
  p.edge->send(hello(0));
  auto m = tandem::test_util::receiveMessage(*p.cloud, 2s);
  ASSERT_TRUE(m);
  Message r(MessageType::kWelcome, Welcome{});
  r.peer = m->peer;
  p.cloud->send(std::move(r));
  ASSERT_TRUE(tandem::test_util::receiveMessage(*p.edge, 2s));
  // Idle for three peer timeouts: heartbeats flow, nobody is declared lost.
  std::this_thread::sleep_for(1800ms);
  EXPECT_FALSE(tandem::test_util::receiveMessage(*p.cloud, 10ms).has_value());
  EXPECT_NO_THROW(tandem::test_util::receiveMessage(*p.edge, 10ms));
}

TEST_P(TransportSuite, SilentEdgeIsReportedLost) {
  auto p = makePair();
  auto raw = rawDealer(p);
  Header h;
  h.type = MessageType::kHello;
  raw.send(zmq::buffer(encodeHeaderFrame(h, Hello{})), zmq::send_flags::none);
  auto first = tandem::test_util::receiveMessage(*p.cloud, 2s);
  ASSERT_TRUE(first);
  const auto start = std::chrono::steady_clock::now();
  auto lost = p.cloud->receive(3s);
  ASSERT_TRUE(lost);
  ASSERT_NE(asEvent(*lost), nullptr);
  EXPECT_EQ(asEvent(*lost)->kind, LinkEvent::Kind::kPeerLost);
  EXPECT_EQ(asEvent(*lost)->peer, first->peer);
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_LT(waited, 2s);
}

TEST_P(TransportSuite, SilentCloudFailsTheEdge) {
  auto context = std::make_shared<zmq::context_t>(1);
  zmq::socket_t router(*context, zmq::socket_type::router);
  router.set(zmq::sockopt::linger, 0);
  std::string endpoint = GetParam() == "inproc" ? "inproc://silent-cloud" : "tcp://127.0.0.1:*";
  router.bind(endpoint);
  endpoint = router.get(zmq::sockopt::last_endpoint);
  ZmqTransport edge(options(ZmqOptions::Mode::kConnect, endpoint, context));
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

INSTANTIATE_TEST_SUITE_P(Zmq, TransportSuite, ::testing::Values("inproc", "tcp"));

}  // namespace
}  // namespace tandem::transport

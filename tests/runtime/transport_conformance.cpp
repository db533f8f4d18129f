// The transport conformance suite (see transport_conformance.h): what every stack does,
// whatever carries its frames.
#include "tests/runtime/transport_conformance.h"

#include <gmock/gmock.h>
#include <torch/types.h>

#include <cstring>
#include <map>
#include <thread>

#include "runtime/transport/tensor_frames.h"
#include "tests/runtime/receive_util.h"

namespace tandem::transport::conformance {
namespace {

using test_util::withPayload;
using namespace std::chrono_literals;
using test_util::receiveEvent;
using test_util::receiveMessage;
using ::testing::HasSubstr;

// Heartbeats every 100 ms, a peer lost after 600 ms of silence.
SequencedLinkOptions fast(const std::string& component, std::chrono::milliseconds grace = 0ms) {
  SequencedLinkOptions o;
  o.log_component = component;
  o.heartbeat_interval = 100ms;
  o.peer_timeout = 600ms;
  o.reconnect_grace = grace;
  return o;
}

// No heartbeat within a test's lifetime, so counts of what crossed are exact.
SequencedLinkOptions quiet(const std::string& component) {
  SequencedLinkOptions o;
  o.log_component = component;
  o.heartbeat_interval = 600s;
  o.peer_timeout = 1200s;
  return o;
}

struct Pair {
  std::unique_ptr<Transport> cloud;
  std::unique_ptr<Transport> edge;
};

Pair makePair(Backend& backend, SequencedLinkOptions (*timings)(const std::string&, std::chrono::milliseconds) = fast) {
  Pair p;
  p.cloud = backend.cloud(timings("test.cloud", 0ms));
  p.edge = backend.edge(timings("test.edge", 0ms));
  return p;
}

SequencedLinkOptions quietTimings(const std::string& component, std::chrono::milliseconds) { return quiet(component); }

Message hello(std::uint64_t step) {
  Message m(MessageType::kHello,
            Hello{"edge", "run", "cnn", "fp", 5, 2, 64, 0, "recompute", "none", "none", 1, false, {}});
  m.header.step = step;
  return m;
}

// A raw frame socket's next message that is not a heartbeat (a known peer gets them).
std::optional<Message> receiveRaw(FrameSocket& socket, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    auto received = socket.receive(left);
    if (!received) return std::nullopt;
    auto* message = std::get_if<Message>(&*received);
    if (!message) {
      ADD_FAILURE() << "the transport sent an invalid message: " << std::get<Rejection>(*received).reason;
      return std::nullopt;
    }
    if (message->header.type != MessageType::kHeartbeat) return std::move(*message);
  }
  return std::nullopt;
}

ErrorInfo errorOf(const std::optional<Message>& message) {
  EXPECT_TRUE(message);
  if (!message) return {};
  EXPECT_EQ(message->header.type, MessageType::kError);
  if (message->header.type != MessageType::kError) return {};
  return std::get<ErrorInfo>(message->body);
}

TEST_P(TransportConformance, DeliversInOrderBothWays) {
  auto p = makePair(backend(), quietTimings);
  for (std::uint64_t i = 0; i < 50; ++i) p.edge->send(hello(i));
  std::string peer;
  for (std::uint64_t i = 0; i < 50; ++i) {
    auto m = receiveMessage(*p.cloud, 2s);
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
    auto m = receiveMessage(*p.edge, 2s);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->header.step, i);
    EXPECT_EQ(m->header.sequence, i);
    EXPECT_EQ(std::get<StepResult>(m->body).correct, 3);
  }
  EXPECT_GT(p.edge->stats().bytes_sent, 0u);
  EXPECT_EQ(p.edge->stats().bytes_sent, p.cloud->stats().bytes_received);
  EXPECT_EQ(p.cloud->stats().bytes_sent, p.edge->stats().bytes_received);
}

TEST_P(TransportConformance, ReceiveTimesOut) {
  auto p = makePair(backend());
  for (Transport* t : {p.cloud.get(), p.edge.get()}) {
    const auto start = std::chrono::steady_clock::now();
    EXPECT_FALSE(receiveMessage(*t, 150ms).has_value());
    EXPECT_GE(std::chrono::steady_clock::now() - start, 140ms);
  }
}

TEST_P(TransportConformance, TensorsTravelIntact) {
  auto p = makePair(backend());
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
  auto got = receiveMessage(*p.cloud, 2s);
  ASSERT_TRUE(got);
  ASSERT_EQ(got->payloads.size(), 2u);
  const auto a = frameToTensor(got->header.tensors[0], std::move(got->payloads[0]), codecs);
  const auto l = frameToTensor(got->header.tensors[1], std::move(got->payloads[1]), codecs);
  EXPECT_TRUE(a.equal(activation));
  EXPECT_TRUE(l.equal(labels));
}

TEST_P(TransportConformance, ReceiverFollowsTheCodecOfEachMessage) {
  auto p = makePair(backend());
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
    auto got = receiveMessage(*p.cloud, 2s);
    ASSERT_TRUE(got);
    EXPECT_EQ(got->header.tensors[0].codec, spec);
    const auto t = frameToTensor(got->header.tensors[0], std::move(got->payloads[0]), codecs);
    EXPECT_EQ(t.sizes(), activation.sizes());
    const double tolerance = spec == "topk:0.5" ? 10.0 : (spec == "int4" ? 0.6 : 0.05);
    EXPECT_LT((t - activation).abs().max().item<double>(), tolerance) << spec;
  }
}

TEST_P(TransportConformance, StatsCountWhatCrossed) {
  auto p = makePair(backend(), quietTimings);
  std::uint64_t up = 0;
  for (std::size_t bytes : {100u, 5000u, 1u}) {
    Message m = withPayload(bytes);
    up += wireBytes(m);
    p.edge->send(std::move(m));
  }
  p.edge->send(hello(7));
  up += wireBytes(hello(7));
  std::uint64_t arrived = 0;
  std::string peer;
  for (int i = 0; i < 4; ++i) {
    auto m = receiveMessage(*p.cloud, 2s);
    ASSERT_TRUE(m);
    arrived += m->wire_bytes;
    peer = m->peer;
  }
  EXPECT_EQ(arrived, up);
  Message reply = withPayload(300);
  reply.peer = peer;
  const std::uint64_t down = wireBytes(reply);
  p.cloud->send(std::move(reply));
  auto got = receiveMessage(*p.edge, 2s);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->wire_bytes, down);
  ASSERT_EQ(got->payloads.size(), 1u);
  EXPECT_EQ(static_cast<const unsigned char*>(got->payloads[0].data())[299], 0x5a);

  const auto edge = p.edge->stats();
  const auto cloud = p.cloud->stats();
  EXPECT_EQ(edge.messages_sent, 4u);
  EXPECT_EQ(edge.bytes_sent, up);
  EXPECT_EQ(cloud.messages_received, 4u);
  EXPECT_EQ(cloud.bytes_received, up);
  EXPECT_EQ(cloud.messages_sent, 1u);
  EXPECT_EQ(cloud.bytes_sent, down);
  EXPECT_EQ(edge.messages_received, 1u);
  EXPECT_EQ(edge.bytes_received, down);
  for (const auto& s : {edge, cloud}) {
    EXPECT_EQ(s.messages_rejected, 0u);
    EXPECT_EQ(s.messages_lost, 0u);
    EXPECT_EQ(s.messages_dropped, 0u);
  }
}

TEST_P(TransportConformance, EdgesAreKeptApart) {
  auto cloud = backend().cloud(fast("test.cloud"));
  auto first = backend().edge(fast("test.edge1"));
  auto second = backend().edge(fast("test.edge2"));
  first->send(hello(1));
  second->send(hello(2));
  std::map<std::uint64_t, std::string> peers;  // step → peer
  for (int i = 0; i < 2; ++i) {
    auto m = receiveMessage(*cloud, 2s);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->header.sequence, 0u);  // numbered per peer
    peers[m->header.step] = m->peer;
  }
  ASSERT_EQ(peers.size(), 2u);
  EXPECT_NE(peers[1], peers[2]);
  for (const auto& [step, peer] : peers) {
    Message r(MessageType::kWelcome, Welcome{});
    r.header.step = step * 10;
    r.peer = peer;
    cloud->send(std::move(r));
  }
  auto to_first = receiveMessage(*first, 2s);
  auto to_second = receiveMessage(*second, 2s);
  ASSERT_TRUE(to_first);
  ASSERT_TRUE(to_second);
  EXPECT_EQ(to_first->header.step, 10u);
  EXPECT_EQ(to_second->header.step, 20u);
}

TEST_P(TransportConformance, SequenceGapIsTroubleThenTheMessageAndReplaysAreRejected) {
  auto cloud = backend().cloud(fast("test.cloud"));
  auto raw = backend().rawEdge();
  Message m(MessageType::kEpochBegin, EpochInfo{});
  m.header.sequence = 5;  // messages 0..4 were lost on the way: counted, this one delivered
  raw->send(std::move(m));
  auto trouble = receiveEvent(*cloud, 2s);  // the pipeline hears of the loss first
  ASSERT_TRUE(trouble);
  EXPECT_EQ(trouble->kind, LinkEvent::Kind::kTrouble);
  auto first = receiveMessage(*cloud, 2s);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->header.sequence, 5u);
  EXPECT_EQ(trouble->peer, first->peer);
  EXPECT_EQ(cloud->stats().messages_lost, 5u);

  Message replay(MessageType::kEpochBegin, EpochInfo{});
  replay.header.sequence = 3;  // a replay of an older message
  raw->send(std::move(replay));
  const auto error = errorOf(receiveRaw(*raw, 2s));
  EXPECT_EQ(error.code, ErrorCode::kUnexpected);
  EXPECT_THAT(error.message, HasSubstr("has sequence 3, expected 6 or later"));
  EXPECT_FALSE(receiveMessage(*cloud, 100ms).has_value());
  EXPECT_EQ(cloud->stats().messages_rejected, 1u);
  EXPECT_EQ(cloud->stats().messages_lost, 5u);
}

TEST_P(TransportConformance, InvalidTensorMetadataIsAnsweredAndServingContinues) {
  auto p = makePair(backend());
  auto raw = backend().rawEdge();
  // A header declaring a tensor whose frame is missing.
  Message bad(MessageType::kActivations, std::monostate{});
  TensorMeta t;
  t.shape = {2};
  t.bytes = 8;
  bad.header.tensors = {t};
  raw->send(std::move(bad));
  const auto error = errorOf(receiveRaw(*raw, 2s));
  EXPECT_EQ(error.code, ErrorCode::kInvalidTensor);
  EXPECT_THAT(error.message, HasSubstr("declares 1 tensors but has 0 payload frames"));
  EXPECT_EQ(p.cloud->stats().messages_rejected, 1u);

  // An invalid Error is counted but never answered; a valid message after it (on the same
  // link, so in order) shows that it was handled.
  Message bad_error(MessageType::kError, ErrorInfo{ErrorCode::kInternal, "x"});
  bad_error.header.tensors = {t};
  raw->send(std::move(bad_error));
  raw->send(hello(5));
  auto after = receiveMessage(*p.cloud, 2s);
  ASSERT_TRUE(after);
  EXPECT_EQ(after->header.step, 5u);
  EXPECT_EQ(p.cloud->stats().messages_rejected, 2u);
  EXPECT_FALSE(receiveRaw(*raw, 300ms).has_value());

  // The good edge is unaffected.
  p.edge->send(hello(0));
  auto m = receiveMessage(*p.cloud, 2s);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->header.type, MessageType::kHello);
  EXPECT_NE(m->peer, after->peer);
}

TEST_P(TransportConformance, HeartbeatsKeepAnIdleLinkAlive) {
  auto p = makePair(backend());
  p.edge->send(hello(0));
  auto m = receiveMessage(*p.cloud, 2s);
  ASSERT_TRUE(m);
  Message r(MessageType::kWelcome, Welcome{});
  r.peer = m->peer;
  p.cloud->send(std::move(r));
  ASSERT_TRUE(receiveMessage(*p.edge, 2s));
  // Idle for three peer timeouts: heartbeats flow, nobody is declared lost.
  std::this_thread::sleep_for(1800ms);
  EXPECT_FALSE(receiveMessage(*p.cloud, 10ms).has_value());
  EXPECT_NO_THROW(receiveMessage(*p.edge, 10ms));
  // They crossed (the Hello, then heartbeats), but never reached the caller.
  EXPECT_GE(p.cloud->stats().messages_received, 2u);
  EXPECT_GE(p.edge->stats().messages_received, 2u);
}

TEST_P(TransportConformance, SilentEdgeIsReportedLost) {
  auto cloud = backend().cloud(fast("test.cloud"));
  auto raw = backend().rawEdge();
  raw->send(Message(MessageType::kHello, Hello{}));
  auto first = receiveMessage(*cloud, 2s);
  ASSERT_TRUE(first);
  const auto start = std::chrono::steady_clock::now();
  auto lost = receiveEvent(*cloud, 3s);
  ASSERT_TRUE(lost);
  EXPECT_EQ(lost->kind, LinkEvent::Kind::kPeerLost);
  EXPECT_EQ(lost->peer, first->peer);
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_LT(waited, 2s);
}

TEST_P(TransportConformance, SilentEdgeIsTroubleWithinTheGraceThenLost) {
  auto cloud = backend().cloud(fast("test.cloud", 300ms));
  auto raw = backend().rawEdge();
  raw->send(Message(MessageType::kHello, Hello{}));
  auto first = receiveMessage(*cloud, 2s);
  ASSERT_TRUE(first);
  for (auto kind : {LinkEvent::Kind::kTrouble, LinkEvent::Kind::kPeerLost}) {
    auto event = receiveEvent(*cloud, 3s);
    ASSERT_TRUE(event);
    EXPECT_EQ(event->kind, kind);
    EXPECT_EQ(event->peer, first->peer);
  }
}

// The edge says hello to the raw cloud and hears from it once.
void answerOnce(FrameSocket& raw_cloud, Transport& edge) {
  edge.send(hello(0));
  auto got = receiveRaw(raw_cloud, 2s);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->header.type, MessageType::kHello);
  Message welcome(MessageType::kWelcome, Welcome{});
  welcome.peer = got->peer;
  raw_cloud.send(std::move(welcome));
  ASSERT_TRUE(receiveMessage(edge, 2s));
}

TEST_P(TransportConformance, SilentCloudFailsTheEdge) {
  auto raw = backend().rawCloud();
  auto edge = backend().edge(fast("test.edge"));
  ASSERT_NO_FATAL_FAILURE(answerOnce(*raw, *edge));
  // Then silence.
  try {
    while (true) {
      if (!edge->receive(3s)) FAIL() << "no failure reported";
    }
  } catch (const TransportError& e) {
    EXPECT_THAT(e.what(), HasSubstr("no message from the cloud"));
    EXPECT_THAT(e.what(), HasSubstr("link.peer_timeout_s"));
  }
  EXPECT_THROW(edge->send(hello(1)), TransportError);
}

TEST_P(TransportConformance, SilentCloudIsTroubleWithinTheGraceThenFailsTheEdge) {
  auto raw = backend().rawCloud();
  auto edge = backend().edge(fast("test.edge", 300ms));
  ASSERT_NO_FATAL_FAILURE(answerOnce(*raw, *edge));
  auto trouble = receiveEvent(*edge, 3s);
  ASSERT_TRUE(trouble);
  EXPECT_EQ(trouble->kind, LinkEvent::Kind::kTrouble);
  try {
    while (true) {
      if (!edge->receive(3s)) FAIL() << "no failure reported";
    }
  } catch (const TransportError& e) {
    EXPECT_THAT(e.what(), HasSubstr("link.reconnect_grace_s = 0.30"));
  }
}

TEST_P(TransportConformance, SendAfterCloseThrows) {
  auto p = makePair(backend());
  p.edge->close(0ms);
  EXPECT_THROW(p.edge->send(hello(0)), TransportError);
  p.cloud->close(0ms);
  Message m = hello(0);
  m.peer = "anyone";
  EXPECT_THROW(p.cloud->send(std::move(m)), TransportError);
  p.cloud->close(0ms);  // again: nothing happens
}

}  // namespace
}  // namespace tandem::transport::conformance

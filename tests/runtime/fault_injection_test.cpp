// Fault injection under the sequencing layer: the conformance suite with faults armed but
// none active, then faults that fire, over the in-memory hub and ZeroMQ.
#include "runtime/transport/fault_injection.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "runtime/transport/zmq_transport.h"
#include "tests/runtime/receive_util.h"
#include "tests/runtime/transport_conformance.h"

namespace tandem::transport {
namespace {

using namespace std::chrono_literals;
using conformance::TransportConformance;
using test_util::receiveMessage;
using ::testing::HasSubstr;

// Every kind of fault, none of which fires within a test: an outage an hour from now, a
// drop of a message no test sends, a switch that stays up.
std::vector<std::unique_ptr<Fault>> armedFaults() {
  std::vector<std::unique_ptr<Fault>> faults;
  faults.push_back(std::make_unique<OutageWindows>(std::vector<std::pair<double, double>>{{3600.0, 1.0}}));
  faults.push_back(std::make_unique<DropMessage>(Direction::kSend, std::uint64_t{1} << 40));
  faults.push_back(std::make_unique<DropMessage>(Direction::kReceive, std::uint64_t{1} << 40));
  faults.push_back(std::make_unique<LinkSwitch>(std::make_shared<LinkSwitch::State>()));
  return faults;
}

INSTANTIATE_TEST_SUITE_P(FaultInjected, TransportConformance,
                         ::testing::Values(conformance::BackendParam{
                             "ZmqInproc",
                             [] {
                               return std::make_unique<conformance::Backend>(
                                   std::make_unique<conformance::ZmqSockets>(true),
                                   [](std::unique_ptr<FrameSocket> socket, bool binds) {
                                     return std::make_unique<FaultInjector>(std::move(socket), armedFaults(),
                                                                            binds ? "test.cloud" : "test.edge");
                                   });
                             }}),
                         conformance::backendName);

Message step(std::uint64_t n) {
  Message m(MessageType::kEpochBegin, EpochInfo{});
  m.header.step = n;
  return m;
}

TEST(OutageWindows, CoverStartUpToStartPlusDuration) {
  const OutageWindows w({{1.5, 0.5}, {3.0, 1.0}});
  EXPECT_FALSE(w.downAt(0.0));
  EXPECT_FALSE(w.downAt(1.4999));
  EXPECT_TRUE(w.downAt(1.5));
  EXPECT_TRUE(w.downAt(1.9999));
  EXPECT_FALSE(w.downAt(2.0));
  EXPECT_TRUE(w.downAt(3.5));
  EXPECT_FALSE(w.downAt(4.0));
  EXPECT_THAT(w.describe(), HasSubstr("[1.5, 2) s"));
}

TEST(DropMessage, DropsOnlyTheNthMessageOfItsDirectionHeartbeatsUncounted) {
  DropMessage drop(Direction::kSend, 1);
  const Message beat(MessageType::kHeartbeat, std::monostate{});
  const Message other = step(0);
  FaultPoint at;
  at.message = &other;
  at.index = 1;
  EXPECT_EQ(drop.apply(at), FaultAction::kDrop);
  at.direction = Direction::kReceive;
  EXPECT_EQ(drop.apply(at), FaultAction::kPass);
  at.direction = Direction::kSend;
  at.index = 0;
  EXPECT_EQ(drop.apply(at), FaultAction::kPass);
  at.index = 1;
  at.message = &beat;  // a heartbeat between message 0 and 1 carries index 1
  EXPECT_EQ(drop.apply(at), FaultAction::kPass);
  at.message = nullptr;  // a rejection
  EXPECT_EQ(drop.apply(at), FaultAction::kPass);
}

// An in-memory link with `edge_faults` under the edge and `cloud_faults` under the cloud.
struct FaultyPair {
  std::shared_ptr<InMemoryHub> hub = InMemoryHub::create();
  std::unique_ptr<Transport> cloud;
  std::unique_ptr<Transport> edge;

  FaultyPair(std::vector<std::unique_ptr<Fault>> edge_faults, std::vector<std::unique_ptr<Fault>> cloud_faults,
             std::chrono::milliseconds peer_timeout = 600s) {
    SequencedLinkOptions link;
    link.heartbeat_interval = peer_timeout / 6;
    link.peer_timeout = peer_timeout;
    link.log_component = "test.cloud";
    cloud = std::make_unique<SequencedLink>(
        std::make_unique<FaultInjector>(hub->bind(), std::move(cloud_faults), "test.cloud"), link);
    link.log_component = "test.edge";
    edge = std::make_unique<SequencedLink>(
        std::make_unique<FaultInjector>(hub->connect(), std::move(edge_faults), "test.edge"), link);
  }
};

template <typename... F>
std::vector<std::unique_ptr<Fault>> faults(std::unique_ptr<F>... f) {
  std::vector<std::unique_ptr<Fault>> out;
  (out.push_back(std::move(f)), ...);
  return out;
}

void expectTrouble(Transport& t) {
  auto event = test_util::receiveEvent(t, 2s);
  ASSERT_TRUE(event);
  EXPECT_EQ(event->kind, LinkEvent::Kind::kTrouble);
}

TEST(FaultInjector, ADroppedSendIsAGapTheReceiverReportsAsTrouble) {
  FaultyPair p(faults(std::make_unique<DropMessage>(Direction::kSend, 1)), {});
  for (std::uint64_t i = 0; i < 3; ++i) p.edge->send(step(i));
  auto first = receiveMessage(*p.cloud, 2s);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->header.step, 0u);
  ASSERT_NO_FATAL_FAILURE(expectTrouble(*p.cloud));
  auto third = receiveMessage(*p.cloud, 2s);
  ASSERT_TRUE(third);
  EXPECT_EQ(third->header.step, 2u);
  EXPECT_EQ(third->header.sequence, 2u);  // the dropped message spent its number
  EXPECT_EQ(p.cloud->stats().messages_lost, 1u);
  EXPECT_EQ(p.edge->stats().messages_dropped, 1u);
  EXPECT_EQ(p.edge->stats().messages_sent, 2u);
}

TEST(FaultInjector, ADroppedReceiptNeverCountsAsReceived) {
  FaultyPair p({}, faults(std::make_unique<DropMessage>(Direction::kReceive, 0)));
  p.edge->send(step(0));
  Message second = step(1);
  const auto bytes = wireBytes(second);
  p.edge->send(std::move(second));
  ASSERT_NO_FATAL_FAILURE(expectTrouble(*p.cloud));
  auto got = receiveMessage(*p.cloud, 2s);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->header.step, 1u);
  const auto s = p.cloud->stats();
  EXPECT_EQ(s.messages_dropped, 1u);
  EXPECT_EQ(s.messages_lost, 1u);
  EXPECT_EQ(s.messages_received, 1u);
  EXPECT_EQ(s.bytes_received, bytes);
}

TEST(FaultInjector, AnOutageDropsEverySendWhileItLasts) {
  FaultyPair p(faults(std::make_unique<OutageWindows>(std::vector<std::pair<double, double>>{{0.0, 3600.0}})), {});
  p.edge->send(step(0));
  p.edge->send(step(1));
  EXPECT_FALSE(receiveMessage(*p.cloud, 200ms).has_value());
  EXPECT_EQ(p.edge->stats().messages_dropped, 2u);
  EXPECT_EQ(p.edge->stats().messages_sent, 0u);
}

TEST(FaultInjector, ALinkDownSilencesBothWaysHeartbeatsIncluded) {
  auto down = std::make_shared<LinkSwitch::State>();
  FaultyPair p({}, faults(std::make_unique<LinkSwitch>(down)), 600ms);
  p.edge->send(step(0));
  auto got = receiveMessage(*p.cloud, 2s);
  ASSERT_TRUE(got);
  Message reply(MessageType::kEpochAck, EpochInfo{});
  reply.peer = got->peer;
  p.cloud->send(std::move(reply));
  ASSERT_TRUE(receiveMessage(*p.edge, 2s));
  down->down = true;
  // Only heartbeats would cross now: the cloud drops the edge's, and sends none it keeps.
  auto lost = test_util::receiveEvent(*p.cloud, 5s);
  ASSERT_TRUE(lost);
  EXPECT_EQ(lost->kind, LinkEvent::Kind::kPeerLost);
  EXPECT_EQ(lost->peer, got->peer);
  try {
    while (true) {
      if (!p.edge->receive(5s)) FAIL() << "the edge never noticed";
    }
  } catch (const TransportError& e) {
    EXPECT_THAT(e.what(), HasSubstr("no message from the cloud"));
  }
  EXPECT_GT(p.cloud->stats().messages_dropped, 0u);
}

TEST(FaultInjector, ZmqTransportInjectsUnderTheSequencing) {
  auto context = std::make_shared<zmq::context_t>(1);
  ZmqOptions c;
  c.mode = ZmqOptions::Mode::kBind;
  c.endpoint = "inproc://fault-injection";
  c.context = context;
  ZmqTransport cloud(c);
  ZmqOptions e;
  e.endpoint = cloud.endpoint();
  e.context = context;
  ZmqTransport edge(e, faults(std::make_unique<DropMessage>(Direction::kSend, 0)));
  edge.send(step(0));
  edge.send(step(1));
  ASSERT_NO_FATAL_FAILURE(expectTrouble(cloud));
  auto got = receiveMessage(cloud, 2s);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->header.step, 1u);
  EXPECT_EQ(edge.stats().messages_dropped, 1u);
  EXPECT_EQ(cloud.stats().messages_lost, 1u);
}

}  // namespace
}  // namespace tandem::transport

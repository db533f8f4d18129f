// The in-memory frame socket: the conformance suite, then what only it has (no cloud
// bound, one cloud per hub, limits checked at the receiver).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include "runtime/transport/in_memory_frame_socket.h"
#include "runtime/transport/sequenced_link.h"
#include "tests/runtime/receive_util.h"
#include "tests/runtime/transport_conformance.h"

namespace tandem::transport {
namespace {

using test_util::withPayload;
using namespace std::chrono_literals;
using conformance::TransportConformance;
using ::testing::HasSubstr;

INSTANTIATE_TEST_SUITE_P(
    InMemory, TransportConformance,
    ::testing::Values(conformance::BackendParam{
        "InMemory",
        [] { return std::make_unique<conformance::Backend>(std::make_unique<conformance::InMemorySockets>()); }}),
    conformance::backendName);

TEST(InMemoryHub, OneCloudAtATime) {
  auto hub = InMemoryHub::create({"one", {}, 4});
  auto cloud = hub->bind();
  EXPECT_EQ(cloud->endpoint(), "memory://one");
  EXPECT_TRUE(cloud->binds());
  try {
    hub->bind();
    FAIL() << "bound twice";
  } catch (const TransportError& e) {
    EXPECT_THAT(e.what(), HasSubstr("cannot bind 'memory://one'"));
  }
  cloud->close(0ms);
  EXPECT_NO_THROW(hub->bind());
}

TEST(InMemoryHub, MessagesForNobodyAreDropped) {
  auto hub = InMemoryHub::create();
  auto edge = hub->connect();
  EXPECT_FALSE(edge->binds());
  edge->send(Message(MessageType::kHello, Hello{}));  // no cloud yet
  EXPECT_EQ(edge->stats().messages_sent, 0u);
  auto cloud = hub->bind();
  Message lost(MessageType::kWelcome, Welcome{});
  lost.peer = "mem-99";  // never connected
  cloud->send(std::move(lost));
  EXPECT_EQ(cloud->stats().messages_sent, 0u);
  EXPECT_FALSE(cloud->receive(50ms).has_value());
}

TEST(InMemoryHub, LimitsAreCheckedByTheReceiver) {
  InMemoryOptions options;
  options.limits.max_tensor_bytes = 1000;
  auto hub = InMemoryHub::create(options);
  auto cloud = hub->bind();
  auto edge = hub->connect();
  edge->send(withPayload(2000));
  auto received = cloud->receive(1s);
  ASSERT_TRUE(received);
  const auto* rejected = std::get_if<Rejection>(&*received);
  ASSERT_NE(rejected, nullptr);
  EXPECT_EQ(rejected->code, ErrorCode::kTooLarge);
  EXPECT_EQ(rejected->type, std::nullopt);  // the header itself was refused
  EXPECT_EQ(rejected->peer, "mem-0");
  EXPECT_EQ(cloud->stats().messages_rejected, 1u);
  EXPECT_GT(cloud->stats().bytes_received, 2000u);
}

TEST(InMemoryHub, AFullInboxRefusesTrySend) {
  auto hub = InMemoryHub::create({"full", {}, 2});
  auto cloud = hub->bind();
  auto edge = hub->connect();
  EXPECT_TRUE(edge->trySend(Message(MessageType::kHello, Hello{})));
  EXPECT_TRUE(edge->trySend(Message(MessageType::kHello, Hello{})));
  EXPECT_FALSE(edge->trySend(Message(MessageType::kHello, Hello{})));
  EXPECT_EQ(edge->stats().messages_sent, 2u);
  ASSERT_TRUE(cloud->receive(1s));
  EXPECT_TRUE(edge->trySend(Message(MessageType::kHello, Hello{})));
}

TEST(InMemoryHub, OneCloudServesSeveralSequencedEdges) {
  auto hub = InMemoryHub::create();
  SequencedLinkOptions link;
  SequencedLink cloud(hub->bind(), link);
  std::vector<std::unique_ptr<SequencedLink>> edges;
  for (int i = 0; i < 3; ++i) edges.push_back(std::make_unique<SequencedLink>(hub->connect(), link));
  for (std::size_t i = 0; i < edges.size(); ++i) {
    Message m(MessageType::kEpochBegin, EpochInfo{});
    m.header.step = i;
    edges[i]->send(std::move(m));
  }
  std::set<std::string> peers;
  for (std::size_t i = 0; i < edges.size(); ++i) {
    auto m = test_util::receiveMessage(cloud, 2s);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->peer, "mem-" + std::to_string(m->header.step));
    peers.insert(m->peer);
  }
  EXPECT_EQ(peers.size(), 3u);
}

}  // namespace
}  // namespace tandem::transport

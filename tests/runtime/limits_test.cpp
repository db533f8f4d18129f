// What one peer may cost the other side: log lines, thread progress, queued messages,
// message rate, frames per message, reply-cache memory, and what a refusal reveals.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <algorithm>
#include <sstream>
#include <thread>

#include "runtime/common/bounded_queue.h"
#include "runtime/common/log_limiter.h"
#include "runtime/common/watchdog.h"
#include "runtime/config/config.h"
#include "runtime/session/cloud_session.h"
#include "runtime/session/handshake.h"
#include "runtime/transport/in_memory_frame_socket.h"
#include "runtime/transport/zmq_transport.h"
#include "tests/runtime/receive_util.h"

namespace tandem {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;
using transport::ErrorCode;
using transport::Message;
using transport::MessageType;

// A logger writing into a string, to count lines.
struct CapturedLog {
  CapturedLog() {
    logger = std::make_shared<spdlog::logger>("captured", std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
    logger->set_pattern("%v");
    logger->set_level(spdlog::level::info);
  }
  std::size_t lines() const {
    const auto text = out.str();
    return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
  }
  std::ostringstream out;
  std::shared_ptr<spdlog::logger> logger;
};

TEST(LogLimiter, WritesTheFirstLinesOfAPeerThenOneCounterLinePerInterval) {
  CapturedLog captured;
  log::LogLimiter limited(captured.logger, {3, 100, 50ms, 16});
  for (int i = 0; i < 1000; ++i) limited.log(spdlog::level::warn, "peer-a", "rejected", "bad message {}", i);
  EXPECT_EQ(captured.lines(), 3u);
  EXPECT_EQ(limited.suppressed(), 997u);
  std::this_thread::sleep_for(60ms);
  limited.tick();
  EXPECT_EQ(captured.lines(), 4u);
  EXPECT_THAT(captured.out.str(), HasSubstr("997 more 'rejected' line(s) suppressed"));
  EXPECT_THAT(captured.out.str(), HasSubstr("peer-a"));
  limited.tick();  // nothing new: no line
  EXPECT_EQ(captured.lines(), 4u);
  // Another reason of the same peer has its own budget.
  limited.log(spdlog::level::warn, "peer-a", "lost", "lost {}", 1);
  EXPECT_EQ(captured.lines(), 5u);
}

TEST(LogLimiter, APeerThatChangesIdentityIsBoundedToo) {
  CapturedLog captured;
  log::LogLimiter limited(captured.logger, {10, 20, 10s, 64});
  for (int i = 0; i < 10000; ++i) {
    limited.log(spdlog::level::warn, "peer-" + std::to_string(i), "rejected", "bad message from {}", i);
  }
  EXPECT_EQ(captured.lines(), 20u);  // the reason's budget per interval, over all peers
  EXPECT_EQ(limited.suppressed(), 9980u);
}

TEST(LogLimiter, LinesBelowTheLevelCostNothing) {
  CapturedLog captured;
  log::LogLimiter limited(captured.logger, {1, 1, 10s, 4});
  for (int i = 0; i < 10; ++i) limited.log(spdlog::level::debug, "p", "r", "{}", i);
  EXPECT_EQ(captured.lines(), 0u);
  EXPECT_EQ(limited.suppressed(), 0u);
}

TEST(BoundedQueue, AFailedTryPushLeavesTheItemWithTheCaller) {
  BoundedQueue<std::string> queue(1);
  EXPECT_TRUE(queue.tryPush(std::string("first")));
  std::string second = "second";
  EXPECT_FALSE(queue.tryPush(std::move(second)));
  // Still there to push again (SequencedLink's held messages): a failed tryPush moves nothing.
  EXPECT_EQ(second, "second");  // NOLINT(bugprone-use-after-move)
}

TEST(Watchdog, AThreadThatStopsBeatingIsReported) {
  auto busy = watchdog::beat("test busy");
  auto stuck = watchdog::beat("test stuck");
  std::this_thread::sleep_for(120ms);
  busy.beat();
  std::vector<std::string> names;
  for (const auto& p : watchdog::stalled(100ms)) names.push_back(p.name);
  EXPECT_THAT(names, ::testing::Contains("test stuck"));
  EXPECT_THAT(names, Not(::testing::Contains("test busy")));
}

transport::ZmqOptions zmqOptions(transport::ZmqOptions::Mode mode, const std::string& endpoint) {
  transport::ZmqOptions o;
  o.mode = mode;
  o.endpoint = endpoint;
  o.heartbeat_interval = 200ms;
  o.peer_timeout = 5s;
  o.log_component = mode == transport::ZmqOptions::Mode::kBind ? "test.cloud" : "test.edge";
  return o;
}

Message hello() {
  return Message(MessageType::kHello,
                 transport::Hello{"edge", "run", "cnn", "fp", 5, 2, 64, 0, "recompute", "none", "none", 1, false, {}});
}

// The deadlock of a peer that does not read: the cloud answers it faster than it reads.
// Its messages are dropped past the per-peer queue; the caller never waits on it and a
// good peer is still served.
TEST(PeerLimits, APeerThatDoesNotReadNeverHoldsUpTheCallerOrOtherPeers) {
  auto options = zmqOptions(transport::ZmqOptions::Mode::kBind, "tcp://127.0.0.1:*");
  options.peer_queue_messages = 16;
  transport::ZmqTransport cloud(options);
  zmq::context_t context;
  zmq::socket_t deaf(context, zmq::socket_type::dealer);  // sends, never reads
  deaf.set(zmq::sockopt::linger, 0);
  deaf.set(zmq::sockopt::rcvhwm, 1);
  deaf.set(zmq::sockopt::rcvbuf, 4096);
  deaf.connect(cloud.endpoint());
  transport::Header h;
  h.type = MessageType::kHello;
  deaf.send(zmq::buffer(transport::encodeHeaderFrame(h, std::get<transport::Hello>(hello().body))));
  auto first = test_util::receiveMessage(cloud, 5s);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->origin.rfind("ip:127.0.0.1", 0), 0u) << first->origin;
  const std::string deaf_id = first->peer;

  // 2 000 replies of 64 KiB for the deaf peer (128 MB): far more than it, the socket
  // buffers and the queues hold. Every send returns.
  for (int i = 0; i < 2000; ++i) {
    auto m = test_util::withPayload(64 * 1024);
    m.header.type = MessageType::kProbeReply;
    m.body = transport::ProbeInfo{};
    m.peer = deaf_id;
    cloud.send(std::move(m));
  }
  EXPECT_GT(cloud.stats().messages_overflowed, 0u);
  // The watchdog: the cloud's link and socket threads kept turning through all of it.
  std::this_thread::sleep_for(300ms);
  for (const auto& p : watchdog::stalled(250ms)) {
    EXPECT_EQ(p.name.rfind("test.cloud", 0), std::string::npos) << p.name << " stalled for " << p.seconds_since << " s";
  }

  // A good edge is served meanwhile.
  transport::ZmqTransport edge(zmqOptions(transport::ZmqOptions::Mode::kConnect, cloud.endpoint()));
  edge.send(hello());
  auto got = test_util::receiveMessage(cloud, 5s);
  ASSERT_TRUE(got);
  Message reply(MessageType::kWelcome, transport::Welcome{});
  reply.peer = got->peer;
  cloud.send(std::move(reply));
  auto welcome = test_util::receiveMessage(edge, 5s);
  ASSERT_TRUE(welcome);
  EXPECT_EQ(welcome->header.type, MessageType::kWelcome);
  cloud.close(0ms);  // returns at once, with a backlog for the deaf peer
}

TEST(PeerLimits, AMessageOfAHundredThousandFramesIsRejectedWithoutKeepingThem) {
  transport::ZmqTransport cloud(zmqOptions(transport::ZmqOptions::Mode::kBind, "tcp://127.0.0.1:*"));
  zmq::context_t context;
  zmq::socket_t raw(context, zmq::socket_type::dealer);
  raw.set(zmq::sockopt::linger, 0);
  raw.connect(cloud.endpoint());
  transport::Header h;
  h.type = MessageType::kHello;
  const std::string header = transport::encodeHeaderFrame(h, std::get<transport::Hello>(hello().body));
  raw.send(zmq::buffer(header), zmq::send_flags::sndmore);
  for (int i = 0; i < 100000; ++i) {
    raw.send(zmq::str_buffer("x"), i + 1 < 100000 ? zmq::send_flags::sndmore : zmq::send_flags::none);
  }
  zmq::pollitem_t items[] = {{raw.handle(), 0, ZMQ_POLLIN, 0}};
  ASSERT_EQ(zmq::poll(items, 1, 10s), 1);
  zmq::message_t reply;
  ASSERT_TRUE(raw.recv(reply));
  const auto decoded = transport::decodeHeaderFrame(reply.data(), reply.size(), transport::Limits{});
  ASSERT_EQ(decoded.header.type, MessageType::kError);
  EXPECT_EQ(std::get<transport::ErrorInfo>(decoded.body).code, ErrorCode::kTooLarge);
  EXPECT_THAT(std::get<transport::ErrorInfo>(decoded.body).message, HasSubstr("message of 100001 frames; at most"));
  EXPECT_EQ(cloud.stats().messages_rejected, 1u);
  EXPECT_FALSE(test_util::receiveMessage(cloud, 100ms));
}

TEST(PeerLimits, MessagesOverThePeersRateAreDroppedAndThePeerIsTold) {
  auto hub = transport::InMemoryHub::create();
  transport::SequencedLinkOptions cloud_options;
  cloud_options.log_component = "test.cloud";
  cloud_options.peer_messages_per_s = 50;
  cloud_options.queue_capacity = 4096;
  transport::SequencedLink cloud(hub->bind(), cloud_options);
  transport::SequencedLinkOptions edge_options;
  edge_options.log_component = "test.edge";
  transport::SequencedLink edge(hub->connect(), edge_options);
  for (int i = 0; i < 500; ++i) {
    Message m(MessageType::kProbe, transport::ProbeInfo{});
    edge.send(std::move(m));
  }
  std::size_t delivered = 0;
  while (auto incoming = cloud.receive(300ms)) delivered += transport::asMessage(*incoming) ? 1 : 0;
  // One second's worth goes through at once (plus what refills while sending); the rest is
  // dropped and counted exactly.
  EXPECT_GE(delivered, 50u);
  EXPECT_LT(delivered, 200u);
  EXPECT_EQ(cloud.stats().messages_rate_limited + delivered, 500u);
  auto told = test_util::receiveMessage(edge, 2s);
  ASSERT_TRUE(told);
  ASSERT_EQ(told->header.type, MessageType::kError);
  EXPECT_THAT(std::get<transport::ErrorInfo>(told->body).message, HasSubstr("limits.peer_messages_per_s"));
}

// The cloud's reply cache stays within the session's memory budget.
TEST(SessionLimits, TheReplyCacheKeepsWithinItsBudget) {
  auto hub = transport::InMemoryHub::create();
  transport::SequencedLinkOptions options;
  options.queue_capacity = 4096;
  transport::SequencedLink cloud(hub->bind(), options);
  transport::SequencedLink edge(hub->connect(), options);
  edge.send(hello());
  auto first = test_util::receiveMessage(cloud, 2s);
  ASSERT_TRUE(first);
  session::CloudSession s(1, first->peer, cloud);
  s.noteStaleness(64);                      // 132 gradients may be kept
  s.setReplyBudget(10 * 100 * 1024 + 512);  // but only 10 of 100 KiB fit
  for (std::uint64_t step = 0; step < 50; ++step) {
    Message request(MessageType::kActivations, std::monostate{});
    request.header.step = step;
    s.position().next_step = step + 1;
    auto reply = test_util::withPayload(100 * 1024);
    reply.header.type = MessageType::kGradients;
    reply.body = transport::StepResult{};
    s.answer(request, std::move(reply));
  }
  EXPECT_EQ(s.memoryEvictions(), 40u);  // 50 answered, 10 kept
  // A Resync from step 0 re-sends only what is still cached.
  Message resync(MessageType::kResync, transport::ResyncInfo{});
  std::size_t drained = 0;
  while (edge.receive(50ms)) ++drained;  // the 50 gradients
  EXPECT_EQ(drained, 50u);
  s.onResync(resync);
  std::size_t gradients = 0;
  while (auto m = edge.receive(100ms)) {
    if (auto* message = transport::asMessage(*m); message && message->header.type == MessageType::kGradients)
      ++gradients;
  }
  EXPECT_EQ(gradients, 10u);
}

TEST(Handshake, AnUnauthenticatedPeerIsNotToldTheCloudsFingerprintOrValues) {
  config::Config config;
  config.model.name = "cnn";
  config.data.batch_size = 32;
  config.split.point = 2;
  auto h = std::get<transport::Hello>(hello().body);
  h.fingerprint = "edge-fingerprint";
  h.batch_size = 64;
  const std::string cloud_fingerprint = "cloud-fingerprint-0123456789";
  const auto differences = session::handshakeDifferences(h, config, cloud_fingerprint, 5, false);
  const auto told = session::refusalText(differences, false);
  EXPECT_THAT(told, HasSubstr("architecture differs"));
  EXPECT_THAT(told, HasSubstr("batch size: edge 64 differs from the cloud's"));
  EXPECT_THAT(told, Not(HasSubstr(cloud_fingerprint)));
  EXPECT_THAT(told, Not(HasSubstr("32")));
  const auto full = session::refusalText(differences, true);
  EXPECT_THAT(full, HasSubstr(cloud_fingerprint));
  EXPECT_THAT(full, HasSubstr("batch size: edge 64, cloud 32"));
}

}  // namespace
}  // namespace tandem

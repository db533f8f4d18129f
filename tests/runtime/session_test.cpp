// The session layer without a network: an EdgeSession and a CloudSession over the
// in-memory transport, with messages dropped by fault injection, must deliver every reply
// exactly once and in order, and the cloud must apply every request exactly once.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <thread>

#include "runtime/common/error.h"
#include "runtime/session/cloud_session.h"
#include "runtime/session/edge_session.h"
#include "runtime/transport/fault_injection.h"
#include "runtime/transport/in_memory_frame_socket.h"
#include "runtime/transport/sequenced_link.h"

namespace tandem::session {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;
using transport::Message;
using transport::MessageType;

transport::SequencedLinkOptions linkOptions() {
  transport::SequencedLinkOptions o;
  o.heartbeat_interval = 100ms;
  o.peer_timeout = 2s;
  o.reconnect_grace = 10s;
  return o;
}

// A cloud that answers like the real one but computes nothing: it counts how often each
// training step is applied.
class FakeCloud {
 public:
  // With `refuse_with`, the Hello is answered with that error instead of a Welcome.
  FakeCloud(std::unique_ptr<transport::Transport> transport, std::string refuse_with)
      : refuse_with_(std::move(refuse_with)), transport_(std::move(transport)), thread_([this] { run(); }) {}
  ~FakeCloud() {
    stop_ = true;
    thread_.join();
  }
  std::map<std::uint64_t, int> applied() {
    std::lock_guard<std::mutex> lock(mutex_);
    return applied_;
  }
  bool ended() const { return ended_; }

 private:
  void run() {
    while (!stop_) {
      auto incoming = transport_->receive(20ms);
      if (!incoming) continue;
      if (transport::asEvent(*incoming)) {
        if (session_) session_->hintResync();
        continue;
      }
      handle(*transport::asMessage(*incoming));
    }
    transport_->close(0ms);
  }
  void handle(Message& m) {
    if (m.header.type == MessageType::kHello) {
      if (!refuse_with_.empty()) {
        Message error(MessageType::kError, transport::ErrorInfo{transport::ErrorCode::kHandshake, refuse_with_});
        error.peer = m.peer;
        transport_->send(std::move(error));
        return;
      }
      session_ = std::make_unique<CloudSession>(77, m.peer, *transport_);
      session_->noteStaleness(3);
      session_->send(Message(MessageType::kWelcome, transport::Welcome{}));
      return;
    }
    ASSERT_TRUE(session_);
    if (session_->admit(m) != CloudSession::Admission::kHandle) return;
    auto& position = session_->position();
    switch (m.header.type) {
      case MessageType::kEpochBegin:
        position.epoch = static_cast<int>(m.header.epoch);
        position.epoch_open = true;
        break;
      case MessageType::kActivations: {
        {
          std::lock_guard<std::mutex> lock(mutex_);
          ++applied_[m.header.step];
        }
        ++position.next_step;
        Message reply(MessageType::kGradients, transport::StepResult{0.5, 1, 1});
        reply.header.step = m.header.step;
        session_->answer(m, std::move(reply));
        break;
      }
      case MessageType::kEpochEnd: {
        position.epoch_open = false;
        Message ack(MessageType::kEpochAck,
                    transport::EpochInfo{0, static_cast<std::int64_t>(position.next_step), 0, 0});
        ack.header.epoch = m.header.epoch;
        session_->answer(m, std::move(ack));
        break;
      }
      case MessageType::kResync: session_->onResync(m); break;
      case MessageType::kShutdown:
        session_->answer(m, Message(MessageType::kShutdownAck, std::monostate{}));
        ended_ = true;
        break;
      default: FAIL() << "unexpected " << transport::messageTypeName(m.header.type);
    }
  }

  const std::string refuse_with_;
  std::unique_ptr<transport::Transport> transport_;
  std::unique_ptr<CloudSession> session_;
  std::mutex mutex_;
  std::map<std::uint64_t, int> applied_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> ended_{false};
  std::thread thread_;
};

struct Pair {
  std::shared_ptr<transport::InMemoryHub> hub = transport::InMemoryHub::create();
  std::unique_ptr<FakeCloud> cloud;
  std::unique_ptr<EdgeSession> edge;

  explicit Pair(std::vector<std::unique_ptr<transport::Fault>> edge_faults = {}, std::string refuse = "") {
    auto cloud_link = std::make_unique<transport::SequencedLink>(hub->bind(), linkOptions());
    cloud = std::make_unique<FakeCloud>(std::move(cloud_link), std::move(refuse));
    std::unique_ptr<transport::FrameSocket> socket = hub->connect();
    if (!edge_faults.empty()) {
      socket = std::make_unique<transport::FaultInjector>(std::move(socket), std::move(edge_faults));
    }
    edge = std::make_unique<EdgeSession>(std::make_unique<transport::SequencedLink>(std::move(socket), linkOptions()));
  }
};

Message epochBegin() {
  Message m(MessageType::kEpochBegin, transport::EpochInfo{3, 40, 0, 0});
  m.header.epoch = 0;
  return m;
}

// Trains `steps` steps with up to 4 in flight; returns the gradient steps in arrival order.
std::vector<std::uint64_t> trainSteps(EdgeSession& edge, std::uint64_t steps) {
  std::vector<std::uint64_t> received;
  const auto take = [&] { received.push_back(edge.await(MessageType::kGradients, "a gradient").header.step); };
  for (std::uint64_t step = 0; step < steps; ++step) {
    while (edge.trainingInFlight() >= 4) take();
    Message m(MessageType::kActivations, std::monostate{});
    m.header.step = step;
    edge.post(std::move(m));
  }
  while (edge.trainingInFlight() > 0) take();
  return received;
}

// The edge saw the gradients of steps 0..steps-1 once each, in order, and the cloud
// applied each of those steps exactly once.
void expectEachStepOnceInOrder(const std::vector<std::uint64_t>& received, const std::map<std::uint64_t, int>& applied,
                               std::uint64_t steps) {
  ASSERT_EQ(received.size(), steps);
  for (std::uint64_t i = 0; i < received.size(); ++i) EXPECT_EQ(received[i], i);
  EXPECT_EQ(applied.size(), steps);
  for (const auto& [step, times] : applied) EXPECT_EQ(times, 1) << "step " << step;
}

TEST(EdgeSession, ConnectTakesTheSessionOfTheWelcome) {
  Pair p;
  std::atomic<bool> stop{false};
  const auto welcome = p.edge->connect(Message(MessageType::kHello, transport::Hello{}), 5s, stop);
  EXPECT_EQ(welcome.header.type, MessageType::kWelcome);
  EXPECT_EQ(p.edge->id(), 77u);
}

TEST(EdgeSession, ARefusedHandshakeSaysWhy) {
  Pair p({}, "batch size: edge 64, cloud 32");
  std::atomic<bool> stop{false};
  try {
    p.edge->connect(Message(MessageType::kHello, transport::Hello{}), 5s, stop);
    FAIL() << "connected";
  } catch (const ProtocolError& e) {
    EXPECT_THAT(e.what(), HasSubstr("refused the handshake"));
    EXPECT_THAT(e.what(), HasSubstr("batch size: edge 64, cloud 32"));
  }
}

TEST(EdgeSession, StopWhileConnectingIsAnInterruption) {
  transport::InMemoryOptions options;
  auto hub = transport::InMemoryHub::create(options);  // no cloud bound: the Hello goes nowhere
  EdgeSession edge(std::make_unique<transport::SequencedLink>(hub->connect(), linkOptions()));
  std::atomic<bool> stop{true};
  EXPECT_THROW(edge.connect(Message(MessageType::kHello, transport::Hello{}), 5s, stop), Interrupted);
}

TEST(EdgeSession, AbortEndsEveryWait) {
  Pair p;
  std::atomic<bool> stop{false};
  p.edge->connect(Message(MessageType::kHello, transport::Hello{}), 5s, stop);
  std::atomic<bool> abort{true};
  p.edge->setAbort(&abort);
  EXPECT_THROW(p.edge->await(MessageType::kGradients, "a gradient"), Aborted);
}

TEST(Sessions, EveryStepIsAppliedOnceAndAnsweredInOrderOnAGoodLink) {
  Pair p;
  std::atomic<bool> stop{false};
  p.edge->connect(Message(MessageType::kHello, transport::Hello{}), 5s, stop);
  p.edge->openEpoch(epochBegin());
  const auto received = trainSteps(*p.edge, 30);
  expectEachStepOnceInOrder(received, p.cloud->applied(), 30);
  EXPECT_EQ(p.edge->resynchronisations(), 0u);
}

// A lost training batch (edge → cloud) and a lost gradient (cloud → edge): the sides
// resynchronise, the batch is re-sent, the gradient comes from the reply cache, and still
// every step is applied exactly once and answered once, in order.
TEST(Sessions, LostMessagesBothWaysAreRecoveredExactlyOnce) {
  std::vector<std::unique_ptr<transport::Fault>> faults;
  faults.push_back(std::make_unique<transport::DropMessage>(transport::Direction::kSend, 6));      // a batch
  faults.push_back(std::make_unique<transport::DropMessage>(transport::Direction::kReceive, 12));  // a gradient
  Pair p(std::move(faults));
  std::atomic<bool> stop{false};
  p.edge->connect(Message(MessageType::kHello, transport::Hello{}), 5s, stop);
  p.edge->openEpoch(epochBegin());
  const auto received = trainSteps(*p.edge, 30);
  expectEachStepOnceInOrder(received, p.cloud->applied(), 30);
  EXPECT_GE(p.edge->resynchronisations(), 1u);
  // Control requests survive too: the epoch ends and the run shuts down in order.
  p.edge->closeEpoch();
  Message end(MessageType::kEpochEnd, transport::EpochInfo{3, 30, 0, 0});
  const auto ack = p.edge->request(std::move(end), MessageType::kEpochAck, "an end-of-epoch acknowledgement", 10s);
  EXPECT_EQ(std::get<transport::EpochInfo>(ack.body).steps, 30);
  p.edge->shutdown(true, "completed", 5s);
  EXPECT_TRUE(p.cloud->ended());
}

TEST(CloudSession, RepeatedRequestsGetTheCachedReplyAndEarlyStepsAResync) {
  auto hub = transport::InMemoryHub::create();
  transport::SequencedLink cloud(hub->bind(), linkOptions());
  transport::SequencedLink edge(hub->connect(), linkOptions());
  edge.send(Message(MessageType::kHello, transport::Hello{}));
  auto hello = cloud.receive(2s);
  ASSERT_TRUE(hello && transport::asMessage(*hello));
  CloudSession session(5, transport::asMessage(*hello)->peer, cloud);
  EXPECT_EQ(session.admit(*transport::asMessage(*hello)), CloudSession::Admission::kHandle);  // counts its bytes
  Message step0(MessageType::kActivations, std::monostate{});
  step0.header.step = 0;
  ASSERT_EQ(session.admit(step0), CloudSession::Admission::kHandle);
  session.position().next_step = 1;
  Message reply(MessageType::kGradients, transport::StepResult{0.25, 2, 4});
  reply.header.step = 0;
  session.answer(step0, std::move(reply));
  // The same step again: answered from the cache, not handled.
  EXPECT_EQ(session.admit(step0), CloudSession::Admission::kAnswered);
  Message step2(MessageType::kActivations, std::monostate{});
  step2.header.step = 2;
  EXPECT_EQ(session.admit(step2), CloudSession::Admission::kAhead);
  std::vector<MessageType> got;
  for (int i = 0; i < 3; ++i) {
    auto m = edge.receive(2s);
    ASSERT_TRUE(m && transport::asMessage(*m));
    got.push_back(transport::asMessage(*m)->header.type);
    EXPECT_EQ(transport::asMessage(*m)->header.session, 5u);
  }
  EXPECT_EQ(got,
            (std::vector<MessageType>{MessageType::kGradients, MessageType::kGradients, MessageType::kResyncReply}));
  EXPECT_GT(session.bytesUp(), 0u);
  EXPECT_GT(session.bytesDown(), 0u);
}

}  // namespace
}  // namespace tandem::session

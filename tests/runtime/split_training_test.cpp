#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <zmq_addon.hpp>

#include "runtime/common/watchdog.h"
#include "runtime/pipeline/setup.h"
#include "runtime/pipeline/standalone.h"
#include "tests/runtime/receive_util.h"
#include "tests/runtime/split_test_util.h"
#include "tests/runtime/tensor_compare.h"

namespace tandem::pipeline {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

std::string outputDir(const std::string& name) {
  return (fs::temp_directory_path() / ("tandem_split_" + std::to_string(::getpid()) + "_" + name)).string();
}

config::Config smallConfig(const std::string& model, const std::string& extra = "") {
  return config::parseConfig(R"(
run: {name: split_test, epochs: 1, seed: 3}
data:
  dataset: synthetic
  batch_size: 16
  max_train_batches: 12
  max_test_batches: 4
  synthetic: {train_size: 512, test_size: 128, height: 8, width: 8, num_classes: 4, noise: 1.0}
model: {name: )" + model + R"(}
optimizer: {name: sgd, lr: 0.05, momentum: 0.9, weight_decay: 0.001}
split: {point: 1, staleness: 0}
link: {heartbeat_interval_s: 0.5, peer_timeout_s: 10, connect_timeout_s: 10}
security: {mode: plaintext}
)" + extra,
                             "split_test.yaml", {"run.output_dir=" + outputDir(model)});
}

using test_util::maxDifference;

struct EquivalenceCase {
  std::string model;
  std::vector<int> split_points;
};

class SplitEqualsStandalone : public ::testing::TestWithParam<EquivalenceCase> {};

// K = 0 with raw transfer is plain synchronous split training: each parameter sees the
// same gradients in the same order as in one process, so the weights after N steps match
// standalone training (the same float operations run, only on two sides).
TEST_P(SplitEqualsStandalone, AfterNSteps) {
  const auto& c = GetParam();
  auto config = smallConfig(c.model);
  StandaloneTrainer standalone(config);
  std::atomic<bool> stop{false};
  standalone.run(stop);
  const int n = standalone.model().numStages();
  const auto reference = standalone.model().state(0, n);

  for (int p : c.split_points) {
    if (p < 0) p = n;
    SCOPED_TRACE("split point " + std::to_string(p));
    auto split_config = smallConfig(c.model, "");
    split_config.split.point = p;
    testing::CloudThread cloud(split_config);
    auto edge = testing::makeEdge(split_config, cloud.endpoint);
    const auto summary = edge->run(stop);
    cloud.join();
    ASSERT_EQ(cloud.outcome, CloudOutcome::kCompleted);
    ASSERT_EQ(summary.history.size(), 1u);
    EXPECT_EQ(summary.history[0].steps, 12);
    EXPECT_EQ(edge->replayStats().max_staleness, 0);

    auto split_state = edge->model().state(0, p);
    const auto cloud_state = cloud.cloud->lastModel()->state(p, n);
    split_state.insert(split_state.end(), cloud_state.begin(), cloud_state.end());
    EXPECT_LE(maxDifference(split_state, reference), 1e-6);
  }
}

INSTANTIATE_TEST_SUITE_P(Models, SplitEqualsStandalone,
                         ::testing::Values(EquivalenceCase{"mlp", {0, 1, 2, -1}}, EquivalenceCase{"cnn", {1, 3, -1}},
                                           EquivalenceCase{"vgg11", {2, 5}}),
                         [](const auto& info) { return info.param.model; });

class StaleReplay : public ::testing::TestWithParam<std::string> {};

TEST_P(StaleReplay, ConvergesWithinTheBound) {
  auto config = smallConfig("cnn", "");
  config.run.epochs = 3;
  config.data.max_train_batches = 0;
  config.data.max_test_batches = 0;
  config.split.point = 2;
  config.split.staleness = 4;
  config.split.replay = *config::parseEnum<config::Replay>(GetParam());
  config.optimizer.lr = 0.02;
  testing::CloudThread cloud(config);
  auto edge = testing::makeEdge(config, cloud.endpoint);
  std::atomic<bool> stop{false};
  const auto summary = edge->run(stop);
  cloud.join();
  EXPECT_EQ(cloud.outcome, CloudOutcome::kCompleted);
  ASSERT_EQ(summary.history.size(), 3u);
  EXPECT_LT(summary.history.back().train_loss, summary.history.front().train_loss);
  EXPECT_GT(summary.history.back().test_accuracy, 0.8);  // 4 classes: chance is 0.25
  EXPECT_LE(edge->replayStats().peak_buffer, 5u);
  EXPECT_LE(edge->replayStats().max_staleness, 4);
  EXPECT_EQ(summary.staleness(), std::vector<int>({4, 4, 4}));
}

INSTANTIATE_TEST_SUITE_P(Modes, StaleReplay, ::testing::Values("recompute", "retain"));

TEST(SplitTraining, StalenessScheduleAppliesPerEpoch) {
  auto config = smallConfig("mlp", "");
  config.run.epochs = 3;
  config.split.staleness_schedule = {{0, 0}, {1, 2}};
  testing::CloudThread cloud(config);
  auto edge = testing::makeEdge(config, cloud.endpoint);
  std::atomic<bool> stop{false};
  const auto summary = edge->run(stop);
  cloud.join();
  EXPECT_EQ(summary.staleness(), std::vector<int>({0, 2, 2}));
  EXPECT_EQ(cloud.cloud->lastSummary().staleness(), std::vector<int>({0, 2, 2}));
  EXPECT_LE(edge->replayStats().max_staleness, 2);
  EXPECT_LE(edge->replayStats().peak_buffer, 3u);
}

TEST(SplitTraining, SummariesOnBothSides) {
  auto config = smallConfig("mlp", "");
  testing::CloudThread cloud(config);
  auto edge = testing::makeEdge(config, cloud.endpoint);
  std::atomic<bool> stop{false};
  const auto summary = edge->run(stop);
  cloud.join();
  EXPECT_TRUE(fs::exists(config.run.output_dir + "/summary-edge.json"));
  EXPECT_TRUE(fs::exists(config.run.output_dir + "/summary-cloud.json"));
  const auto& cs = cloud.cloud->lastSummary();
  EXPECT_EQ(cs.role, "cloud");
  EXPECT_EQ(cs.history.size(), 1u);
  // Both sides count the same traffic, each from its own end.
  EXPECT_EQ(cs.bytes_uplink, summary.bytes_uplink);
  EXPECT_EQ(cs.bytes_downlink, summary.bytes_downlink);
  EXPECT_DOUBLE_EQ(cs.history[0].test_accuracy, summary.history[0].test_accuracy);
  fs::remove_all(config.run.output_dir);
}

TEST(SplitTraining, CompressedUplinkWithErrorFeedbackCutsBytes) {
  std::map<std::string, telemetry::RunSummary> runs;
  for (const std::string uplink : {"none", "int8"}) {
    auto config = smallConfig("cnn", "");
    config.split.point = 2;
    config.run.epochs = 2;
    config.data.max_train_batches = 0;
    config.split.staleness = 2;
    config.compression.uplink = uplink;
    config.compression.error_feedback = uplink != "none";
    testing::CloudThread cloud(config);
    auto edge = testing::makeEdge(config, cloud.endpoint);
    std::atomic<bool> stop{false};
    runs[uplink] = edge->run(stop);
    cloud.join();
    EXPECT_EQ(cloud.outcome, CloudOutcome::kCompleted);
  }
  const double ratio = static_cast<double>(runs["int8"].bytes_uplink) / static_cast<double>(runs["none"].bytes_uplink);
  EXPECT_GT(ratio, 0.24);
  EXPECT_LT(ratio, 0.30);  // int8 is 1/4 of float32, plus labels, scales and headers
  EXPECT_GT(runs["int8"].history.back().test_accuracy, 0.8);
  EXPECT_EQ(runs["int8"].bytes_downlink, runs["none"].bytes_downlink);  // gradients stay float32
}

TEST(SplitTraining, HandshakeMismatchIsRefusedOnBothSides) {
  auto cloud_config = smallConfig("cnn", "");
  auto edge_config = smallConfig("mlp", "");
  edge_config.data.batch_size = 8;
  testing::CloudThread cloud(cloud_config);
  auto edge = testing::makeEdge(edge_config, cloud.endpoint);
  std::atomic<bool> stop{false};
  try {
    edge->run(stop);
    FAIL() << "handshake accepted";
  } catch (const ProtocolError& e) {
    // A plaintext peer is unauthenticated: told what differs, not the cloud's values.
    EXPECT_THAT(e.what(), HasSubstr("handshake refused: model: edge 'mlp' differs from the cloud's"));
    EXPECT_THAT(e.what(), HasSubstr("batch size: edge 8 differs from the cloud's"));
    EXPECT_THAT(e.what(), Not(HasSubstr("cnn")));
  }
  cloud.finish();
  EXPECT_EQ(cloud.cloud->sessionsRefused(), 1u);
}

// A cloud at limits.max_sessions answers "busy"; the edge asks again until a session is
// free, then trains.
TEST(SplitTraining, ABusyCloudMakesTheNextEdgeWaitItsTurn) {
  auto config = smallConfig("mlp");
  config.limits.max_sessions = 1;
  config.link.heartbeat_interval_s = 0.2;
  config.link.peer_timeout_s = 1.0;
  config.link.reconnect_grace_s = 0.0;
  testing::CloudThread cloud(config, {true});
  // An occupant holds the only session: a valid Hello, then nothing until it goes away.
  auto occupant_options = pipeline::zmqOptions(config, "edge");
  occupant_options.endpoint = cloud.endpoint;
  auto occupant = std::make_unique<transport::ZmqTransport>(occupant_options);
  const auto model = pipeline::buildModel(config);
  occupant->send(transport::Message(transport::MessageType::kHello, pipeline::helloFor(config, model, 1, "occupant")));
  const auto welcome = tandem::test_util::receiveMessage(*occupant, 5s);
  ASSERT_TRUE(welcome);
  ASSERT_EQ(welcome->header.type, transport::MessageType::kWelcome);
  // An epoch begun: the session is no longer pending, so nothing may end it to make room.
  transport::Message begin(transport::MessageType::kEpochBegin, transport::EpochInfo{0, 12, 0.0, 0.0});
  begin.header.session = welcome->header.session;
  occupant->send(std::move(begin));
  std::this_thread::sleep_for(200ms);

  auto edge = testing::makeEdge(config, cloud.endpoint);
  std::atomic<bool> stop{false};
  telemetry::RunSummary summary;
  std::string failure;
  std::thread run([&] {
    try {
      summary = edge->run(stop);
    } catch (const std::exception& e) {
      failure = e.what();
    }
  });
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (cloud.cloud->sessionsRefused() == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_GE(cloud.cloud->sessionsRefused(), 1u);  // the edge was told "busy"
  occupant.reset();                               // silent from now on: its session ends after 1 s
  run.join();
  EXPECT_EQ(failure, "");
  EXPECT_EQ(summary.history.size(), 1u);
  cloud.finish();
}

// Hellos that never begin an epoch (a flood, from the same address as the good edge) can
// not lock the good edge out: the oldest of them make room.
TEST(SplitTraining, AFloodOfHellosCannotLockOutAnEdge) {
  auto config = smallConfig("mlp");
  config.limits.max_pending_sessions = 3;
  config.limits.max_sessions_per_peer = 4;
  testing::CloudThread cloud(config, {true});
  const auto model = pipeline::buildModel(config);
  auto options = pipeline::zmqOptions(config, "edge");
  options.endpoint = cloud.endpoint;
  std::vector<std::unique_ptr<transport::ZmqTransport>> flood;
  for (int i = 0; i < 10; ++i) {
    flood.push_back(std::make_unique<transport::ZmqTransport>(options));
    auto hello = pipeline::helloFor(config, model, 1, "flood");
    hello.run_name = "flood" + std::to_string(i);
    flood.back()->send(transport::Message(transport::MessageType::kHello, std::move(hello)));
    ASSERT_TRUE(tandem::test_util::receiveMessage(*flood.back(), 5s));  // Welcome
  }
  // The first seven were told their session ended to make room.
  const auto ended = tandem::test_util::receiveMessage(*flood.front(), 5s);
  ASSERT_TRUE(ended);
  ASSERT_EQ(ended->header.type, transport::MessageType::kError);
  EXPECT_EQ(std::get<transport::ErrorInfo>(ended->body).code, transport::ErrorCode::kBusy);
  EXPECT_THAT(std::get<transport::ErrorInfo>(ended->body).message,
              HasSubstr("session ended before its first epoch to make room"));
  auto edge = testing::makeEdge(config, cloud.endpoint);
  std::atomic<bool> stop{false};
  EXPECT_EQ(edge->run(stop).history.size(), 1u);
  cloud.finish();
}

TEST(SplitTraining, EdgeGivesUpWhenTheCloudIsNotUp) {
  auto config = smallConfig("mlp", "");
  config.link.connect_timeout_s = 1.0;
  // A port nothing listens on: bind one, note it, close it.
  std::string endpoint;
  {
    transport::ZmqOptions o;
    o.mode = transport::ZmqOptions::Mode::kBind;
    o.endpoint = "tcp://127.0.0.1:*";
    transport::ZmqTransport probe(o);
    endpoint = probe.endpoint();
  }
  auto edge = testing::makeEdge(config, endpoint);
  std::atomic<bool> stop{false};
  const auto start = std::chrono::steady_clock::now();
  try {
    edge->run(stop);
    FAIL();
  } catch (const TransportError& e) {
    EXPECT_THAT(e.what(), HasSubstr("waited for a handshake reply from the cloud at " + endpoint));
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

// A peer that speaks raw frames.
class RawPeer {
 public:
  // `deaf`: the peer will stop reading, and keeps as little as it can while it does not.
  explicit RawPeer(const std::string& endpoint, bool deaf = false) : socket_(context_, zmq::socket_type::dealer) {
    socket_.set(zmq::sockopt::linger, 0);
    if (deaf) {
      socket_.set(zmq::sockopt::rcvhwm, 1);
      socket_.set(zmq::sockopt::rcvbuf, 4096);
    }
    socket_.connect(endpoint);
  }
  void sendFrames(const std::vector<std::string>& frames) {
    for (std::size_t i = 0; i < frames.size(); ++i) {
      socket_.send(zmq::buffer(frames[i]), i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  }
  // `accepted`: the message passes the transport's checks and so consumes a sequence
  // number; messages rejected while parsing do not.
  void send(transport::Header h, const transport::Body& body, std::vector<std::string> payloads = {},
            bool accepted = true) {
    h.sequence = accepted ? sequence_++ : sequence_;
    std::vector<std::string> frames{transport::encodeHeaderFrame(h, body)};
    frames.insert(frames.end(), payloads.begin(), payloads.end());
    sendFrames(frames);
  }
  // The next non-heartbeat message.
  transport::DecodedHeader next() {
    while (true) {
      std::vector<zmq::message_t> frames;
      zmq::pollitem_t items[] = {{socket_.handle(), 0, ZMQ_POLLIN, 0}};
      if (zmq::poll(items, 1, std::chrono::milliseconds(5000)) <= 0) throw TransportError("raw peer: no reply");
      if (!zmq::recv_multipart(socket_, std::back_inserter(frames))) throw TransportError("raw peer: no reply");
      auto d = transport::decodeHeaderFrame(frames[0].data(), frames[0].size(), transport::Limits{});
      if (d.header.type != transport::MessageType::kHeartbeat) return d;
    }
  }
  transport::ErrorInfo expectError() {
    auto d = next();
    EXPECT_EQ(d.header.type, transport::MessageType::kError);
    return d.header.type == transport::MessageType::kError ? std::get<transport::ErrorInfo>(d.body)
                                                            : transport::ErrorInfo{};
  }
  std::uint64_t sequence_ = 0;

 private:
  zmq::context_t context_;
  zmq::socket_t socket_;
};

transport::Header headerOf(transport::MessageType type, std::uint64_t session = 0, std::uint64_t step = 0) {
  transport::Header h;
  h.type = type;
  h.session = session;
  h.step = step;
  return h;
}

transport::TensorMeta meta(transport::DType dtype, std::vector<std::int64_t> shape, std::uint64_t bytes,
                           std::string codec = transport::kRawCodec) {
  transport::TensorMeta t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.bytes = bytes;
  t.codec = std::move(codec);
  return t;
}

TEST(SplitTraining, HostilePeerCannotDisturbAGoodRun) {
  auto config = smallConfig("cnn", "");
  config.split.point = 2;
  config.run.epochs = 2;
  testing::CloudThread cloud(config, CloudOptions{true});
  using transport::DType;
  using transport::ErrorCode;
  using transport::MessageType;

  RawPeer bad(cloud.endpoint);
  // Not a Tandem message at all.
  bad.sendFrames({"GET / HTTP/1.1\r\n\r\n"});
  EXPECT_EQ(bad.expectError().code, ErrorCode::kMalformed);
  // Another protocol version.
  {
    auto h = headerOf(MessageType::kHello);
    h.version = 1;
    bad.send(h, transport::Hello{}, {}, false);
    const auto e = bad.expectError();
    EXPECT_EQ(e.code, ErrorCode::kVersion);
    EXPECT_THAT(e.message, HasSubstr("protocol version 1, expected " + std::to_string(transport::kProtocolVersion)));
  }
  // Unknown message type.
  {
    auto frame = transport::encodeHeaderFrame(headerOf(MessageType::kHeartbeat), std::monostate{});
    frame[6] = 42;
    bad.sendFrames({frame});
    EXPECT_THAT(bad.expectError().message, HasSubstr("unknown message type 42"));
  }
  // Training data without a session.
  bad.send(headerOf(MessageType::kActivations), std::monostate{});
  EXPECT_EQ(bad.expectError().code, ErrorCode::kNoSession);
  // Absurd sizes: a 2^40-element tensor, announced but never sent.
  {
    auto h = headerOf(MessageType::kActivations);
    h.tensors = {meta(DType::kFloat32, {1 << 20, 1 << 20}, 4)};
    bad.send(h, std::monostate{}, {"xxxx"}, false);
    EXPECT_EQ(bad.expectError().code, ErrorCode::kTooLarge);
  }
  // Shape × dtype ≠ bytes.
  {
    auto h = headerOf(MessageType::kActivations);
    h.tensors = {meta(DType::kFloat32, {2, 2}, 12)};
    bad.send(h, std::monostate{}, {std::string(12, '\0')}, false);
    EXPECT_THAT(bad.expectError().message, HasSubstr("shape × dtype is 16 bytes but the payload is 12"));
  }
  // A handshake that does not match.
  {
    transport::Hello hello;
    hello.model = "resnet18";
    bad.send(headerOf(MessageType::kHello), hello);
    const auto e = bad.expectError();
    EXPECT_EQ(e.code, ErrorCode::kHandshake);
    EXPECT_THAT(e.message, HasSubstr("model: edge 'resnet18' differs from the cloud's"));
    EXPECT_THAT(e.message, Not(HasSubstr("cnn")));  // an unauthenticated peer learns nothing of the cloud's
  }
  // A valid handshake, then bad training messages inside the session.
  std::uint64_t session = 0;
  {
    const auto model = buildModel(config);
    transport::Hello hello{"raw", "raw", "cnn", model.fingerprint(), 5, 2, 16, 0, "recompute", "none", "none", 2, false, {}};
    bad.send(headerOf(MessageType::kHello), hello);
    const auto welcome = bad.next();
    ASSERT_EQ(welcome.header.type, MessageType::kWelcome);
    session = welcome.header.session;
    bad.send(headerOf(MessageType::kEpochBegin, session), transport::EpochInfo{});
    const std::int64_t b = 4;
    const auto act_bytes = static_cast<std::uint64_t>(b * 32 * 4 * 4 * 4);
    // Wrong activation shape for split point 2 (expects [B, 32, 4, 4]).
    auto h = headerOf(MessageType::kActivations, session, 0);
    h.tensors = {meta(DType::kFloat32, {b, 32, 8, 2}, act_bytes), meta(DType::kInt64, {b}, b * 8)};
    bad.send(h, std::monostate{}, {std::string(act_bytes, '\0'), std::string(b * 8, '\0')});
    EXPECT_THAT(bad.expectError().message, HasSubstr("activation: shape [4, 32, 8, 2], expected [4, 32, 4, 4]"));
    // Labels out of range.
    h.tensors[0].shape = {b, 32, 4, 4};
    bad.send(h, std::monostate{}, {std::string(act_bytes, '\0'), std::string(b * 8, '\x7f')});
    EXPECT_THAT(bad.expectError().message, HasSubstr("labels outside 0..3"));
    // A step from the future (as after lost messages): not applied; the cloud says where
    // it stands instead.
    h.step = 5;
    bad.send(h, std::monostate{}, {std::string(act_bytes, '\0'), std::string(b * 8, '\0')});
    const auto resync = bad.next();
    ASSERT_EQ(resync.header.type, MessageType::kResyncReply);
    EXPECT_EQ(std::get<transport::ResyncInfo>(resync.body).next_step, 0u);
    // A codec payload that does not decode.
    h.step = 0;
    h.tensors[0].codec = "int8";
    h.tensors[0].bytes = 7;
    bad.send(h, std::monostate{}, {std::string(7, '\x01'), std::string(b * 8, '\0')});
    EXPECT_THAT(bad.expectError().message, HasSubstr("codec 'int8' rejected the payload"));
    // Wrong session id.
    bad.send(headerOf(MessageType::kEpochEnd, session + 1), transport::EpochInfo{});
    EXPECT_EQ(bad.expectError().code, ErrorCode::kNoSession);
    // Leave in order, so the good edge's session is the last one.
    bad.send(headerOf(MessageType::kShutdown, session), transport::ShutdownInfo{"done", false});
    EXPECT_EQ(bad.next().header.type, MessageType::kShutdownAck);
  }

  // Meanwhile a good edge trains to the end.
  auto edge = testing::makeEdge(config, cloud.endpoint);
  std::atomic<bool> stop{false};
  const auto summary = edge->run(stop);
  EXPECT_EQ(summary.history.size(), 2u);
  EXPECT_FALSE(summary.interrupted);
  EXPECT_GT(summary.history.back().test_accuracy, 0.5);
  cloud.finish();
  EXPECT_EQ(cloud.cloud->lastSummary().run_name, "split_test");
}

// The watchdog: a peer that asks for large replies and never reads them (the deadlock of a
// cycle of bounded queues) while a good edge trains. Every thread of the cloud keeps
// turning, and the good run completes.
TEST(SplitTraining, EveryCloudThreadKeepsTurningWhileAPeerDoesNotRead) {
  auto config = smallConfig("cnn");
  config.split.point = 2;
  testing::CloudThread cloud(config, {true});
  RawPeer deaf(cloud.endpoint, true);
  const auto model = buildModel(config);
  deaf.send(headerOf(transport::MessageType::kHello),
            transport::Hello{
                "deaf", "deaf", "cnn", model.fingerprint(), 5, 2, 16, 0, "recompute", "none", "none", 1, false, {}});
  const auto welcome = deaf.next();
  ASSERT_EQ(welcome.header.type, transport::MessageType::kWelcome);
  std::atomic<bool> done{false};
  std::vector<std::string> stalls;
  std::thread sampler([&] {
    while (!done) {
      for (const auto& p : watchdog::stalled(1500ms)) {
        if (p.name.rfind("cloud", 0) == 0) stalls.push_back(p.name);
      }
      std::this_thread::sleep_for(100ms);
    }
  });
  std::thread flood([&] {
    // 4 000 probes, each asking for 1 MiB back: 4 GiB the peer never reads.
    for (int i = 0; i < 4000 && !done; ++i) {
      deaf.send(headerOf(transport::MessageType::kProbe, welcome.header.session),
                transport::ProbeInfo{0.0, 0.0, 0.0, static_cast<std::uint64_t>(config.scheduler.probe_bytes) * 4});
      if (i % 100 == 99) std::this_thread::sleep_for(20ms);  // under limits.peer_messages_per_s
    }
  });
  auto edge = testing::makeEdge(config, cloud.endpoint);
  std::atomic<bool> stop{false};
  const auto summary = edge->run(stop);
  done = true;
  flood.join();
  sampler.join();
  EXPECT_EQ(summary.history.size(), 1u);
  EXPECT_THAT(stalls, ::testing::IsEmpty());
  cloud.finish();
}

}  // namespace
}  // namespace tandem::pipeline

namespace tandem::pipeline {
namespace {

// At p = 0 the edge sends Fashion-MNIST's own uint8 pixels, a quarter of float32, and the
// cloud normalises them exactly as the edge does: K = 0 still equals standalone.
TEST(SplitTraining, SplitZeroSendsNativePixelsAndStillEqualsStandalone) {
  ASSERT_TRUE(fs::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"))
      << "needs dataset-fashion-mnist (scripts/setup.sh installs it)";
  auto config = config::parseConfig(R"(
run: {name: pixels, epochs: 1, seed: 3}
data: {dataset: fashion_mnist, path: /usr/share/datasets/fashion-mnist, batch_size: 16, max_train_batches: 6,
       max_test_batches: 2}
model: {name: mlp}
optimizer: {name: sgd, lr: 0.05, momentum: 0.9}
split: {point: 0, staleness: 0}
link: {heartbeat_interval_s: 0.5, peer_timeout_s: 10, connect_timeout_s: 10}
security: {mode: plaintext}
)",
                                    "pixels.yaml", {"run.output_dir=" + outputDir("pixels")});
  StandaloneTrainer standalone(config);
  std::atomic<bool> stop{false};
  standalone.run(stop);
  const int n = standalone.model().numStages();
  testing::CloudThread cloud(config);
  auto edge = testing::makeEdge(config, cloud.endpoint);
  const auto summary = edge->run(stop);
  cloud.join();
  ASSERT_EQ(cloud.outcome, CloudOutcome::kCompleted);
  EXPECT_LE(maxDifference(cloud.cloud->lastModel()->state(0, n), standalone.model().state(0, n)), 1e-6);
  // 6 training and 2 evaluation batches of 16 × 784 pixels, one byte each, plus labels and
  // headers: far below the 4 bytes per pixel of float32.
  const double pixels = 8.0 * 16 * 784;
  EXPECT_GT(static_cast<double>(summary.bytes_uplink), pixels);
  EXPECT_LT(static_cast<double>(summary.bytes_uplink), 1.5 * pixels);
  fs::remove_all(config.run.output_dir);
}

}  // namespace
}  // namespace tandem::pipeline

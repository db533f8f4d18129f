#include "runtime/transport/link_emulator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "runtime/transport/zmq_transport.h"
#include "tests/runtime/receive_util.h"
#include "tests/runtime/transport_conformance.h"

namespace tandem::transport {
namespace {

using test_util::withPayload;
using namespace std::chrono_literals;
using conformance::TransportConformance;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

// The conformance suite through a fast emulated link (1 Gbit/s both ways, 2 ms RTT) over
// ZeroMQ tcp://127.0.0.1:*, the stack makeTransport builds when link.emulate is set.
INSTANTIATE_TEST_SUITE_P(LinkEmulated, TransportConformance,
                         ::testing::Values(conformance::BackendParam{
                             "ZmqTcp",
                             [] {
                               return std::make_unique<conformance::Backend>(
                                   std::make_unique<conformance::ZmqSockets>(false), nullptr,
                                   [](std::unique_ptr<Transport> inner, bool binds) {
                                     return std::make_unique<LinkEmulator>(
                                         std::move(inner), LinkShape{BandwidthTrace(1000.0, 1000.0), 2.0, !binds});
                                   });
                             }}),
                         conformance::backendName);

TEST(BandwidthTrace, FinishTimeIntegratesAcrossSteps) {
  BandwidthTrace trace({{0.0, 8.0, 80.0}, {1.0, 0.0, 80.0}, {2.0, 16.0, 80.0}});
  // 8 Mbit/s for 1 s moves 8 Mbit; then nothing for 1 s; then 16 Mbit/s.
  EXPECT_DOUBLE_EQ(trace.finishTime(0.0, 4e6, true), 0.5);
  EXPECT_DOUBLE_EQ(trace.finishTime(0.5, 8e6, true), 2.25);
  EXPECT_DOUBLE_EQ(trace.finishTime(0.0, 8e6, false), 0.1);
  EXPECT_DOUBLE_EQ(trace.uplinkAt(1.5), 0.0);
  EXPECT_DOUBLE_EQ(trace.uplinkAt(100.0), 16.0);
  BandwidthTrace dead({{0.0, 1.0, 1.0}, {1.0, 0.0, 0.0}});
  EXPECT_TRUE(std::isinf(dead.finishTime(0.0, 2e6, true)));
}

TEST(BandwidthTrace, LoadsCsvAndRejectsBadFiles) {
  const auto path = (std::filesystem::temp_directory_path() / "tandem_trace_test.csv").string();
  std::ofstream(path) << "time_s,uplink_mbps,downlink_mbps\n# comment\n0,10,50\n5.5, 2 ,20 # drop\n";
  const auto trace = BandwidthTrace::load(path);
  ASSERT_EQ(trace.points().size(), 2u);
  EXPECT_DOUBLE_EQ(trace.uplinkAt(6), 2.0);
  const auto errorOf = [&](const std::string& text) {
    std::ofstream(path) << text;
    try {
      BandwidthTrace::load(path);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_THAT(errorOf("0,1,1\n0,2,2\n"), HasSubstr(":2: times must be strictly increasing"));
  EXPECT_THAT(errorOf("1,1,1\n"), HasSubstr("the first point must be at time 0"));
  EXPECT_THAT(errorOf("0,1\n"), HasSubstr(":1: expected time_s,uplink_mbps,downlink_mbps"));
  EXPECT_THAT(errorOf("0,1,-1\n"), HasSubstr("negative rate"));
  EXPECT_THAT(errorOf("0,1,1\nx,y,z\n"), HasSubstr(":2: not three numbers"));
  EXPECT_THAT(errorOf(""), HasSubstr("no data rows"));
  std::filesystem::remove(path);
  EXPECT_THROW(BandwidthTrace::load("/nonexistent.csv"), ConfigError);
}

// A pair of ZeroMQ transports with both directions shaped.
struct ShapedPair {
  std::shared_ptr<zmq::context_t> context = std::make_shared<zmq::context_t>(1);
  std::unique_ptr<Transport> cloud;
  std::unique_ptr<Transport> edge;

  ShapedPair(double up_mbps, double down_mbps, double rtt_ms) {
    ZmqOptions c;
    c.mode = ZmqOptions::Mode::kBind;
    c.endpoint = "tcp://127.0.0.1:*";
    auto cloud_inner = std::make_unique<ZmqTransport>(c);
    ZmqOptions e;
    e.endpoint = cloud_inner->endpoint();
    auto edge_inner = std::make_unique<ZmqTransport>(e);
    const BandwidthTrace trace(up_mbps, down_mbps);
    cloud = std::make_unique<LinkEmulator>(std::move(cloud_inner), LinkShape{trace, rtt_ms, false});
    edge = std::make_unique<LinkEmulator>(std::move(edge_inner), LinkShape{trace, rtt_ms, true});
  }
};

// Sends `bytes` up and a tiny reply down; returns the round trip in seconds.
double roundTrip(ShapedPair& p, std::size_t bytes) {
  const auto start = Clock::now();
  p.edge->send(withPayload(bytes));
  auto got = tandem::test_util::receiveMessage(*p.cloud, 30s);
  EXPECT_TRUE(got);
  Message reply(MessageType::kEvalResult, StepResult{});
  reply.peer = got->peer;
  p.cloud->send(std::move(reply));
  EXPECT_TRUE(tandem::test_util::receiveMessage(*p.edge, 30s));
  return std::chrono::duration<double>(Clock::now() - start).count();
}

TEST(LinkEmulator, TransferTakesSizeOverRatePlusRtt) {
  struct Case {
    std::size_t bytes;
    double mbps;
    double rtt_ms;
  };
  for (const auto& c : {Case{250'000, 10.0, 40.0}, Case{1'000'000, 50.0, 100.0}, Case{100'000, 4.0, 10.0}}) {
    ShapedPair p(c.mbps, 1000.0, c.rtt_ms);
    roundTrip(p, 100);  // connect and handshake outside the measurement
    const double measured = roundTrip(p, c.bytes);
    const double expected = static_cast<double>(c.bytes) * 8.0 / (c.mbps * 1e6) + c.rtt_ms / 1000.0;
    EXPECT_NEAR(measured, expected, expected * 0.10) << c.bytes << " B at " << c.mbps << " Mbit/s, rtt " << c.rtt_ms;
  }
}

TEST(LinkEmulator, BackToBackMessagesQueue) {
  ShapedPair p(8.0, 1000.0, 0.0);
  roundTrip(p, 100);
  const auto start = Clock::now();
  for (int i = 0; i < 4; ++i) p.edge->send(withPayload(100'000));  // 0.1 s each at 8 Mbit/s
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(tandem::test_util::receiveMessage(*p.cloud, 10s));
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_NEAR(seconds, 0.4, 0.04);
}

}  // namespace
}  // namespace tandem::transport

#include "runtime/telemetry/metrics.h"

#include "runtime/common/error.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <regex>

namespace tandem::telemetry {
namespace {

using ::testing::HasSubstr;

TEST(Metrics, NamesFollowPrometheusConventions) {
  Metrics metrics("edge", config::MetricsConfig{});
  auto& m = metrics.forEdge("e1");
  m.steps->Increment(3);
  m.staleness->Observe(2);
  m.setCodec("int8");
  m.setCodec("none");
  TrainerMetrics::advance(m.bytes_uplink, 1000);
  TrainerMetrics::advance(m.bytes_uplink, 1500);
  TrainerMetrics::advance(m.bytes_uplink, 1200);  // never backwards
  const auto text = metrics.text();
  EXPECT_THAT(text, HasSubstr(R"(tandem_steps_total{edge="e1",role="edge"} 3)"));
  EXPECT_THAT(text, HasSubstr(R"(tandem_link_bytes_total{direction="uplink",edge="e1",role="edge"} 1500)"));
  EXPECT_THAT(text, HasSubstr(R"(tandem_uplink_codec_info{codec="int8",edge="e1",role="edge"} 0)"));
  EXPECT_THAT(text, HasSubstr(R"(tandem_uplink_codec_info{codec="none",edge="e1",role="edge"} 1)"));
  EXPECT_THAT(text, HasSubstr(R"(tandem_staleness_bucket{edge="e1",role="edge",le="2"} 1)"));
  // Every family: tandem_ prefix; counters end in _total.
  std::regex type_line("# TYPE (\\S+) (\\S+)");
  int families = 0;
  for (std::sregex_iterator it(text.begin(), text.end(), type_line), end; it != end; ++it) {
    const std::string name = (*it)[1];
    const std::string type = (*it)[2];
    EXPECT_EQ(name.rfind("tandem_", 0), 0u) << name;
    if (type == "counter") {
      EXPECT_EQ(name.substr(name.size() - 6), "_total") << name;
    }
    ++families;
  }
  EXPECT_EQ(families, 20);
  // Both roles and several edges coexist.
  auto& other = metrics.forEdge("e2");
  EXPECT_NE(&other, &m);
  EXPECT_EQ(&metrics.forEdge("e1"), &m);
}

TEST(Metrics, ServesOverHttpAndReportsATakenPort) {
  config::MetricsConfig c;
  c.port = 0;
  Metrics off("edge", c);
  EXPECT_EQ(off.url(), "");
  // Find a free port by serving on one, then try to take it twice.
  for (int port = 19100; port < 19200; ++port) {
    c.port = port;
    std::unique_ptr<Metrics> first;
    try {
      first = std::make_unique<Metrics>("edge", c);
    } catch (const Error&) {
      continue;
    }
    EXPECT_EQ(first->url(), "http://127.0.0.1:" + std::to_string(port) + "/metrics");
    try {
      Metrics second("cloud", c);
      FAIL() << "bound twice";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("cannot serve metrics on 127.0.0.1:" + std::to_string(port)));
    }
    return;
  }
  FAIL() << "no free port in 19100..19199";
}

}  // namespace
}  // namespace tandem::telemetry

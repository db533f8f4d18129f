#include "runtime/telemetry/metrics.h"

#include "runtime/common/error.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <regex>
#include <sstream>
#include <vector>

namespace tandem::telemetry {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// The value of the sample whose name and labels are exactly `series` (as written by the
// text format, e.g. `tandem_epoch{edge="e1",role="edge"}`), if there is one.
std::optional<double> sample(const std::string& text, const std::string& series) {
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 && line[series.size()] == ' ') {
      return std::strtod(line.c_str() + series.size() + 1, nullptr);  // also "Nan", "+Inf"
    }
  }
  return std::nullopt;
}

// (le, cumulative count) of every bucket of one histogram series, in order.
std::vector<std::pair<double, double>> buckets(const std::string& text, const std::string& name,
                                               const std::string& labels) {
  std::vector<std::pair<double, double>> out;
  const std::regex bucket(name + "_bucket\\{" + labels + ",le=\"([^\"]+)\"\\} (\\S+)");
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_match(line, m, bucket)) out.emplace_back(std::strtod(m[1].str().c_str(), nullptr), std::stod(m[2]));
  }
  return out;
}

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
  // Every family: tandem_ prefix, or process_ for the standard process metrics; counters
  // end in _total.
  std::regex type_line("# TYPE (\\S+) (\\S+)");
  int families = 0;
  int process_families = 0;
  for (std::sregex_iterator it(text.begin(), text.end(), type_line), end; it != end; ++it) {
    const std::string name = (*it)[1];
    const std::string type = (*it)[2];
    if (name.rfind("process_", 0) == 0) {
      ++process_families;
    } else {
      EXPECT_EQ(name.rfind("tandem_", 0), 0u) << name;
      ++families;
    }
    if (type == "counter") {
      EXPECT_EQ(name.substr(name.size() - 6), "_total") << name;
    }
  }
  EXPECT_EQ(families, 26);
  EXPECT_EQ(process_families, 7);
  // Both roles and several edges coexist.
  auto& other = metrics.forEdge("e2");
  EXPECT_NE(&other, &m);
  EXPECT_EQ(&metrics.forEdge("e1"), &m);
}

TEST(Metrics, LimitHitsExistFromTheStartAndEdgeNamesAreBounded) {
  Metrics metrics("cloud", config::MetricsConfig{});
  for (const char* limit : Metrics::kLimits) {
    EXPECT_THAT(metrics.text(),
                HasSubstr(std::string("tandem_limit_hits_total{limit=\"") + limit + "\",role=\"cloud\"} 0"));
  }
  metrics.limitHit("peer_rate", 3);
  metrics.limitHit("peer_rate");
  EXPECT_EQ(metrics.limitHits("peer_rate"), 4.0);
  EXPECT_THAT(metrics.text(), HasSubstr(R"(tandem_limit_hits_total{limit="peer_rate",role="cloud"} 4)"));
  // Peers name their own series: past kMaxEdgeSeries names they share one.
  for (std::size_t i = 0; i < Metrics::kMaxEdgeSeries; ++i) metrics.forEdge("edge" + std::to_string(i));
  auto& late = metrics.forEdge("one-too-many");
  EXPECT_EQ(&late, &metrics.forEdge("another"));
  EXPECT_THAT(metrics.text(), HasSubstr(R"(edge="_other")"));
  EXPECT_THAT(metrics.text(), Not(HasSubstr("one-too-many")));
}

TEST(Metrics, UnknownValuesAreNaNUntilKnown) {
  Metrics metrics("edge", config::MetricsConfig{});
  auto& m = metrics.forEdge("e1");
  const std::string labels = R"({edge="e1",role="edge"})";
  auto text = metrics.text();
  for (const char* name : {"tandem_test_accuracy_ratio", "tandem_test_loss", "tandem_train_loss",
                           "tandem_train_accuracy_ratio", "tandem_link_rtt_seconds"}) {
    const auto value = sample(text, name + labels);
    ASSERT_TRUE(value) << name << " not exported:\n" << text;
    EXPECT_TRUE(std::isnan(*value)) << name << " is " << *value << " before it is known";
  }
  for (const char* direction : {"uplink", "downlink"}) {
    const auto value = sample(text, std::string(R"(tandem_link_bandwidth_bytes_per_second{direction=")") + direction +
                                        R"(",edge="e1",role="edge"})");
    ASSERT_TRUE(value) << direction;
    EXPECT_TRUE(std::isnan(*value)) << direction << " bandwidth is " << *value << " before an estimate";
  }
  // Known values are exported as they are, 0 included.
  m.test_accuracy->Set(0.875);
  m.test_loss->Set(0.0);
  TrainerMetrics::setKnown(m.bandwidth_uplink, 1.25e6);
  TrainerMetrics::setKnown(m.bandwidth_downlink, std::nullopt);
  text = metrics.text();
  EXPECT_EQ(sample(text, "tandem_test_accuracy_ratio" + labels), 0.875);
  EXPECT_EQ(sample(text, "tandem_test_loss" + labels), 0.0);
  EXPECT_EQ(sample(text, R"(tandem_link_bandwidth_bytes_per_second{direction="uplink",edge="e1",role="edge"})"),
            1.25e6);
  EXPECT_TRUE(std::isnan(
      *sample(text, R"(tandem_link_bandwidth_bytes_per_second{direction="downlink",edge="e1",role="edge"})")));
  // The other series are defined from the start: counters at 0, compression 1 (raw).
  EXPECT_EQ(sample(text, "tandem_steps_total" + labels), 0.0);
  EXPECT_EQ(sample(text, R"(tandem_compression_ratio{direction="uplink",edge="e1",role="edge"})"), 1.0);
}

TEST(Metrics, SecondsHistogramsResolveMicrosecondsToSeconds) {
  Metrics metrics("edge", config::MetricsConfig{});
  auto& m = metrics.forEdge("e1");
  m.encode->Observe(3e-5);   // a small codec call
  m.encode->Observe(0.002);  // a large one
  m.migration->Observe(4.0);
  const auto text = metrics.text();
  for (const char* phase :
       {"edge_forward", "edge_backward", "edge_replay_backward", "cloud_step", "encode", "decode"}) {
    const auto b =
        buckets(text, "tandem_phase_seconds", std::string(R"(edge="e1",phase=")") + phase + R"(",role="edge")");
    ASSERT_EQ(b.size(), 22u) << phase << ": 21 bounds and +Inf\n" << text;
    EXPECT_DOUBLE_EQ(b.front().first, 1e-5) << phase;
    EXPECT_TRUE(std::isinf(b.back().first)) << phase;
    EXPECT_GE(b[b.size() - 2].first, 10.0) << phase;
    for (std::size_t i = 1; i + 1 < b.size(); ++i) EXPECT_NEAR(b[i].first / b[i - 1].first, 2.0, 1e-9) << phase;
  }
  // The two encode times land in different, non-first buckets: quantiles can tell them apart.
  const auto encode = buckets(text, "tandem_phase_seconds", R"(edge="e1",phase="encode",role="edge")");
  const auto count_at = [&](double le) {
    for (const auto& [bound, count] : encode) {
      if (std::abs(bound - le) < 1e-12 * le) return count;
    }
    ADD_FAILURE() << "no bucket le=" << le;
    return -1.0;
  };
  EXPECT_EQ(count_at(2e-5), 0.0);
  EXPECT_EQ(count_at(4e-5), 1.0);
  EXPECT_EQ(count_at(1.28e-3), 1.0);
  EXPECT_EQ(count_at(2.56e-3), 2.0);
  EXPECT_EQ(secondsBuckets().size(), 21u);
  const auto migration = buckets(text, "tandem_migration_seconds", R"(edge="e1",role="edge")");
  ASSERT_EQ(migration.size(), 22u);
  EXPECT_EQ(migration[18].second, 0.0);  // le 2.62144
  EXPECT_EQ(migration[19].second, 1.0);  // le 5.24288
}

TEST(Metrics, ProcessMetricsArePresentAndPlausible) {
  Metrics metrics("cloud", config::MetricsConfig{});
  const auto text = metrics.text();
  const auto value = [&](const char* name) {
    const auto v = sample(text, name);
    EXPECT_TRUE(v) << name << " missing:\n" << text;
    return v.value_or(std::nan(""));
  };
  EXPECT_THAT(text, HasSubstr("# TYPE process_cpu_seconds_total counter"));
  EXPECT_THAT(text, HasSubstr("# TYPE process_resident_memory_bytes gauge"));
  const double rss = value("process_resident_memory_bytes");
  const double vsize = value("process_virtual_memory_bytes");
  EXPECT_GT(rss, 1e6);  // a process linked with LibTorch holds more than a megabyte
  EXPECT_GE(vsize, rss);
  const double cpu = value("process_cpu_seconds_total");
  EXPECT_GE(cpu, 0.0);
  EXPECT_LT(cpu, 1e6);
  EXPECT_GE(value("process_threads"), 1.0);
  const double fds = value("process_open_fds");
  EXPECT_GE(fds, 1.0);
  EXPECT_LT(fds, 1e6);
  EXPECT_GE(value("process_max_fds"), fds);
  const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  const double start = value("process_start_time_seconds");
  EXPECT_LE(start, now + 1.0);
  EXPECT_GT(start, now - 86400.0) << "the test process started more than a day ago?";
}

TEST(Metrics, BuildInfoNamesVersionCommitCompilerAndBuildType) {
  Metrics metrics("edge", config::MetricsConfig{});
  const auto text = metrics.text();
  std::smatch m;
  const std::regex info(
      R"re(tandem_build_info\{build_type="([^"]+)",compiler="([^"]+)",git_commit="([^"]+)",role="edge",version="([^"]+)"\} 1)re");
  ASSERT_TRUE(std::regex_search(text, m, info)) << text;
  EXPECT_TRUE(std::regex_match(m[3].str(), std::regex("[0-9a-f]{12}(-dirty)?|unknown"))) << m[3];
  EXPECT_TRUE(std::regex_match(m[4].str(), std::regex(R"(\d+\.\d+\.\d+)"))) << m[4];
  EXPECT_FALSE(m[2].str().empty());
  EXPECT_FALSE(m[1].str().empty());
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

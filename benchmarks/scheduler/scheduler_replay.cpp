// Trace-driven replay of the scheduler (docs/scheduler-benchmark.md): for each zoo model
// and each bandwidth trace, simulates one epoch of split training with every fixed
// (split, codec) pair and with `split.point: auto`, and reports auto / best.
//
// What is real: the stage profiles (measured on this host by the profiler, cached in
// --profile-dir like the trainers' own, codec costs included), the Planner, CostModel,
// LinkEstimator and EdgeScheduler (the edge's own glue: link states, the bandwidth
// trigger, the profile check, decisions.jsonl). What is simulated: time. The edge loop of
// runtime/pipeline/edge.cpp (one arrived gradient applied per batch sent, at most K + 1
// batches in flight, drain + re-plan when the scheduler reports a bandwidth move, the
// start-up probes) runs against FIFO links whose rate follows the trace
// (BandwidthTrace::finishTime, as the link emulator shapes), with half the RTT each way,
// and a cloud that is one FIFO server; compute takes the profiled times. Migrations
// move the stages' bytes over the traced link plus one RTT.
//
//   build/benchmarks/scheduler/scheduler_replay [--models mlp,cnn,...] [--traces a.csv,...]
//       [--random N] [--seed S] [--iterations N] [--rtt MS] [--profile-dir DIR] [--out DIR]
//   build/benchmarks/scheduler/scheduler_replay --write-trace KIND --seed S --out FILE.csv
//
// KIND: oscillating | fading | outages. The seed of every generated trace is printed, so
// a run can be replayed (--seed S --random N regenerates the same N traces).
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/common/error.h"
#include "runtime/common/log.h"
#include "runtime/config/config.h"
#include "runtime/pipeline/edge_scheduler.h"
#include "runtime/pipeline/setup.h"
#include "runtime/scheduler/profiler.h"
#include "runtime/transport/bandwidth_trace.h"

namespace {

using namespace tandem;
using transport::BandwidthTrace;

std::vector<std::string> splitList(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// ---- random traces -------------------------------------------------------------------

constexpr double kTraceSeconds = 900.0;

std::vector<BandwidthTrace::Point> makeTrace(const std::string& kind, std::uint64_t seed, std::string& comment) {
  std::mt19937_64 rng(seed);
  const auto uniform = [&](double a, double b) { return std::uniform_real_distribution<double>(a, b)(rng); };
  const auto log_uniform = [&](double a, double b) { return std::exp(uniform(std::log(a), std::log(b))); };
  std::vector<BandwidthTrace::Point> points;
  std::ostringstream c;
  c.precision(4);
  if (kind == "oscillating") {
    // Two states, fast and slow, with random dwell times.
    const double hi = log_uniform(10, 300);
    const double lo = hi * log_uniform(0.02, 0.3);
    const double down_ratio = uniform(1.5, 5);
    const double dwell = uniform(3, 30);
    c << "oscillating: uplink " << hi << " <-> " << lo << " Mbit/s, downlink x" << down_ratio << ", mean dwell "
      << dwell << " s";
    bool fast = uniform(0, 1) < 0.5;
    for (double t = 0; t < kTraceSeconds; t += std::max(1.0, std::exponential_distribution<double>(1.0 / dwell)(rng))) {
      const double up = fast ? hi : lo;
      points.push_back({std::round(t * 10) / 10, up, up * down_ratio});
      fast = !fast;
    }
  } else if (kind == "fading") {
    const double mean = log_uniform(1, 150);
    const double period = uniform(20, 120);
    const double depth = uniform(0.3, 0.85);
    const double jitter = uniform(0.1, 0.45);
    const double down_ratio = uniform(1.5, 5);
    c << "fading: uplink ~" << mean << " Mbit/s, fade period " << period << " s depth " << depth << ", jitter "
      << jitter << ", downlink x" << down_ratio;
    std::lognormal_distribution<double> noise(0.0, jitter);
    for (double t = 0; t < kTraceSeconds; t += 1.0) {
      const double fade = 1.0 - depth * 0.5 * (1.0 + std::sin(2.0 * M_PI * t / period));
      const double up = std::max(0.05 * mean, mean * fade * noise(rng));
      points.push_back({t, up, up * down_ratio * noise(rng)});
    }
  } else if (kind == "outages") {
    const double mean = log_uniform(2, 150);
    const double every = uniform(15, 60);
    const double down_ratio = uniform(1.5, 5);
    c << "outages: uplink ~" << mean << " Mbit/s (jitter 0.2), an outage (0 Mbit/s, 1-5 s) every ~" << every
      << " s, downlink x" << down_ratio;
    std::lognormal_distribution<double> noise(0.0, 0.2);
    double next_outage = std::exponential_distribution<double>(1.0 / every)(rng);
    for (double t = 0; t < kTraceSeconds;) {
      if (t >= next_outage) {
        const double length = std::round(uniform(1, 5));
        points.push_back({t, 0.0, 0.0});
        t += length;
        next_outage = t + std::exponential_distribution<double>(1.0 / every)(rng);
        continue;
      }
      const double up = mean * noise(rng);
      points.push_back({t, up, up * down_ratio * noise(rng)});
      t += 1.0;
    }
  } else {
    throw Error("unknown trace kind \"" + kind + "\" (oscillating, fading, outages)");
  }
  c << "; seed " << seed << "; scheduler_replay --write-trace " << kind << " --seed " << seed;
  comment = c.str();
  return points;
}

void writeTrace(const std::string& path, const std::vector<BandwidthTrace::Point>& points, const std::string& comment) {
  std::ofstream out(path);
  if (!out) throw Error("cannot write " + path);
  out << "# " << comment << "\ntime_s,uplink_mbps,downlink_mbps\n";
  char line[128];
  for (const auto& p : points) {
    std::snprintf(line, sizeof line, "%g,%.3f,%.3f\n", p.time_s, p.uplink_mbps, p.downlink_mbps);
    out << line;
  }
}

// ---- the simulated edge ----------------------------------------------------------------

struct InFlight {
  double sent = 0.0;
  double arrived_cloud = 0.0;
  double replied = 0.0;
  double gradient_at = 0.0;
  std::uint64_t up_bytes = 0;
  std::uint64_t down_bytes = 0;
  double replay = 0.0;  // the edge's work once the gradient is back
};

struct RunResult {
  double seconds = 0.0;    // the epoch's training time (setup and the start decision excluded)
  double predicted = 0.0;  // the prediction at the start decision
  int migrations = 0;
  std::vector<std::pair<int, std::string>> pairs;  // every pair auto used, in order
  double profile_scale = 1.0;
};

class SimulatedEdge {
 public:
  SimulatedEdge(double& clock, const BandwidthTrace& trace, double rtt, const scheduler::CostModel& truth,
                telemetry::LinkEstimator& estimator)
      : now(clock), trace_(trace), rtt_(rtt), truth_(truth), est_(estimator) {}

  double& now;  // simulated seconds since the trainers started (the trace's clock)

  double finish(double start, double bytes, bool up) const {
    const double t = trace_.finishTime(start, bytes * 8.0, up);
    return std::isfinite(t) ? t : start + 1e6;  // a trace that ends at 0: "forever"
  }

  // EdgeTrainer::probe(true): pings, then growing probes until they take 50 ms.
  void probe(std::int64_t probe_bytes) {
    est_.resetSpacing();
    for (int i = 0; i < 5; ++i) {
      const double t0 = now;
      est_.onPing(t0, t0 + rtt_ / 2, t0 + rtt_ / 2, t0 + rtt_);
      now += rtt_;
    }
    for (std::uint64_t size = 16 * 1024;; size *= 4) {
      const double wire = static_cast<double>(size) + 256;
      const double t0 = now;
      const double at_cloud = finish(t0, wire, true) + rtt_ / 2;
      est_.onUplink(static_cast<std::uint64_t>(wire), t0, at_cloud);
      est_.resetSpacing();
      now = at_cloud + rtt_ / 2;
      const double up = now - t0;
      const double t1 = now;
      const double t2 = t1 + rtt_ / 2;
      const double at_edge = finish(t2, wire, false) + rtt_ / 2;
      est_.onDownlink(static_cast<std::uint64_t>(wire), t2, at_edge);
      est_.resetSpacing();
      now = at_edge;
      const double down = now - t1;
      if ((up - rtt_ > 0.05 && down - rtt_ > 0.05) || size * 4 > static_cast<std::uint64_t>(probe_bytes)) break;
    }
  }

  void send(int split, const std::string& codec) {
    const auto t = truth_.iteration(split, codec, {});
    now += t.edge_forward;
    InFlight f;
    f.sent = now;
    f.up_bytes = static_cast<std::uint64_t>(truth_.uplinkBytes(split, codec));
    f.down_bytes = static_cast<std::uint64_t>(truth_.downlinkBytes(split));
    up_free_ = finish(std::max(now, up_free_), static_cast<double>(f.up_bytes), true);
    f.arrived_cloud = up_free_ + rtt_ / 2;
    cloud_free_ = std::max(f.arrived_cloud, cloud_free_) + t.cloud;
    f.replied = cloud_free_;
    down_free_ = finish(std::max(cloud_free_, down_free_), static_cast<double>(f.down_bytes), false);
    f.gradient_at = down_free_ + rtt_ / 2;
    f.replay = t.edge - t.edge_forward;
    in_flight_.push_back(f);
  }

  bool empty() const { return in_flight_.empty(); }
  std::size_t inFlight() const { return in_flight_.size(); }
  bool oldestArrived() const { return !in_flight_.empty() && in_flight_.front().gradient_at <= now; }

  void apply() {
    const auto f = in_flight_.front();
    in_flight_.pop_front();
    now = std::max(now, f.gradient_at);
    est_.onUplink(f.up_bytes, f.sent, f.arrived_cloud);
    est_.onDownlink(f.down_bytes, f.replied, f.gradient_at);
    now += f.replay;
    ++step;
  }
  void drainAll() {
    while (!empty()) apply();
  }

  // Stages move over the link in the direction they travel, then one round trip.
  void migrate(int from, int to) {
    if (from == to) return;
    const double bytes = static_cast<double>(truth_.migrationBytes(from, to)) + 256;
    now = finish(now, bytes, to < from) + rtt_;
  }

  std::int64_t step = 0;

 private:
  const BandwidthTrace& trace_;
  double rtt_;
  const scheduler::CostModel& truth_;
  telemetry::LinkEstimator& est_;
  double up_free_ = 0.0;
  double cloud_free_ = 0.0;
  double down_free_ = 0.0;
  std::deque<InFlight> in_flight_;
};

// One epoch of `iterations` batches with a fixed pair (split >= 0) or auto (split < 0).
// Auto's decisions.jsonl goes to `output_dir`.
RunResult run(config::Config config, const scheduler::ModelProfile& profile, const BandwidthTrace& trace, double rtt,
              std::int64_t iterations, int split, const std::string& codec, const std::string& output_dir) {
  telemetry::LinkEstimator estimator;
  double clock = 0.0;
  config.run.output_dir = output_dir;
  pipeline::EdgeScheduler scheduler(config, profile, estimator, [&] { return clock; });
  // The truth: the profile as measured, priced as the planner prices it (a copy, so a
  // rescaling by the profile check changes the planner's view, not the simulated host).
  const scheduler::CostModel truth = scheduler.costModel();
  SimulatedEdge edge(clock, trace, rtt, truth, estimator);
  edge.probe(config.scheduler.probe_bytes);
  const int k = config.split.staleness;
  RunResult result;
  int current = 0;
  std::string current_codec = config.compression.uplink;
  if (split >= 0) {
    current = split;
    current_codec = codec;
    result.predicted = scheduler.predict(split, codec, k, iterations);
  }
  const auto replan = [&](const std::string& trigger, std::int64_t remaining, bool charged) {
    auto d = scheduler.plan(current, current_codec, k, remaining);
    const double predicted = d.predicted_epoch_seconds;
    if (d.changed) {
      if (charged) edge.migrate(current, d.split);
      if (charged) ++result.migrations;
      current = d.split;
      current_codec = d.codec;
      result.pairs.emplace_back(current, current_codec);
    }
    scheduler.begin(std::move(d), trigger, 0, edge.step, true, predicted);
    return predicted;
  };
  if (split < 0) {
    result.predicted = replan("start", iterations, false);  // setting up: not charged (edge.cpp)
    if (result.pairs.empty()) result.pairs.emplace_back(current, current_codec);
  }
  const double start = edge.now;
  for (std::int64_t sent = 0; sent < iterations; ++sent) {
    if (edge.oldestArrived()) edge.apply();
    while (edge.inFlight() >= static_cast<std::size_t>(k + 1)) edge.apply();
    if (split < 0 && scheduler.bandwidthMoved(edge.step)) {
      edge.drainAll();
      replan("bandwidth", iterations - sent, true);
    }
    edge.send(current, current_codec);
    // The compute the real edge measures: exactly the profile's here (simulated time).
    const auto t = truth.iteration(current, current_codec, {});
    scheduler.noteCompute(t.edge, t.cloud);
  }
  edge.drainAll();
  result.seconds = edge.now - start;
  scheduler.finish(edge.step);
  result.profile_scale = scheduler.profileScale();
  return result;
}

struct Trace {
  std::string name;
  BandwidthTrace trace;
};

}  // namespace

int main(int argc, char** argv) {
  try {
    std::map<std::string, std::string> args{{"models", "mlp,cnn,vgg11,mobilenetv2,resnet18"},
                                            {"traces", ""},
                                            {"random", "6"},
                                            {"seed", ""},
                                            {"iterations", "0"},
                                            {"rtt", "20"},
                                            {"profile-dir", "runs/profiles"},
                                            {"codecs", "none,int8"},
                                            {"out", "runs/scheduler_replay"},
                                            {"write-trace", ""},
                                            {"set", ""}};
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a.rfind("--", 0) != 0 || i + 1 >= argc || args.count(a.substr(2)) == 0) {
        std::cerr << "usage: see the comment at the top of benchmarks/scheduler/scheduler_replay.cpp (bad argument "
                  << a << ")\n";
        return 2;
      }
      args[a.substr(2)] = argv[++i];
    }
    std::uint64_t seed = args["seed"].empty() ? std::random_device{}() : std::stoull(args["seed"]);
    if (!args["write-trace"].empty()) {
      std::string comment;
      const auto points = makeTrace(args["write-trace"], seed, comment);
      writeTrace(args["out"], points, comment);
      std::cout << args["out"] << ": " << comment << "\n";
      return 0;
    }
    torch::set_num_threads(1);
    std::filesystem::create_directories(args["out"]);
    std::vector<Trace> traces;
    for (const auto& path : splitList(args["traces"])) {
      traces.push_back({std::filesystem::path(path).stem().string(), BandwidthTrace::load(path)});
    }
    const int random = std::stoi(args["random"]);
    const char* kinds[] = {"oscillating", "fading", "outages"};
    std::cout << "random traces: --seed " << seed << "\n";
    for (int r = 0; r < random; ++r) {
      const std::uint64_t s = seed + static_cast<std::uint64_t>(r);
      const std::string kind = kinds[r % 3];
      std::string comment;
      auto points = makeTrace(kind, s, comment);
      const std::string name = kind + "-" + std::to_string(s);
      writeTrace(args["out"] + "/" + name + ".csv", points, comment);
      std::cout << "  " << name << ": " << comment << "\n";
      traces.push_back({name, BandwidthTrace(std::move(points))});
    }
    const double rtt = std::stod(args["rtt"]) * 1e-3;
    std::ofstream csv(args["out"] + "/replay.csv");
    csv << "model,trace,pair,simulated_s,predicted_s,migrations,pairs_used\n";
    std::vector<double> ratios;
    std::vector<double> errors;
    std::cout << "\n| model | trace | auto s | best fixed | best s | auto / best | auto pairs (migrations) |\n"
              << "|---|---|---|---|---|---|---|\n";
    for (const auto& model_name : splitList(args["models"])) {
      std::vector<std::string> overrides{"scheduler.codecs=[" + args["codecs"] + "]",
                                         "scheduler.profile_dir=" + args["profile-dir"],
                                         "run.output_dir=" + args["out"] + "/decisions"};
      for (const auto& o : splitList(args["set"])) overrides.push_back(o);
      auto config = config::loadConfig("configs/fashion_mnist_" + model_name + ".yaml", overrides);
      auto model = pipeline::buildModel(config);
      const auto batch = config.data.batch_size;
      const auto input = torch::randn({batch, 1, 28, 28});
      auto profile = scheduler::describeModel(model, batch, config.optimizer.name);
      profile.edge = scheduler::sideProfile(config, model, input, config::Role::kEdge);
      profile.cloud = scheduler::sideProfile(config, model, input, config::Role::kCloud);
      const std::int64_t iterations =
          std::stoll(args["iterations"]) > 0 ? std::stoll(args["iterations"]) : (60000 + batch - 1) / batch;
      for (const auto& trace : traces) {
        std::map<std::string, RunResult> fixed;
        for (int p = 0; p <= model.numStages(); ++p) {
          for (const auto& codec : config.scheduler.codecs) {
            auto r = run(config, profile, trace.trace, rtt, iterations, p, codec, args["out"] + "/decisions/fixed");
            const std::string pair = "p" + std::to_string(p) + " " + codec;
            csv << model_name << "," << trace.name << "," << pair << "," << r.seconds << "," << r.predicted << ",0,\n";
            errors.push_back(std::abs(r.predicted - r.seconds) / r.seconds);
            fixed[pair] = r;
          }
        }
        const auto a = run(config, profile, trace.trace, rtt, iterations, -1, "",
                           args["out"] + "/decisions/" + model_name + "/" + trace.name);
        std::string used;
        for (const auto& [p, c] : a.pairs) used += (used.empty() ? "" : " → ") + ("p" + std::to_string(p) + " " + c);
        csv << model_name << "," << trace.name << ",auto," << a.seconds << "," << a.predicted << "," << a.migrations
            << "," << used << "\n";
        const auto best = std::min_element(fixed.begin(), fixed.end(), [](const auto& x, const auto& y) {
          return x.second.seconds < y.second.seconds;
        });
        const double ratio = best->second.seconds / a.seconds;
        ratios.push_back(ratio);
        char line[512];
        std::snprintf(line, sizeof line, "| %s | %s | %.1f | %s | %.1f | %.3f | %s (%d) |\n", model_name.c_str(),
                      trace.name.c_str(), a.seconds, best->first.c_str(), best->second.seconds, ratio, used.c_str(),
                      a.migrations);
        std::cout << line << std::flush;
      }
    }
    std::sort(ratios.begin(), ratios.end());
    std::sort(errors.begin(), errors.end());
    const auto med = [](const std::vector<double>& v) {
      return v.empty() ? 0.0 : (v[(v.size() - 1) / 2] + v[v.size() / 2]) / 2;
    };
    std::printf(
        "\nauto / best over %zu cells (simulated): median %.3f, worst %.3f, cells >= 0.9: %zu, seed %llu\n",
        ratios.size(), med(ratios), ratios.empty() ? 0.0 : ratios.front(),
        static_cast<std::size_t>(std::count_if(ratios.begin(), ratios.end(), [](double r) { return r >= 0.9; })),
        static_cast<unsigned long long>(seed));
    std::printf("start prediction vs simulated time, fixed pairs (%zu runs): median |error| %.1f%%, max %.1f%%\n",
                errors.size(), 100 * med(errors), errors.empty() ? 0.0 : 100 * errors.back());
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "scheduler_replay: " << e.what() << "\n";
    return 1;
  }
}

#pragma once
// A bandwidth trace: uplink and downlink rates (Mbit/s) as step functions of time,
// read from a CSV file `time_s,uplink_mbps,downlink_mbps` (a header line and `#`
// comments allowed; times strictly increasing, the first at 0). Past the last row the
// last rates hold. Used by the link emulator and documented in benchmarks/traces/.

#include <string>
#include <vector>

namespace tandem::transport {

class BandwidthTrace {
 public:
  struct Point {
    double time_s;
    double uplink_mbps;
    double downlink_mbps;
  };

  // A constant link.
  BandwidthTrace(double uplink_mbps, double downlink_mbps);
  explicit BandwidthTrace(std::vector<Point> points);

  // Throws ConfigError naming the file and line on a bad file.
  static BandwidthTrace load(const std::string& path);

  double uplinkAt(double t) const;
  double downlinkAt(double t) const;

  // When `bits` sent from `start_s` finish at the rate of one direction, integrating
  // across rate changes. A zero rate stalls until the trace resumes (or forever).
  double finishTime(double start_s, double bits, bool uplink) const;

  const std::vector<Point>& points() const { return points_; }

 private:
  std::size_t indexAt(double t) const;
  std::vector<Point> points_;
};

}  // namespace tandem::transport

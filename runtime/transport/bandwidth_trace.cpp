#include "runtime/transport/bandwidth_trace.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include "runtime/common/error.h"
#include "runtime/common/strings.h"

namespace tandem::transport {

BandwidthTrace::BandwidthTrace(double uplink_mbps, double downlink_mbps)
    : points_{{0.0, uplink_mbps, downlink_mbps}} {}

BandwidthTrace::BandwidthTrace(std::vector<Point> points) : points_(std::move(points)) {
  TANDEM_ENFORCE(!points_.empty(), "a trace needs at least one point");
}

BandwidthTrace BandwidthTrace::load(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError("cannot read bandwidth trace '" + path + "'");
  std::vector<Point> points;
  std::string line;
  int number = 0;
  bool header_seen = false;
  while (std::getline(in, line)) {
    ++number;
    const auto where = path + ":" + std::to_string(number) + ": ";
    if (auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    line.erase(std::remove_if(line.begin(), line.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; }),
               line.end());
    if (line.empty()) continue;
    const auto fields = split(line, ',');
    if (fields.size() != 3) throw ConfigError(where + "expected time_s,uplink_mbps,downlink_mbps");
    double values[3];
    bool numeric = true;
    for (int i = 0; i < 3; ++i) {
      std::istringstream field(fields[static_cast<std::size_t>(i)]);
      if (!(field >> values[i]) || !field.eof() || !std::isfinite(values[i])) numeric = false;
    }
    if (!numeric) {
      if (points.empty() && !header_seen) {  // a header line before the data
        header_seen = true;
        continue;
      }
      throw ConfigError(where + "not three numbers: '" + line + "'");
    }
    if (values[1] < 0 || values[2] < 0) throw ConfigError(where + "negative rate");
    if (points.empty() && values[0] != 0.0) throw ConfigError(where + "the first point must be at time 0");
    if (!points.empty() && values[0] <= points.back().time_s) {
      throw ConfigError(where + "times must be strictly increasing");
    }
    points.push_back({values[0], values[1], values[2]});
  }
  if (points.empty()) throw ConfigError(path + ": no data rows");
  return BandwidthTrace(std::move(points));
}

std::size_t BandwidthTrace::indexAt(double t) const {
  auto it = std::upper_bound(points_.begin(), points_.end(), t,
                             [](double value, const Point& p) { return value < p.time_s; });
  return it == points_.begin() ? 0 : static_cast<std::size_t>(it - points_.begin() - 1);
}

double BandwidthTrace::uplinkAt(double t) const { return points_[indexAt(t)].uplink_mbps; }
double BandwidthTrace::downlinkAt(double t) const { return points_[indexAt(t)].downlink_mbps; }

double BandwidthTrace::finishTime(double start_s, double bits, bool uplink) const {
  double t = start_s;
  std::size_t i = indexAt(t);
  while (bits > 0) {
    const double rate = (uplink ? points_[i].uplink_mbps : points_[i].downlink_mbps) * 1e6;
    const double segment_end = i + 1 < points_.size() ? points_[i + 1].time_s : std::numeric_limits<double>::infinity();
    if (rate > 0) {
      const double needed = bits / rate;
      if (t + needed <= segment_end) return t + needed;
      bits -= (segment_end - t) * rate;
    } else if (!std::isfinite(segment_end)) {
      return std::numeric_limits<double>::infinity();
    }
    t = segment_end;
    ++i;
  }
  return t;
}

}  // namespace tandem::transport

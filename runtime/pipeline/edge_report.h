#pragma once
// What the edge reports about its run besides the summary: the per-step link timeline
// (<run.output_dir>/timeline-edge.csv) and the measured pipeline bound (which stage of
// edge compute, upload, cloud compute, download limited the run).

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/telemetry/summary.h"

namespace tandem::pipeline {

// One training step as the edge saw it: when its gradient was applied, under which split
// and codec, and the link estimate then (zeros when unknown).
struct LinkSample {
  std::int64_t step = 0;
  double seconds = 0.0;  // since the run started
  double uplink_bps = 0.0;
  double downlink_bps = 0.0;
  double rtt_seconds = 0.0;
  int epoch = 0;  // 0-based; written 1-based
  int split = 0;
  std::string codec;
  double loss = 0.0;
};

// Writes `<output_dir>/timeline-edge.csv` atomically.
void writeTimeline(const std::string& output_dir, const std::vector<LinkSample>& timeline);

// Sums of per-step stage times over a run, turned into the mean per step and the bound.
struct PipelineSums {
  double edge_compute_s = 0.0;
  double upload_s = 0.0;
  double cloud_compute_s = 0.0;
  double download_s = 0.0;
  std::int64_t steps = 0;
  std::int64_t samples = 0;

  // Means per step, the slowest stage and the samples/s it allows; `achieved` is the
  // run's samples/s. Empty without steps.
  std::optional<telemetry::PipelineBound> bound(double achieved_samples_per_second) const;
};

}  // namespace tandem::pipeline

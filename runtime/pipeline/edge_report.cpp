#include "runtime/pipeline/edge_report.h"

#include <fmt/format.h>

#include <utility>

namespace tandem::pipeline {

void writeTimeline(const std::string& output_dir, const std::vector<LinkSample>& timeline) {
  std::string csv = "step,seconds,epoch,split,codec,loss,uplink_mbps,downlink_mbps,rtt_ms\n";
  for (const auto& t : timeline) {
    csv += fmt::format("{},{:.4f},{},{},{},{:.5f},{:.3f},{:.3f},{:.3f}\n", t.step, t.seconds, t.epoch + 1, t.split,
                       t.codec, t.loss, t.uplink_bps / 1e6, t.downlink_bps / 1e6, t.rtt_seconds * 1e3);
  }
  telemetry::writeFileAtomically(output_dir + "/timeline-edge.csv", csv);
}

std::optional<telemetry::PipelineBound> PipelineSums::bound(double achieved_samples_per_second) const {
  if (steps <= 0) return std::nullopt;
  const double n = static_cast<double>(steps);
  telemetry::PipelineBound p;
  p.edge_compute_s = edge_compute_s / n;
  p.cloud_compute_s = cloud_compute_s / n;
  p.upload_s = upload_s / n;
  p.download_s = download_s / n;
  const std::pair<double, const char*> stages[] = {{p.edge_compute_s, "edge compute"},
                                                   {p.upload_s, "upload"},
                                                   {p.cloud_compute_s, "cloud compute"},
                                                   {p.download_s, "download"}};
  const auto* slowest = &stages[0];
  for (const auto& stage : stages) {
    if (stage.first > slowest->first) slowest = &stage;
  }
  p.bottleneck = slowest->second;
  const double samples_per_step = static_cast<double>(samples) / n;
  p.bound_samples_per_second = slowest->first > 0 ? samples_per_step / slowest->first : 0.0;
  p.achieved_ratio = p.bound_samples_per_second > 0 ? achieved_samples_per_second / p.bound_samples_per_second : 0.0;
  return p;
}

}  // namespace tandem::pipeline

#include "runtime/session/admission.h"

namespace tandem::session {

std::optional<Refusal> admissionRefusal(const config::LimitsConfig& limits, const SessionCounts& counts) {
  if (counts.total >= static_cast<std::size_t>(limits.max_sessions)) {
    return Refusal{"sessions",
                   "the cloud serves " + std::to_string(counts.total) + " sessions, its limit (limits.max_sessions)"};
  }
  if (counts.same_peer >= limits.max_sessions_per_peer) {
    return Refusal{"sessions_per_peer", "this peer has " + std::to_string(counts.same_peer) +
                                            " sessions, the limit per peer (limits.max_sessions_per_peer)"};
  }
  if (counts.pending >= limits.max_pending_sessions) {
    return Refusal{"pending_sessions",
                   std::to_string(counts.pending) + " sessions are starting, the limit (limits.max_pending_sessions)"};
  }
  return std::nullopt;
}

double sessionModelBytes(const models::StageModel& model, const config::OptimizerConfig& optimizer) {
  double bytes = 0.0;
  for (const auto& t : model.state(0, model.numStages())) bytes += static_cast<double>(t.nbytes());
  const double state_copies =
      optimizer.name == config::OptimizerKind::kAdam ? 2.0 : (optimizer.momentum > 0 ? 1.0 : 0.0);
  return bytes * (1.0 + state_copies);
}

}  // namespace tandem::session

#pragma once
// Whether the cloud can take one more session (limits.max_sessions,
// limits.max_sessions_per_peer, limits.max_pending_sessions), and what one session costs
// in memory before it has done anything. Decided before anything is allocated for the
// peer that asks.

#include <cstddef>
#include <optional>
#include <string>

#include "runtime/config/config.h"
#include "runtime/models/stage_model.h"

namespace tandem::session {

// The sessions there are, as far as the limits are concerned.
struct SessionCounts {
  std::size_t total = 0;
  int same_peer = 0;  // with the asking peer's origin (CURVE key, or address)
  int pending = 0;    // welcomed, no epoch begun yet
};

struct Refusal {
  const char* limit;  // the tandem_limit_hits_total label
  std::string text;   // what the peer is told (numbers and key names only)
};

// Why one more session cannot be admitted now, or nullopt.
std::optional<Refusal> admissionRefusal(const config::LimitsConfig& limits, const SessionCounts& counts);

// Bytes a session's own copy of `model` and its optimizer state take (an estimate:
// momentum is one more copy of the parameters, Adam two).
double sessionModelBytes(const models::StageModel& model, const config::OptimizerConfig& optimizer);

}  // namespace tandem::session

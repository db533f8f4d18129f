#pragma once
// The cloud's half of the handshake, apart from building the session: whether an edge's
// Hello can train with this cloud's config, and which checkpoint a resumed run continues
// from.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/checkpoint/checkpoint.h"
#include "runtime/config/config.h"
#include "runtime/models/stage_model.h"
#include "runtime/transport/protocol.h"

namespace tandem::session {

// What makes `hello` unable to train with `config` and `model` (the cloud's), in words an
// operator can act on ("batch size: edge 64, cloud 32"); empty when it can. `resuming`: a
// common checkpoint was found (its split wins over the configured one).
std::vector<std::string> handshakeDifferences(const transport::Hello& hello, const config::Config& config,
                                              const models::StageModel& model, bool resuming);

// The cloud's checkpoint store for the run `hello` names (null when checkpoints are off),
// and the newest checkpoint it holds that the edge holds too (when the edge asks to resume).
struct ResumeChoice {
  std::unique_ptr<checkpoint::CheckpointStore> store;
  std::optional<checkpoint::Checkpoint> checkpoint;
};
ResumeChoice chooseResume(const transport::Hello& hello, const config::Config& config);

// A fresh session id: random (a restarted cloud does not reuse the ids of its previous
// life) and never 0, which means "no session" on the wire.
std::uint64_t newSessionId();

}  // namespace tandem::session

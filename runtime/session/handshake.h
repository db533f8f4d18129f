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

// One reason `hello` cannot train with this cloud, in words an operator can act on.
struct Difference {
  // With the cloud's value ("batch size: edge 64, cloud 32"): for the cloud's log, and for
  // an authenticated (CURVE) edge.
  std::string full;
  // With the edge's value only ("batch size: edge 64 differs from the cloud's"): what an
  // unauthenticated peer is told, so that a refusal never hands it what it would need to
  // make its next Hello valid (the architecture fingerprint above all).
  std::string for_peer;
};

// What makes `hello` unable to train with `config` (the cloud's), whose model has
// `fingerprint` and `num_stages`; empty when it can. `resuming`: a common checkpoint was
// found (its split wins over the configured one).
std::vector<Difference> handshakeDifferences(const transport::Hello& hello, const config::Config& config,
                                             const std::string& fingerprint, int num_stages, bool resuming);

// "handshake refused: a; b" from the differences, in the words for `authenticated` peers
// or the others.
std::string refusalText(const std::vector<Difference>& differences, bool authenticated);

// An edge's run name as one directory name that cannot climb out of its parent: every
// character but letters, digits, '-', '_' and '.' becomes '_', and a name of dots only (or
// none) becomes underscores.
std::string directoryName(const std::string& run_name);

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

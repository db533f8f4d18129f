#pragma once
// Hostile and broken peers, as an operator's tool (tandem_attack) and as what the
// hostile-peer tests run against a live cloud_trainer. Each attack talks to the cloud over
// its real wire protocol (runtime/transport/protocol.h), from its own ZeroMQ DEALER
// sockets or, for slow-drip, raw TCP speaking ZMTP 3.0 by hand, and is bounded by a
// message count and a time budget: an attack always ends by itself.
//
// Threading: runAttack() runs on the caller's thread (junk starts three more and joins
// them); `stop` may be set from any thread (a signal handler) and ends the attack early.

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/config/config.h"
#include "runtime/transport/protocol.h"

namespace tandem::attack {

// What the attacks know about the cloud they target, derived from the cloud's config the
// same way the edge derives its Hello (see makeTarget in target.cpp).
struct Target {
  std::string endpoint;                  // tcp://HOST:PORT
  transport::Hello hello;                // a Hello this cloud accepts
  std::vector<std::int64_t> activation;  // shape of one sample at the split point
  std::int64_t num_classes = 10;         // labels must be below this
  std::int64_t batch_size = 1;           // the largest batch the cloud accepts
  std::uint64_t max_message_bytes = 0;   // link.max_message_mb in bytes
  // Connect from this local address (e.g. 127.0.0.2: another peer than a good edge on
  // 127.0.0.1, as the cloud's per-peer limits see it); empty: the system's choice.
  std::string source;
};

// The target a cloud with `config` presents at `endpoint`: builds the model (LibTorch) for
// its fingerprint and boundary shapes. Throws ConfigError as the trainers do.
Target makeTarget(const config::Config& config, const std::string& endpoint);

// What bounds an attack: whichever comes first. count 0 takes the attack's default.
struct Budget {
  std::int64_t count = 0;
  double seconds = 30.0;
};

// What an attack did, for its summary line.
struct Report {
  std::uint64_t sent = 0;           // messages (slow-drip: bytes) sent
  std::uint64_t replies = 0;        // messages received back (slow-drip: greetings received)
  std::uint64_t errors = 0;         // Error replies (slow-drip: connections the cloud closed)
  std::uint64_t failed_sends = 0;   // sends that could not be queued within the send timeout
  bool leaked_fingerprint = false;  // an Error reply contained the cloud's fingerprint
  double seconds = 0.0;
};

// The attack names, in the order --help lists them.
const std::vector<std::string>& attackNames();

// One line describing `name` (for --help).
std::string describeAttack(const std::string& name);

// The count an attack uses when Budget::count is 0.
std::int64_t defaultCount(const std::string& name);

// Runs attack `name` against `target`; `corpus_dir` holds the protocol fuzz corpus (junk
// only; random frames when it is missing). Throws InvariantError for an unknown name and
// TransportError when the endpoint cannot be used.
Report runAttack(const std::string& name, const Target& target, const Budget& budget, const std::atomic<bool>& stop,
                 const std::string& corpus_dir);

// "tandem_attack: attack=NAME sent=N replies=N errors=N failed_sends=N
// leaked_fingerprint=0|1 seconds=S": one line that scripts and tests parse.
std::string summaryLine(const std::string& name, const Report& report);

}  // namespace tandem::attack

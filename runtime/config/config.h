#pragma once
// Typed, validated configuration. A YAML file (plus `--set key.path=value` overrides) is
// parsed once into these structs and handed down to constructors; nothing below the
// trainers' mains reads YAML or the environment. The key names are a contract
// (docs/design.md): extend, don't rename. Every key is described once, in the schema
// (runtime/config/schema.h): its type, default, allowed values and meaning; the parser,
// printConfig() and README.md's key table all follow it.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "runtime/config/enums.h"
#include "runtime/config/role.h"

namespace tandem::config {

struct RunConfig {
  std::string name = "tandem";
  std::uint64_t seed = 42;
  int epochs = 1;
  std::string output_dir;  // default: runs/<name>
  int threads = 0;         // LibTorch intra-op threads; 0: LibTorch's default
  double shutdown_grace_s = 30.0;  // after SIGINT/SIGTERM the process exits by then, whatever it waits for
};

struct SyntheticDataConfig {
  std::int64_t train_size = 2048;
  std::int64_t test_size = 512;
  std::int64_t channels = 1;
  std::int64_t height = 28;
  std::int64_t width = 28;
  std::int64_t num_classes = 10;
  double noise = 0.5;  // std of the Gaussian noise around each class prototype
};

// A deterministic part of the training split (the test split is never sharded): shards
// 0..count-1 of one (scheme, alpha, seed) are disjoint and together hold every sample.
struct ShardConfig {
  int index = 0;
  int count = 1;  // 1: the whole split
  ShardScheme scheme = ShardScheme::kIid;
  double alpha = 0.5;      // dirichlet: concentration (smaller: more skewed labels)
  std::uint64_t seed = 0;  // the cut, the same on every edge of a fleet (not run.seed)
};

struct DataConfig {
  std::string dataset = "fashion_mnist";  // fashion_mnist | cifar10 | synthetic
  std::string path;                       // default depends on the dataset
  std::int64_t batch_size = 64;
  std::int64_t test_batch_size = 0;    // 0: same as batch_size
  std::int64_t max_train_batches = 0;  // 0: the whole split
  std::int64_t max_test_batches = 0;   // 0: the whole split
  int prefetch = 4;                    // batches prepared ahead by the loader thread
  bool shuffle = true;
  bool normalize = true;
  SyntheticDataConfig synthetic;
  ShardConfig shard;
};

struct ModelConfig {
  std::string name = "cnn";
  std::int64_t num_classes = 0;  // 0: taken from the dataset
};

struct ScheduleConfig {
  LrSchedule name = LrSchedule::kNone;
  int step_size = 1;          // step: epochs between decays
  double gamma = 0.1;         // step, multistep: decay factor
  std::vector<int> milestones;  // multistep: epochs (0-based) at which to decay
  double min_lr = 0.0;        // cosine: floor
  int warmup_epochs = 0;      // linear warm-up before the schedule
};

struct OptimizerConfig {
  OptimizerKind name = OptimizerKind::kSgd;
  double lr = 0.05;
  double momentum = 0.9;
  bool nesterov = false;
  double weight_decay = 0.0;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  ScheduleConfig schedule;
};

struct SplitConfig {
  bool automatic = false;  // `point: auto`
  int point = 2;           // stages [0, point) run on the edge
  int staleness = 0;       // K: batches the edge may run ahead of the gradients
  std::map<int, int> staleness_schedule;  // epoch → K from that epoch on
  // K grows from 0 to its value over the first this many training steps of a run (one
  // more batch in flight every warmup/K steps): stale gradients hurt most while the loss
  // falls fastest. 0: K from the first step. 500, not 100: with 100, a slow link kept one
  // gradient stale from step 25 on and `cnn` ended 20 points below K = 0 after 80 steps
  // under every compensation; at 600 steps the gap was 2.0 points with 100, 0.3 with 600
  // (docs/stability.md).
  int staleness_warmup_steps = 500;
  Replay replay = Replay::kRecompute;
  // How the edge tempers a gradient that is s updates stale: none; lr (step × 1/(1+s));
  // momentum (SGD momentum μ → max(0, μ − s/(s+1)): asynchrony already adds about that
  // much implicit momentum).
  Compensation compensation = Compensation::kMomentum;

  // K in force during `epoch` (0-based), after the schedule.
  int stalenessAt(int epoch) const;
};

// Codec specs (compression/registry.h), checked against the codec registry while parsing.
// "none" is raw float32 bytes (the wire calls it "raw"; config accepts only "none").
struct CompressionConfig {
  std::string uplink = "none";
  std::string downlink = "none";
  bool error_feedback = false;
};

struct SchedulerConfig {
  bool enabled = false;           // profile, estimate the link and plan (advice only unless split.point: auto)
  double memory_budget_mb = 0.0;  // 0: no budget
  std::vector<std::string> codecs{"none"};  // uplink codecs the planner may choose
  double hysteresis = 0.10;        // relative gain needed to change the split or codec
  double replan_threshold = 0.30;  // re-plan mid-epoch when the bandwidth estimate moves this much
  std::string profile_dir = "runs/profiles";
  int profile_iterations = 5;
  std::map<int, int> split_schedule;  // epoch → split point, forced (experiments, tests)
  std::int64_t probe_bytes = 256 * 1024;  // largest bandwidth probe

  // Profiling, telemetry and planning are on.
  bool active(const SplitConfig& split) const { return enabled || split.automatic || !split_schedule.empty(); }
};

struct EmulateConfig {
  double uplink_mbps = 0.0;  // 0: not shaped
  double downlink_mbps = 0.0;
  double rtt_ms = 0.0;
  std::string trace;  // CSV: time → uplink/downlink Mbit/s
  // Outages: [start_s, duration_s] pairs (from each trainer's start) during which the link
  // drops every message, heartbeats included.
  std::vector<std::pair<double, double>> outages;

  bool active() const { return uplink_mbps > 0 || downlink_mbps > 0 || rtt_ms > 0 || !trace.empty(); }
};

struct LinkConfig {
  // tcp://HOST:PORT (PORT 1-65535, or * for one the system picks; HOST may be *),
  // ipc://PATH or inproc://NAME; checked while parsing.
  std::string endpoint = "tcp://127.0.0.1:5555";
  double connect_timeout_s = 30.0;   // edge: give up if the cloud is not up by then
  double heartbeat_interval_s = 1.0;
  double peer_timeout_s = 15.0;      // peer considered gone after this much silence
  double accept_timeout_s = 0.0;     // cloud: give up if no edge arrives by then; 0: wait forever
  double reconnect_grace_s = 30.0;   // a silent peer is given this long after peer_timeout_s to come back
  double max_message_mb = 256.0;     // largest tensor accepted from the network
  EmulateConfig emulate;
};

// Encryption and authentication of the edge–cloud link (ZeroMQ CURVE). `curve` is the
// default; plaintext must be asked for, and the trainers warn when it is used on a
// non-loopback endpoint.
struct SecurityConfig {
  SecurityMode mode = SecurityMode::kCurve;
  std::string key_file;              // this side's key pair (tandem_keygen NAME.key, mode 0600)
  std::string cloud_public_key_file;  // edge: the cloud's NAME.pub
  std::string authorized_keys;       // cloud: file listing the edge public keys it accepts
};

struct CheckpointConfig {
  bool enabled = true;
  std::string dir;          // default: <run.output_dir>/checkpoints
  std::int64_t every_steps = 0;  // also every this many steps (0: at epoch ends only)
  int keep = 3;
};

struct MetricsConfig {
  int port = 0;  // 0: off
  std::string bind_address = "127.0.0.1";
};

// What one peer, or all of them, may cost the cloud (see docs/design.md, "Hostile peers").
struct LimitsConfig {
  int max_sessions = 32;                // sessions at once
  int max_sessions_per_peer = 8;        // per CURVE key, or per address in plaintext
  int max_pending_sessions = 8;         // welcomed but no epoch begun yet
  double session_memory_mb = 1024.0;    // a session's stages, optimizer state and reply cache
  double peer_messages_per_s = 5000.0;  // per connection; more are dropped (0: no limit)
  int peer_queue_messages = 256;        // messages waiting for one peer that does not read; more are dropped
  double peer_queue_mb = 64.0;          // and at most this much
  int log_burst = 10;                   // full log lines per peer and reason, then a counter line
  double log_interval_s = 10.0;         // how often a counter line is written
};

// The divergence guard (docs/design.md, "Divergence guard").
struct GuardConfig {
  double spike_factor = 4.0;      // a loss above factor × the recent median (and 2.0 above it) diverged; 0: off
  int window = 20;                // training steps in that median
  int snapshot_every_steps = 20;  // in-memory snapshots on both sides, also at each epoch's start
  int max_rollbacks = 4;          // one more divergence stops the run (exit 1)
  double lr_factor = 0.5;         // the last resort of a rollback: learning rate × this
  // Fault injection for tests and drills: the gradients of this training step (0-based,
  // counted over the run) are made NaN on `inject_nan_on`; -1: never.
  std::int64_t inject_nan_step = -1;
  FaultSide inject_nan_on = FaultSide::kNone;
};

// Many edges training one model through one cloud (docs/design.md, "Fleets"). Cloud-side
// keys; the cloud tells each edge the averaging interval in the handshake.
struct FleetConfig {
  FleetMode mode = FleetMode::kOff;
  std::int64_t average_every = 50;   // training steps of an edge between averaging rounds; 0: at epoch ends only
  int min_edges = 1;                 // edges that must be there before any trains
  double round_timeout_s = 30.0;     // a round goes ahead without the edges that have not come by then
  std::int64_t max_cloud_batch = 0;  // samples in one cross-edge cloud step (0: 4 × data.batch_size)
  double gather_ms = 0.0;            // how long a batch waits for other edges' batches (0: only those already there)
};

struct LogConfig {
  LogLevel level = LogLevel::kInfo;
  LogFormat format = LogFormat::kText;
};

struct Config {
  RunConfig run;
  DataConfig data;
  ModelConfig model;
  OptimizerConfig optimizer;
  SplitConfig split;
  CompressionConfig compression;
  SchedulerConfig scheduler;
  LinkConfig link;
  SecurityConfig security;
  CheckpointConfig checkpoint;
  MetricsConfig metrics;
  LimitsConfig limits;
  GuardConfig guard;
  FleetConfig fleet;
  LogConfig log;

  // Where the config came from (a file path, or a name given to parseConfig).
  std::string source;
  // "file:line" of every key that was set (or "--set key=value" for overrides); used to
  // point errors found after parsing (unknown model, split beyond the model) at the key.
  std::map<std::string, std::string> locations;

  // "configs/x.yaml:12" for a key read from the file, "--set k=v" for an override,
  // "configs/x.yaml" (default value) otherwise.
  std::string locate(const std::string& key_path) const;
};

// Reads `path`, applies `overrides` ("key.path=value", YAML syntax for the value) and
// validates every key. Throws ConfigError naming the file, the key path and the line (or
// the `--set key=value` argument for a key given on the command line). Duplicate keys, a
// directory, an unreadable file and a file without any key are config errors too.
Config loadConfig(const std::string& path, const std::vector<std::string>& overrides = {});

// The same from YAML text; `source` names it in errors.
Config parseConfig(const std::string& yaml_text, const std::string& source,
                   const std::vector<std::string>& overrides = {});

// The fully resolved config (defaults included, derived defaults filled in) as YAML that
// parseConfig/loadConfig accept back and that parses to an equal config. Keys follow the
// schema's order; an optional string left unset is printed as a comment.
std::string printConfig(const Config& config);

// Throws ConfigError "<location>: <key_path>: <message>" for a key found bad after parsing.
[[noreturn]] void failAt(const Config& config, const std::string& key_path, const std::string& message);

}  // namespace tandem::config

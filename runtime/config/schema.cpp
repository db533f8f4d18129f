#include "runtime/config/schema.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <limits>
#include <utility>

#include "compression/registry.h"
#include "runtime/common/error.h"
#include "runtime/common/strings.h"

namespace tandem::config {
namespace {

using Getter = std::function<std::string(const Config&)>;

// YAML text of values. Numbers use the shortest text that reads back to the same double.
std::string yamlNumber(double v) { return fmt::format("{}", v); }
template <typename Int>
std::string yamlInt(Int v) {
  return std::to_string(v);
}
std::string yamlBool(bool v) { return v ? "true" : "false"; }
template <typename E>
std::string yamlEnum(E v) {
  return toString(v);
}

std::string yamlIntList(const std::vector<int>& values) {
  std::vector<std::string> items;
  for (int v : values) items.push_back(std::to_string(v));
  return "[" + join(items) + "]";
}

std::string yamlStringList(const std::vector<std::string>& values) {
  std::vector<std::string> items;
  for (const auto& v : values) items.push_back(yamlQuote(v));
  return "[" + join(items) + "]";
}

std::string yamlIntMap(const std::map<int, int>& values) {
  std::vector<std::string> items;
  for (const auto& [k, v] : values) items.push_back(std::to_string(k) + ": " + std::to_string(v));
  return "{" + join(items) + "}";
}

std::string yamlPairList(const std::vector<std::pair<double, double>>& values) {
  std::vector<std::string> items;
  for (const auto& [a, b] : values) items.push_back("[" + yamlNumber(a) + ", " + yamlNumber(b) + "]");
  return "[" + join(items) + "]";
}

// Builds the table one key at a time; the setters refine the key added last.
class Keys {
 public:
  Keys& add(std::string path, KeyType type, Getter value, std::string description) {
    KeySpec k;
    k.path = std::move(path);
    k.type = type;
    k.value = std::move(value);
    k.description = std::move(description);
    keys_.push_back(std::move(k));
    return *this;
  }
  Keys& range(std::optional<double> min, std::optional<double> max) {
    keys_.back().min = min;
    keys_.back().max = max;
    return *this;
  }
  Keys& above(double min, std::optional<double> max) {  // min exclusive
    range(min, max);
    keys_.back().min_exclusive = true;
    return *this;
  }
  Keys& choices(std::vector<std::string> values) {
    keys_.back().choices = std::move(values);
    return *this;
  }
  Keys& optional() {
    keys_.back().optional = true;
    return *this;
  }
  Keys& defaultNote(std::string note) {
    keys_.back().default_note = std::move(note);
    return *this;
  }
  std::vector<KeySpec> take() { return std::move(keys_); }

 private:
  std::vector<KeySpec> keys_;
};

constexpr double kEpochs = 100000;
constexpr double kBatches = static_cast<double>(std::int64_t{1} << 40);

std::vector<KeySpec> buildSchema() {
  using T = KeyType;
  Keys k;
  // run
  k.add(
      "run.name", T::kString, [](const Config& c) { return yamlQuote(c.run.name); }, "run name");
  k.add(
       "run.seed", T::kInteger, [](const Config& c) { return yamlInt(c.run.seed); },
       "seeds initialisation and data order")
      .range(0, std::nullopt);
  k.add(
       "run.epochs", T::kInteger, [](const Config& c) { return yamlInt(c.run.epochs); }, "epochs to train")
      .range(1, kEpochs);
  k.add(
       "run.output_dir", T::kString, [](const Config& c) { return yamlQuote(c.run.output_dir); },
       "where summaries, `config-<role>.yaml` and checkpoints go")
      .defaultNote("`runs/<run.name>`");
  k.add(
       "run.threads", T::kInteger, [](const Config& c) { return yamlInt(c.run.threads); },
       "LibTorch intra-op threads (0: LibTorch's default)")
      .range(0, 1024);
  k.add(
       "run.shutdown_grace_s", T::kNumber, [](const Config& c) { return yamlNumber(c.run.shutdown_grace_s); },
       "after SIGINT/SIGTERM the process exits within this long, whatever it is waiting for")
      .above(0, 86400);
  // data
  k.add(
       "data.dataset", T::kChoice, [](const Config& c) { return yamlQuote(c.data.dataset); },
       "dataset (`cifar10`: the binary version)")
      .choices({"fashion_mnist", "cifar10", "synthetic"});
  k.add(
       "data.path", T::kString, [](const Config& c) { return yamlQuote(c.data.path); }, "dataset directory")
      .optional()
      .defaultNote(
          "fashion_mnist: `/usr/share/datasets/fashion-mnist`, cifar10: `data/cifar-10-batches-bin`, synthetic: none");
  k.add(
       "data.batch_size", T::kInteger, [](const Config& c) { return yamlInt(c.data.batch_size); },
       "training batch size")
      .range(1, 65536);
  k.add(
       "data.test_batch_size", T::kInteger, [](const Config& c) { return yamlInt(c.data.test_batch_size); },
       "evaluation batch size (0: `data.batch_size`)")
      .range(0, 65536)
      .defaultNote("`data.batch_size`");
  k.add(
       "data.max_train_batches", T::kInteger, [](const Config& c) { return yamlInt(c.data.max_train_batches); },
       "cap on training batches per epoch (0: all)")
      .range(0, kBatches);
  k.add(
       "data.max_test_batches", T::kInteger, [](const Config& c) { return yamlInt(c.data.max_test_batches); },
       "cap on evaluation batches (0: all)")
      .range(0, kBatches);
  k.add(
       "data.prefetch", T::kInteger, [](const Config& c) { return yamlInt(c.data.prefetch); },
       "batches prepared ahead by the loader thread")
      .range(1, 1024);
  k.add(
      "data.shuffle", T::kBool, [](const Config& c) { return yamlBool(c.data.shuffle); }, "seeded shuffling");
  k.add(
      "data.normalize", T::kBool, [](const Config& c) { return yamlBool(c.data.normalize); },
      "per-channel normalisation");
  k.add(
       "data.synthetic.train_size", T::kInteger, [](const Config& c) { return yamlInt(c.data.synthetic.train_size); },
       "synthetic: training samples")
      .range(1, 10'000'000);
  k.add(
       "data.synthetic.test_size", T::kInteger, [](const Config& c) { return yamlInt(c.data.synthetic.test_size); },
       "synthetic: test samples")
      .range(1, 10'000'000);
  k.add(
       "data.synthetic.channels", T::kInteger, [](const Config& c) { return yamlInt(c.data.synthetic.channels); },
       "synthetic: image channels")
      .range(1, 64);
  k.add(
       "data.synthetic.height", T::kInteger, [](const Config& c) { return yamlInt(c.data.synthetic.height); },
       "synthetic: image height")
      .range(1, 1024);
  k.add(
       "data.synthetic.width", T::kInteger, [](const Config& c) { return yamlInt(c.data.synthetic.width); },
       "synthetic: image width")
      .range(1, 1024);
  k.add(
       "data.synthetic.num_classes", T::kInteger, [](const Config& c) { return yamlInt(c.data.synthetic.num_classes); },
       "synthetic: classes")
      .range(2, 100000);
  k.add(
       "data.synthetic.noise", T::kNumber, [](const Config& c) { return yamlNumber(c.data.synthetic.noise); },
       "synthetic: std of the Gaussian noise around each class prototype")
      .range(0, 1e6);
  k.add(
       "data.shard.index", T::kInteger, [](const Config& c) { return yamlInt(c.data.shard.index); },
       "which shard of the training split this edge trains on (0-based, below `data.shard.count`)")
      .range(0, 65535);
  k.add(
       "data.shard.count", T::kInteger, [](const Config& c) { return yamlInt(c.data.shard.count); },
       "disjoint shards the training split is cut into (1: the whole split)")
      .range(1, 65536);
  k.add(
       "data.shard.scheme", T::kChoice, [](const Config& c) { return yamlEnum(c.data.shard.scheme); },
       "`iid`: a seeded permutation cut into equal parts; `dirichlet`: each class shared out in proportions drawn "
       "from Dirichlet(`data.shard.alpha`)")
      .choices(enumNames<ShardScheme>());
  k.add(
       "data.shard.alpha", T::kNumber, [](const Config& c) { return yamlNumber(c.data.shard.alpha); },
       "dirichlet: concentration; smaller is more skewed (0.5: a few classes dominate each shard)")
      .above(0, 1e6);
  k.add(
       "data.shard.seed", T::kInteger, [](const Config& c) { return yamlInt(c.data.shard.seed); },
       "seeds the cut; every edge of a fleet must use the same one (shards are then disjoint)")
      .range(0, std::nullopt);
  // model
  k.add(
      "model.name", T::kString, [](const Config& c) { return yamlQuote(c.model.name); },
      "zoo model: `mlp`, `cnn`, `resnet18`, `vgg11`, `mobilenetv2`");
  k.add(
       "model.num_classes", T::kInteger, [](const Config& c) { return yamlInt(c.model.num_classes); },
       "output classes (0: the dataset's)")
      .range(0, 1000000);
  // optimizer
  k.add(
       "optimizer.name", T::kChoice, [](const Config& c) { return yamlEnum(c.optimizer.name); }, "optimizer")
      .choices(enumNames<OptimizerKind>());
  k.add(
       "optimizer.lr", T::kNumber, [](const Config& c) { return yamlNumber(c.optimizer.lr); }, "learning rate")
      .above(0, 1e3);
  k.add(
       "optimizer.momentum", T::kNumber, [](const Config& c) { return yamlNumber(c.optimizer.momentum); },
       "SGD momentum")
      .range(0, 0.999999);
  k.add(
      "optimizer.nesterov", T::kBool, [](const Config& c) { return yamlBool(c.optimizer.nesterov); },
      "SGD: Nesterov momentum (needs `momentum` > 0)");
  k.add(
       "optimizer.weight_decay", T::kNumber, [](const Config& c) { return yamlNumber(c.optimizer.weight_decay); },
       "L2 weight decay (SGD and Adam)")
      .range(0, 1);
  k.add(
       "optimizer.beta1", T::kNumber, [](const Config& c) { return yamlNumber(c.optimizer.beta1); }, "Adam β1")
      .range(0, 0.999999);
  k.add(
       "optimizer.beta2", T::kNumber, [](const Config& c) { return yamlNumber(c.optimizer.beta2); }, "Adam β2")
      .range(0, 0.999999999);
  k.add(
       "optimizer.eps", T::kNumber, [](const Config& c) { return yamlNumber(c.optimizer.eps); }, "Adam ε")
      .above(0, 1);
  k.add(
       "optimizer.schedule.name", T::kChoice, [](const Config& c) { return yamlEnum(c.optimizer.schedule.name); },
       "learning-rate schedule; `optimizer.schedule: cosine` is short for `{name: cosine}`")
      .choices(enumNames<LrSchedule>());
  k.add(
       "optimizer.schedule.step_size", T::kInteger,
       [](const Config& c) { return yamlInt(c.optimizer.schedule.step_size); }, "step: epochs between decays")
      .range(1, kEpochs);
  k.add(
       "optimizer.schedule.gamma", T::kNumber, [](const Config& c) { return yamlNumber(c.optimizer.schedule.gamma); },
       "step, multistep: decay factor")
      .above(0, 1);
  k.add(
       "optimizer.schedule.milestones", T::kIntegerList,
       [](const Config& c) { return yamlIntList(c.optimizer.schedule.milestones); },
       "multistep: epochs (0-based, strictly increasing) at which to decay")
      .range(0, kEpochs);
  k.add(
       "optimizer.schedule.min_lr", T::kNumber, [](const Config& c) { return yamlNumber(c.optimizer.schedule.min_lr); },
       "cosine: floor")
      .range(0, 1e3);
  k.add(
       "optimizer.schedule.warmup_epochs", T::kInteger,
       [](const Config& c) { return yamlInt(c.optimizer.schedule.warmup_epochs); },
       "linear warm-up before the schedule")
      .range(0, kEpochs);
  // split
  k.add(
       "split.point", T::kSplitPoint,
       [](const Config& c) { return c.split.automatic ? std::string("auto") : yamlInt(c.split.point); },
       "stages `[0, point)` run on the edge; `auto` lets the planner choose")
      .range(0, 10000);
  k.add(
       "split.staleness", T::kInteger, [](const Config& c) { return yamlInt(c.split.staleness); },
       "K: batches the edge may run ahead of their gradients")
      .range(0, 64);
  k.add(
       "split.staleness_schedule", T::kEpochMap, [](const Config& c) { return yamlIntMap(c.split.staleness_schedule); },
       "epoch → K, e.g. `{0: 0, 2: 4}`")
      .range(0, 64);
  k.add(
       "split.staleness_warmup_steps", T::kInteger,
       [](const Config& c) { return yamlInt(c.split.staleness_warmup_steps); },
       "K grows from 0 to its value over the first this many training steps of a run (0: K from the start)")
      .range(0, 100000000);
  k.add(
       "split.replay", T::kChoice, [](const Config& c) { return yamlEnum(c.split.replay); },
       "`recompute`: the edge re-runs the forward of a late batch; `retain`: it keeps the graph")
      .choices(enumNames<Replay>());
  k.add(
       "split.compensation", T::kChoice, [](const Config& c) { return yamlEnum(c.split.compensation); },
       "how the edge tempers a gradient s updates stale: `momentum` (SGD momentum μ → max(0, μ − s/(s+1))), "
       "`lr` (step × 1/(1+s)), `none`")
      .choices(enumNames<Compensation>());
  // compression
  k.add(
      "compression.uplink", T::kCodec, [](const Config& c) { return yamlQuote(c.compression.uplink); },
      "codec of the activations (`none`: raw float32 bytes)");
  k.add(
      "compression.downlink", T::kCodec, [](const Config& c) { return yamlQuote(c.compression.downlink); },
      "codec of the gradients (`none`: raw float32 bytes)");
  k.add(
      "compression.error_feedback", T::kBool, [](const Config& c) { return yamlBool(c.compression.error_feedback); },
      "correct gradients for the uplink quantisation error");
  // scheduler
  k.add(
      "scheduler.enabled", T::kBool, [](const Config& c) { return yamlBool(c.scheduler.enabled); },
      "profile, estimate the link, log the planner's advice (`split.point: auto` or a `split_schedule` turn "
      "it on too)");
  k.add(
       "scheduler.memory_budget_mb", T::kNumber,
       [](const Config& c) { return yamlNumber(c.scheduler.memory_budget_mb); },
       "the edge's training memory the planner may use (0: no budget)")
      .range(0, 1e9);
  k.add(
      "scheduler.codecs", T::kCodecList, [](const Config& c) { return yamlStringList(c.scheduler.codecs); },
      "uplink codecs the planner may pick (checked even when the scheduler is off)");
  k.add(
       "scheduler.hysteresis", T::kNumber, [](const Config& c) { return yamlNumber(c.scheduler.hysteresis); },
       "relative gain needed before changing split or codec")
      .range(0, 1);
  k.add(
       "scheduler.replan_threshold", T::kNumber,
       [](const Config& c) { return yamlNumber(c.scheduler.replan_threshold); },
       "re-plan mid-epoch when the bandwidth estimate moves this much")
      .above(0, 100);
  k.add(
      "scheduler.profile_dir", T::kString, [](const Config& c) { return yamlQuote(c.scheduler.profile_dir); },
      "stage-profile cache");
  k.add(
       "scheduler.profile_iterations", T::kInteger,
       [](const Config& c) { return yamlInt(c.scheduler.profile_iterations); }, "repetitions per stage profile")
      .range(1, 1000);
  k.add(
       "scheduler.split_schedule", T::kEpochMap, [](const Config& c) { return yamlIntMap(c.scheduler.split_schedule); },
       "epoch → split point, forced (experiments)")
      .range(0, 10000);
  k.add(
       "scheduler.probe_bytes", T::kInteger, [](const Config& c) { return yamlInt(c.scheduler.probe_bytes); },
       "largest bandwidth probe")
      .range(1024, static_cast<double>(std::int64_t{64} << 20));
  // link
  k.add(
      "link.endpoint", T::kEndpoint, [](const Config& c) { return yamlQuote(c.link.endpoint); },
      "the cloud binds, the edge connects");
  k.add(
       "link.connect_timeout_s", T::kNumber, [](const Config& c) { return yamlNumber(c.link.connect_timeout_s); },
       "the edge gives up when the cloud is not up by then")
      .above(0, 86400);
  k.add(
       "link.heartbeat_interval_s", T::kNumber, [](const Config& c) { return yamlNumber(c.link.heartbeat_interval_s); },
       "heartbeat period")
      .above(0, 3600);
  k.add(
       "link.peer_timeout_s", T::kNumber, [](const Config& c) { return yamlNumber(c.link.peer_timeout_s); },
       "a peer silent this long is considered gone (> `heartbeat_interval_s`)")
      .above(0, 86400);
  k.add(
       "link.accept_timeout_s", T::kNumber, [](const Config& c) { return yamlNumber(c.link.accept_timeout_s); },
       "the cloud gives up when no edge arrives by then (0: wait forever)")
      .range(0, 1e7);
  k.add(
       "link.reconnect_grace_s", T::kNumber, [](const Config& c) { return yamlNumber(c.link.reconnect_grace_s); },
       "a peer silent for `peer_timeout_s` gets this much longer to come back before the run ends")
      .range(0, 86400);
  k.add(
       "link.max_message_mb", T::kNumber, [](const Config& c) { return yamlNumber(c.link.max_message_mb); },
       "largest tensor accepted from the network")
      .above(0, 65536);
  k.add(
       "link.emulate.uplink_mbps", T::kNumber, [](const Config& c) { return yamlNumber(c.link.emulate.uplink_mbps); },
       "emulated uplink bandwidth (0: not shaped; each side shapes what it sends)")
      .range(0, 1e6);
  k.add(
       "link.emulate.downlink_mbps", T::kNumber,
       [](const Config& c) { return yamlNumber(c.link.emulate.downlink_mbps); },
       "emulated downlink bandwidth (0: not shaped)")
      .range(0, 1e6);
  k.add(
       "link.emulate.rtt_ms", T::kNumber, [](const Config& c) { return yamlNumber(c.link.emulate.rtt_ms); },
       "emulated round-trip time (0: none)")
      .range(0, 1e6);
  k.add(
       "link.emulate.trace", T::kString, [](const Config& c) { return yamlQuote(c.link.emulate.trace); },
       "bandwidth trace CSV: time → uplink/downlink Mbit/s")
      .optional()
      .defaultNote("none");
  k.add(
      "link.emulate.outages", T::kOutageList, [](const Config& c) { return yamlPairList(c.link.emulate.outages); },
      "`[[start_s, duration_s], ...]`: the link drops every message, heartbeats too");
  // security
  k.add(
       "security.mode", T::kChoice, [](const Config& c) { return yamlEnum(c.security.mode); },
       "`curve` (encrypted, authenticated) or `plaintext` (must be explicit; warns off loopback)")
      .choices(enumNames<SecurityMode>());
  k.add(
       "security.key_file", T::kString, [](const Config& c) { return yamlQuote(c.security.key_file); },
       "this side's key pair (`tandem_keygen`, mode 0600)")
      .optional()
      .defaultNote("none");
  k.add(
       "security.cloud_public_key_file", T::kString,
       [](const Config& c) { return yamlQuote(c.security.cloud_public_key_file); }, "edge: the cloud's `.pub`")
      .optional()
      .defaultNote("none");
  k.add(
       "security.authorized_keys", T::kString, [](const Config& c) { return yamlQuote(c.security.authorized_keys); },
       "cloud: file listing the edge public keys it accepts")
      .optional()
      .defaultNote("none");
  // checkpoint
  k.add(
      "checkpoint.enabled", T::kBool, [](const Config& c) { return yamlBool(c.checkpoint.enabled); },
      "checkpoints of both sides");
  k.add(
       "checkpoint.dir", T::kString, [](const Config& c) { return yamlQuote(c.checkpoint.dir); },
       "where checkpoints go")
      .defaultNote("`<run.output_dir>/checkpoints`");
  k.add(
       "checkpoint.every_steps", T::kInteger, [](const Config& c) { return yamlInt(c.checkpoint.every_steps); },
       "also checkpoint every this many steps (0: at epoch ends only)")
      .range(0, kBatches);
  k.add(
       "checkpoint.keep", T::kInteger, [](const Config& c) { return yamlInt(c.checkpoint.keep); }, "checkpoints kept")
      .range(1, 1000);
  // limits
  k.add(
       "limits.max_sessions", T::kInteger, [](const Config& c) { return yamlInt(c.limits.max_sessions); },
       "cloud: sessions at once; a Hello beyond is refused as busy")
      .range(1, 100000);
  k.add(
       "limits.max_sessions_per_peer", T::kInteger,
       [](const Config& c) { return yamlInt(c.limits.max_sessions_per_peer); },
       "cloud: sessions at once per CURVE key (per address in plaintext)")
      .range(1, 100000);
  k.add(
       "limits.max_pending_sessions", T::kInteger,
       [](const Config& c) { return yamlInt(c.limits.max_pending_sessions); },
       "cloud: sessions welcomed that have not begun an epoch yet")
      .range(1, 100000);
  k.add(
       "limits.session_memory_mb", T::kNumber, [](const Config& c) { return yamlNumber(c.limits.session_memory_mb); },
       "cloud: memory of one session (its stages, optimizer state and cached replies)")
      .above(0, 1e7);
  k.add(
       "limits.peer_messages_per_s", T::kNumber,
       [](const Config& c) { return yamlNumber(c.limits.peer_messages_per_s); },
       "messages a peer may send per second; more are dropped (0: no limit)")
      .range(0, 1e9);
  k.add(
       "limits.peer_queue_messages", T::kInteger, [](const Config& c) { return yamlInt(c.limits.peer_queue_messages); },
       "cloud: messages waiting for one peer that does not read; more are dropped")
      .range(8, 1000000);
  k.add(
       "limits.peer_queue_mb", T::kNumber, [](const Config& c) { return yamlNumber(c.limits.peer_queue_mb); },
       "cloud: bytes waiting for one peer that does not read, at most; more are dropped")
      .above(0, 1e6);
  k.add(
       "limits.log_burst", T::kInteger, [](const Config& c) { return yamlInt(c.limits.log_burst); },
       "log lines a peer can cause per reason in full; then one counter line per interval")
      .range(1, 1000000);
  k.add(
       "limits.log_interval_s", T::kNumber, [](const Config& c) { return yamlNumber(c.limits.log_interval_s); },
       "how often the counter line of suppressed log lines is written")
      .above(0, 86400);
  // guard
  k.add(
       "guard.spike_factor", T::kNumber, [](const Config& c) { return yamlNumber(c.guard.spike_factor); },
       "a training loss above this × the median of the last `guard.window` (and 2.0 above it) counts as "
       "diverged; 0: only non-finite losses and gradients do")
      .range(0, 1e6);
  k.add(
       "guard.window", T::kInteger, [](const Config& c) { return yamlInt(c.guard.window); },
       "training steps in the recent loss level")
      .range(1, 100000);
  k.add(
       "guard.snapshot_every_steps", T::kInteger, [](const Config& c) { return yamlInt(c.guard.snapshot_every_steps); },
       "in-memory snapshots to roll back to, on both sides, every this many steps (and at each epoch's start)")
      .range(1, 1000000);
  k.add(
       "guard.max_rollbacks", T::kInteger, [](const Config& c) { return yamlInt(c.guard.max_rollbacks); },
       "rollbacks a run may make; one more divergence stops it with exit 1 (0: stop at the first)")
      .range(0, 1000);
  k.add(
       "guard.lr_factor", T::kNumber, [](const Config& c) { return yamlNumber(c.guard.lr_factor); },
       "a rollback with K already 0 and lossless codecs multiplies the learning rate by this")
      .range(0.001, 1);
  k.add(
       "guard.inject_nan_step", T::kInteger, [](const Config& c) { return yamlInt(c.guard.inject_nan_step); },
       "tests and drills: make the gradients of this training step (0-based, over the run) NaN on "
       "`guard.inject_nan_on`; -1: never")
      .range(-1, 1099511627776.0);
  k.add(
       "guard.inject_nan_on", T::kChoice, [](const Config& c) { return yamlEnum(c.guard.inject_nan_on); },
       "the side whose gradients `guard.inject_nan_step` poisons: `none`, `edge`, `cloud`")
      .choices(enumNames<FaultSide>());
  // metrics
  k.add(
       "metrics.port", T::kInteger, [](const Config& c) { return yamlInt(c.metrics.port); },
       "Prometheus endpoint `/metrics` (0: off)")
      .range(0, 65535);
  k.add(
      "metrics.bind_address", T::kString, [](const Config& c) { return yamlQuote(c.metrics.bind_address); },
      "address the metrics endpoint binds");
  // fleet
  k.add(
       "fleet.mode", T::kChoice, [](const Config& c) { return yamlEnum(c.fleet.mode); },
       "cloud: `off`: each edge trains its own copy of the cloud's stages, apart; `shared`: one copy of every "
       "stage for all edges, their stages averaged (FedAvg); `per_edge`: each edge its own copy of the cloud's "
       "stages, every replica averaged each round (SplitFed v1)")
      .choices(enumNames<FleetMode>());
  k.add(
       "fleet.average_every", T::kInteger, [](const Config& c) { return yamlInt(c.fleet.average_every); },
       "cloud, fleet: training steps of each edge between averaging rounds (0: at epoch ends only)")
      .range(0, kBatches);
  k.add(
       "fleet.min_edges", T::kInteger, [](const Config& c) { return yamlInt(c.fleet.min_edges); },
       "cloud, fleet: edges that must be there before any of them trains")
      .range(1, 4096);
  k.add(
       "fleet.round_timeout_s", T::kNumber, [](const Config& c) { return yamlNumber(c.fleet.round_timeout_s); },
       "cloud, fleet: an averaging round goes ahead without the edges that have not come within this long")
      .above(0, 86400);
  k.add(
       "fleet.max_cloud_batch", T::kInteger, [](const Config& c) { return yamlInt(c.fleet.max_cloud_batch); },
       "cloud, shared: samples of one cloud step over batches of several edges (0: 4 × `data.batch_size`; "
       "`data.batch_size`: no cross-edge batching)")
      .range(0, 1 << 20)
      .defaultNote("4 × `data.batch_size`");
  k.add(
       "fleet.gather_ms", T::kNumber, [](const Config& c) { return yamlNumber(c.fleet.gather_ms); },
       "cloud, shared: how long a training batch waits for other edges' batches to join its step (0: only those "
       "already there)")
      .range(0, 60000);
  // log
  k.add(
       "log.level", T::kChoice, [](const Config& c) { return yamlEnum(c.log.level); }, "log level")
      .choices(enumNames<LogLevel>());
  k.add(
       "log.format", T::kChoice, [](const Config& c) { return yamlEnum(c.log.format); },
       "`text`, or `json`: one JSON object per line")
      .choices(enumNames<LogFormat>());
  return k.take();
}

// "1 … 100000", "> 0, ≤ 1000", ">= 0"
std::string rangeText(const KeySpec& k, bool integer) {
  const auto num = [&](double v) { return integer ? fmt::format("{:.0f}", v) : yamlNumber(v); };
  if (k.min && k.max && !k.min_exclusive) return num(*k.min) + " … " + num(*k.max);
  std::string text;
  if (k.min) text = (k.min_exclusive ? "> " : "≥ ") + num(*k.min);
  if (k.max) text += (text.empty() ? "≤ " : ", ≤ ") + num(*k.max);
  return text;
}

std::string quotedList(const std::vector<std::string>& items) {
  std::vector<std::string> quoted;
  for (const auto& i : items) quoted.push_back("`" + i + "`");
  return join(quoted);
}

// A table cell: '|' would end the cell.
std::string cell(const std::string& text) {
  std::string out;
  for (char ch : text) {
    if (ch == '|') out += '\\';
    out += ch;
  }
  return out;
}

}  // namespace

std::string yamlQuote(const std::string& text) {
  static const std::vector<std::string> kNullWords{"null", "Null", "NULL", "~"};
  bool plain =
      !text.empty() && std::find(kNullWords.begin(), kNullWords.end(), text) == kNullWords.end() &&
      (std::isalnum(static_cast<unsigned char>(text[0])) || text[0] == '_' || text[0] == '/' || text[0] == '.');
  for (char ch : text) {
    const auto u = static_cast<unsigned char>(ch);
    if (!(std::isalnum(u) || ch == '_' || ch == '-' || ch == '.' || ch == '/')) plain = false;
  }
  if (plain) return text;
  std::string out = "\"";
  for (char ch : text) {
    const auto u = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (u < 0x20) {
      out += fmt::format("\\x{:02x}", u);
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

std::string typeName(KeyType type) {
  switch (type) {
    case KeyType::kBool: return "bool";
    case KeyType::kInteger: return "integer";
    case KeyType::kNumber: return "number";
    case KeyType::kString: return "string";
    case KeyType::kChoice: return "choice";
    case KeyType::kCodec: return "codec spec";
    case KeyType::kCodecList: return "list of codec specs";
    case KeyType::kEndpoint: return "endpoint";
    case KeyType::kSplitPoint: return "integer or `auto`";
    case KeyType::kIntegerList: return "list of integers";
    case KeyType::kEpochMap: return "epoch → integer";
    case KeyType::kOutageList: return "list of [start_s, duration_s]";
  }
  return "?";
}

std::string KeySpec::allowed() const {
  switch (type) {
    case KeyType::kBool: return "`true`, `false`";
    case KeyType::kInteger:
    case KeyType::kIntegerList:
    case KeyType::kEpochMap: return rangeText(*this, true);
    case KeyType::kSplitPoint: return rangeText(*this, true) + ", `auto`";
    case KeyType::kNumber: return rangeText(*this, false);
    case KeyType::kString: return optional ? "" : "non-empty";
    case KeyType::kChoice: return quotedList(choices);
    case KeyType::kCodec:
    case KeyType::kCodecList:
      compression::registerBuiltinCodecs();
      return quotedList(compression::codecNames()) + ", each optionally `+zstd` or `+lz4`";
    case KeyType::kEndpoint: return "`tcp://HOST:PORT` (PORT or `*`), `ipc://PATH`, `inproc://NAME`";
    case KeyType::kOutageList: return "start ≥ 0, duration > 0";
  }
  return "";
}

std::string KeySpec::defaultText() const {
  if (!default_note.empty()) return default_note;
  return value(Config{});
}

const std::vector<KeySpec>& configSchema() {
  static const std::vector<KeySpec> schema = buildSchema();
  return schema;
}

const KeySpec* findKey(std::string_view path) {
  for (const auto& k : configSchema()) {
    if (k.path == path) return &k;
  }
  return nullptr;
}

std::string keyTableMarkdown() {
  std::string out = "| key | type | default | allowed | meaning |\n|---|---|---|---|---|\n";
  for (const auto& k : configSchema()) {
    const std::string allowed = k.allowed();
    std::string value = k.defaultText();
    // A string the YAML printer had to quote reads better bare in a code span.
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"' && value.find('\\') == std::string::npos) {
      value = value.substr(1, value.size() - 2);
    }
    const std::string default_cell = k.default_note.empty() ? "`" + value + "`" : k.default_note;
    out += "| `" + k.path + "` | " + cell(k.typeName()) + " | " + cell(default_cell) + " | " +
           (allowed.empty() ? "" : cell(allowed)) + " | " + cell(k.description) + " |\n";
  }
  return out;
}

std::string replaceKeyTable(const std::string& readme) {
  const auto begin = readme.find(kKeyTableBegin);
  const auto end = readme.find(kKeyTableEnd);
  if (begin == std::string::npos || end == std::string::npos || end < begin) {
    throw Error(detail::concat("the README has no '", kKeyTableBegin, "' ... '", kKeyTableEnd,
                               "' markers (in that order) around the config key table"));
  }
  const auto after_begin = begin + kKeyTableBegin.size();
  return readme.substr(0, after_begin) + "\n" + keyTableMarkdown() + readme.substr(end);
}

}  // namespace tandem::config

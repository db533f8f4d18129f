#include "runtime/config/config.h"

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "runtime/common/error.h"
#include "runtime/common/strings.h"

namespace tandem::config {
namespace {

// Where values came from: the file, and which key paths were overridden on the command
// line (so errors point at `--set ...` instead of a line in the file).
struct Origin {
  std::string source;
  std::map<std::string, std::string> overrides;  // key path → "--set key=value"

  std::string where(const std::string& path, const YAML::Mark& mark) const {
    for (const auto& [key, text] : overrides) {
      if (path == key || (path.size() > key.size() && path.compare(0, key.size(), key) == 0 &&
                          path[key.size()] == '.')) {
        return text;
      }
    }
    if (mark.is_null() || mark.line < 0) return source;
    return source + ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
  }
};

[[noreturn]] void fail(const std::string& where, const std::string& path, const std::string& message) {
  throw ConfigError(where + ": " + path + ": " + message);
}

std::string describe(const YAML::Node& node) {
  if (!node.IsDefined() || node.IsNull()) return "nothing (null)";
  if (node.IsSequence()) return "a list";
  if (node.IsMap()) return "a mapping";
  return "'" + node.Scalar() + "'";
}

// One mapping of the YAML tree. Every key read through it is remembered, so finish() can
// flag the ones nobody asked for, with a "did you mean" for likely typos.
class Section {
 public:
  Section(YAML::Node node, std::string path, const Origin& origin,
          std::map<std::string, std::string>& locations, YAML::Mark mark = YAML::Mark::null_mark())
      : node_(std::move(node)), path_(std::move(path)), origin_(origin), locations_(locations) {
    if (node_.IsDefined() && !node_.IsNull() && !node_.IsMap()) {
      fail(origin_.where(path_, node_.Mark()), path_.empty() ? "(top level)" : path_,
           "expected a mapping of keys, got " + describe(node_));
    }
    (void)mark;
  }

  Section section(const std::string& key) {
    YAML::Node child = lookup(key);
    return Section(child, keyPath(key), origin_, locations_);
  }

  bool has(const std::string& key) {
    known_.insert(key);
    return lookup(key).IsDefined();
  }

  void readString(const std::string& key, std::string& out, bool allow_empty = true) {
    YAML::Node n = lookup(key);
    if (!n.IsDefined()) return;
    if (!n.IsScalar()) typeError(key, n, "a string");
    out = n.Scalar();
    if (!allow_empty && out.empty()) valueError(key, n, "must not be empty");
  }

  void readChoice(const std::string& key, std::string& out, const std::vector<std::string>& choices) {
    YAML::Node n = lookup(key);
    if (!n.IsDefined()) return;
    if (!n.IsScalar()) typeError(key, n, "one of: " + join(choices));
    const std::string value = n.Scalar();
    for (const auto& c : choices) {
      if (c == value) {
        out = value;
        return;
      }
    }
    std::string message = "unknown value '" + value + "'";
    if (auto guess = closestMatch(value, choices); !guess.empty()) {
      message += " (did you mean '" + guess + "'?)";
    }
    valueError(key, n, message + "; expected one of: " + join(choices));
  }

  void readBool(const std::string& key, bool& out) {
    YAML::Node n = lookup(key);
    if (!n.IsDefined()) return;
    if (!n.IsScalar() || !YAML::convert<bool>::decode(n, out)) typeError(key, n, "true or false");
  }

  template <typename Int>
  void readInt(const std::string& key, Int& out, Int min, Int max) {
    YAML::Node n = lookup(key);
    if (!n.IsDefined()) return;
    out = decodeInt<Int>(keyPath(key), n, min, max);
  }

  void readDouble(const std::string& key, double& out, double min, double max, bool min_exclusive = false) {
    YAML::Node n = lookup(key);
    if (!n.IsDefined()) return;
    double value = 0;
    if (!n.IsScalar() || !YAML::convert<double>::decode(n, value) || !std::isfinite(value)) {
      typeError(key, n, "a number");
    }
    if (value < min || value > max || (min_exclusive && value == min)) {
      std::ostringstream range;
      range << "must be " << (min_exclusive ? "> " : ">= ") << min;
      if (max < std::numeric_limits<double>::max()) range << " and <= " << max;
      valueError(key, n, range.str() + ", got " + n.Scalar());
    }
    out = value;
  }

  void readIntList(const std::string& key, std::vector<int>& out, int min, int max) {
    YAML::Node n = lookup(key);
    if (!n.IsDefined()) return;
    if (!n.IsSequence()) typeError(key, n, "a list of integers");
    out.clear();
    for (std::size_t i = 0; i < n.size(); ++i) {
      out.push_back(decodeInt<int>(keyPath(key) + "[" + std::to_string(i) + "]", n[i], min, max));
    }
  }

  void readStringList(const std::string& key, std::vector<std::string>& out) {
    YAML::Node n = lookup(key);
    if (!n.IsDefined()) return;
    if (n.IsScalar()) {  // a single value: `codecs: int8`
      out = {n.Scalar()};
      return;
    }
    if (!n.IsSequence()) typeError(key, n, "a list of strings");
    out.clear();
    for (std::size_t i = 0; i < n.size(); ++i) {
      if (!n[i].IsScalar()) typeError(key, n[i], "a string");
      out.push_back(n[i].Scalar());
    }
  }

  // A list of [start, duration] pairs of non-negative seconds.
  void readPairList(const std::string& key, std::vector<std::pair<double, double>>& out) {
    YAML::Node n = lookup(key);
    if (!n.IsDefined()) return;
    if (!n.IsSequence()) typeError(key, n, "a list of [start_s, duration_s] pairs");
    out.clear();
    for (std::size_t i = 0; i < n.size(); ++i) {
      const YAML::Node p = n[i];
      double a = 0, b = 0;
      if (!p.IsSequence() || p.size() != 2 || !YAML::convert<double>::decode(p[0], a) ||
          !YAML::convert<double>::decode(p[1], b) || !(a >= 0) || !(b > 0)) {
        typeError(key, p, "a [start_s, duration_s] pair with start >= 0 and duration > 0");
      }
      out.emplace_back(a, b);
    }
  }

  // A mapping of integer keys to integer values, e.g. `{0: 0, 3: 4}`.
  void readIntMap(const std::string& key, std::map<int, int>& out, int key_min, int key_max,
                  int value_min, int value_max) {
    YAML::Node n = lookup(key);
    if (!n.IsDefined()) return;
    if (!n.IsMap()) typeError(key, n, "a mapping of epoch → value, e.g. {0: 0, 3: 4}");
    out.clear();
    for (auto it = n.begin(); it != n.end(); ++it) {
      const int k = decodeInt<int>(keyPath(key) + " (key)", it->first, key_min, key_max);
      out[k] = decodeInt<int>(keyPath(key) + "." + it->first.Scalar(), it->second, value_min, value_max);
    }
  }

  // Raw access for keys with a bespoke format (e.g. `split.point: auto`).
  YAML::Node raw(const std::string& key) { return lookup(key); }
  std::string where(const std::string& key) { return origin_.where(keyPath(key), lookup(key).Mark()); }
  std::string keyPath(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

  [[noreturn]] void typeError(const std::string& key, const YAML::Node& n, const std::string& expected) {
    fail(origin_.where(keyPath(key), n.Mark()), keyPath(key), "expected " + expected + ", got " + describe(n));
  }
  [[noreturn]] void valueError(const std::string& key, const YAML::Node& n, const std::string& message) {
    fail(origin_.where(keyPath(key), n.Mark()), keyPath(key), message);
  }

  // Rejects keys that no read asked for.
  void finish() {
    if (!node_.IsDefined() || !node_.IsMap()) return;
    const std::vector<std::string> known(known_.begin(), known_.end());
    for (auto it = node_.begin(); it != node_.end(); ++it) {
      const std::string key = it->first.Scalar();
      if (known_.count(key)) continue;
      std::string message = "unknown key '" + keyPath(key) + "'";
      if (auto guess = closestMatch(key, known); !guess.empty()) {
        message += " (did you mean '" + keyPath(guess) + "'?)";
      } else {
        message += "; known keys here: " + join(known);
      }
      throw ConfigError(origin_.where(keyPath(key), it->first.Mark()) + ": " + message);
    }
  }

 private:
  YAML::Node lookup(const std::string& key) {
    known_.insert(key);
    if (!node_.IsDefined() || !node_.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
    YAML::Node n = node_[key];
    if (n.IsDefined()) locations_[keyPath(key)] = origin_.where(keyPath(key), n.Mark());
    return n;
  }

  template <typename Int>
  Int decodeInt(const std::string& path, const YAML::Node& n, Int min, Int max) {
    Int value{};
    if (!n.IsScalar() || !YAML::convert<Int>::decode(n, value)) {
      fail(origin_.where(path, n.Mark()), path,
           std::string("expected ") + (std::is_signed<Int>::value ? "an integer" : "a non-negative integer") +
               ", got " + describe(n));
    }
    if (value < min || value > max) {
      fail(origin_.where(path, n.Mark()), path,
           "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", got " + n.Scalar());
    }
    return value;
  }

  YAML::Node node_;
  std::string path_;
  const Origin& origin_;
  std::map<std::string, std::string>& locations_;
  std::set<std::string> known_;
};

void applyOverride(YAML::Node& root, const std::string& assignment, Origin& origin) {
  const std::string where = "--set " + assignment;
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw ConfigError(where + ": expected key.path=value");
  }
  const std::string path = assignment.substr(0, eq);
  const std::string text = assignment.substr(eq + 1);
  const auto parts = split(path, '.');
  for (const auto& p : parts) {
    if (p.empty()) throw ConfigError(where + ": empty component in key path '" + path + "'");
  }
  YAML::Node value;
  try {
    value = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(where + ": value is not valid YAML: " + e.msg);
  }
  YAML::Node cur;
  cur.reset(root);
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    YAML::Node next = cur[parts[i]];
    if (next.IsDefined() && !next.IsNull() && !next.IsMap()) {
      throw ConfigError(where + ": '" + join({parts.begin(), parts.begin() + static_cast<long>(i) + 1}, ".") +
                        "' is " + describe(next) + ", not a mapping");
    }
    if (!next.IsDefined() || next.IsNull()) {
      cur[parts[i]] = YAML::Node(YAML::NodeType::Map);
    }
    YAML::Node child = cur[parts[i]];
    cur.reset(child);
  }
  cur[parts.back()] = value;
  origin.overrides[path] = where;
}

Config parseTree(YAML::Node root, Origin& origin) {
  Config c;
  c.source = origin.source;
  auto& loc = c.locations;
  Section top(root, "", origin, loc);

  {
    auto s = top.section("run");
    s.readString("name", c.run.name, false);
    s.readInt<std::uint64_t>("seed", c.run.seed, 0, std::numeric_limits<std::uint64_t>::max());
    s.readInt("epochs", c.run.epochs, 1, 100000);
    s.readString("output_dir", c.run.output_dir, false);
    s.readInt("threads", c.run.threads, 0, 1024);
    s.finish();
  }
  {
    auto s = top.section("data");
    s.readChoice("dataset", c.data.dataset, {"fashion_mnist", "cifar10", "synthetic"});
    s.readString("path", c.data.path, false);
    s.readInt<std::int64_t>("batch_size", c.data.batch_size, 1, 65536);
    s.readInt<std::int64_t>("test_batch_size", c.data.test_batch_size, 0, 65536);
    s.readInt<std::int64_t>("max_train_batches", c.data.max_train_batches, 0, std::int64_t{1} << 40);
    s.readInt<std::int64_t>("max_test_batches", c.data.max_test_batches, 0, std::int64_t{1} << 40);
    s.readInt("prefetch", c.data.prefetch, 1, 1024);
    s.readBool("shuffle", c.data.shuffle);
    s.readBool("normalize", c.data.normalize);
    auto syn = s.section("synthetic");
    auto& sc = c.data.synthetic;
    syn.readInt<std::int64_t>("train_size", sc.train_size, 1, 10'000'000);
    syn.readInt<std::int64_t>("test_size", sc.test_size, 1, 10'000'000);
    syn.readInt<std::int64_t>("channels", sc.channels, 1, 64);
    syn.readInt<std::int64_t>("height", sc.height, 1, 1024);
    syn.readInt<std::int64_t>("width", sc.width, 1, 1024);
    syn.readInt<std::int64_t>("num_classes", sc.num_classes, 2, 100000);
    syn.readDouble("noise", sc.noise, 0.0, 1e6);
    syn.finish();
    s.finish();
  }
  {
    auto s = top.section("model");
    s.readString("name", c.model.name, false);
    s.readInt<std::int64_t>("num_classes", c.model.num_classes, 0, 1000000);
    s.finish();
  }
  {
    auto s = top.section("optimizer");
    auto& o = c.optimizer;
    s.readChoice("name", o.name, {"sgd", "adam"});
    s.readDouble("lr", o.lr, 0.0, 1e3, true);
    s.readDouble("momentum", o.momentum, 0.0, 0.999999);
    s.readBool("nesterov", o.nesterov);
    s.readDouble("weight_decay", o.weight_decay, 0.0, 1.0);
    s.readDouble("beta1", o.beta1, 0.0, 0.999999);
    s.readDouble("beta2", o.beta2, 0.0, 0.999999999);
    s.readDouble("eps", o.eps, 0.0, 1.0, true);
    if (o.nesterov && o.momentum == 0.0) {
      s.valueError("nesterov", s.raw("nesterov"), "nesterov needs optimizer.momentum > 0");
    }
    const std::vector<std::string> schedules{"none", "step", "multistep", "cosine"};
    YAML::Node sched = s.raw("schedule");
    if (sched.IsDefined() && sched.IsScalar()) {
      // Shorthand: `schedule: cosine`.
      s.readChoice("schedule", o.schedule.name, schedules);
    } else {
      auto ss = s.section("schedule");
      ss.readChoice("name", o.schedule.name, schedules);
      ss.readInt("step_size", o.schedule.step_size, 1, 100000);
      ss.readDouble("gamma", o.schedule.gamma, 0.0, 1.0, true);
      ss.readIntList("milestones", o.schedule.milestones, 0, 100000);
      ss.readDouble("min_lr", o.schedule.min_lr, 0.0, 1e3);
      ss.readInt("warmup_epochs", o.schedule.warmup_epochs, 0, 100000);
      for (std::size_t i = 1; i < o.schedule.milestones.size(); ++i) {
        if (o.schedule.milestones[i] <= o.schedule.milestones[i - 1]) {
          ss.valueError("milestones", ss.raw("milestones"), "milestones must be strictly increasing");
        }
      }
      if (o.schedule.name == "multistep" && o.schedule.milestones.empty()) {
        ss.valueError("milestones", ss.raw("name"), "schedule 'multistep' needs a non-empty milestones list");
      }
      ss.finish();
    }
    s.finish();
  }
  {
    auto s = top.section("split");
    YAML::Node point = s.raw("point");
    if (point.IsDefined()) {
      if (point.IsScalar() && point.Scalar() == "auto") {
        c.split.automatic = true;
      } else {
        s.readInt("point", c.split.point, 0, 10000);
      }
    }
    s.readInt("staleness", c.split.staleness, 0, 64);
    s.readIntMap("staleness_schedule", c.split.staleness_schedule, 0, 100000, 0, 64);
    s.readChoice("replay", c.split.replay, {"recompute", "retain"});
    s.readChoice("compensation", c.split.compensation, {"none", "lr", "momentum"});
    s.finish();
  }
  {
    auto s = top.section("compression");
    s.readString("uplink", c.compression.uplink, false);
    s.readString("downlink", c.compression.downlink, false);
    s.readBool("error_feedback", c.compression.error_feedback);
    s.finish();
  }
  {
    auto s = top.section("scheduler");
    auto& sc = c.scheduler;
    s.readBool("enabled", sc.enabled);
    s.readDouble("memory_budget_mb", sc.memory_budget_mb, 0.0, 1e9);
    s.readStringList("codecs", sc.codecs);
    if (sc.codecs.empty()) s.valueError("codecs", s.raw("codecs"), "needs at least one codec");
    s.readDouble("hysteresis", sc.hysteresis, 0.0, 1.0);
    s.readDouble("replan_threshold", sc.replan_threshold, 0.0, 100.0, true);
    s.readString("profile_dir", sc.profile_dir, false);
    s.readInt("profile_iterations", sc.profile_iterations, 1, 1000);
    s.readIntMap("split_schedule", sc.split_schedule, 0, 100000, 0, 10000);
    s.readInt<std::int64_t>("probe_bytes", sc.probe_bytes, 1024, std::int64_t{64} << 20);
    s.finish();
  }
  {
    auto s = top.section("link");
    s.readString("endpoint", c.link.endpoint, false);
    s.readDouble("connect_timeout_s", c.link.connect_timeout_s, 0.0, 86400.0, true);
    s.readDouble("heartbeat_interval_s", c.link.heartbeat_interval_s, 0.0, 3600.0, true);
    s.readDouble("peer_timeout_s", c.link.peer_timeout_s, 0.0, 86400.0, true);
    s.readDouble("accept_timeout_s", c.link.accept_timeout_s, 0.0, 1e7);
    s.readDouble("reconnect_grace_s", c.link.reconnect_grace_s, 0.0, 86400.0);
    s.readDouble("max_message_mb", c.link.max_message_mb, 0.0, 65536.0, true);
    if (c.link.peer_timeout_s <= c.link.heartbeat_interval_s) {
      s.valueError("peer_timeout_s", s.raw("peer_timeout_s"),
                   "must be longer than link.heartbeat_interval_s (" +
                       std::to_string(c.link.heartbeat_interval_s) + ")");
    }
    auto e = s.section("emulate");
    e.readDouble("uplink_mbps", c.link.emulate.uplink_mbps, 0.0, 1e6);
    e.readDouble("downlink_mbps", c.link.emulate.downlink_mbps, 0.0, 1e6);
    e.readDouble("rtt_ms", c.link.emulate.rtt_ms, 0.0, 1e6);
    e.readString("trace", c.link.emulate.trace, false);
    e.readPairList("outages", c.link.emulate.outages);
    e.finish();
    s.finish();
  }
  {
    auto s = top.section("security");
    s.readChoice("mode", c.security.mode, {"curve", "plaintext"});
    s.readString("key_file", c.security.key_file, false);
    s.readString("cloud_public_key_file", c.security.cloud_public_key_file, false);
    s.readString("authorized_keys", c.security.authorized_keys, false);
    s.finish();
  }
  {
    auto s = top.section("checkpoint");
    s.readBool("enabled", c.checkpoint.enabled);
    s.readString("dir", c.checkpoint.dir, false);
    s.readInt<std::int64_t>("every_steps", c.checkpoint.every_steps, 0, std::int64_t{1} << 40);
    s.readInt("keep", c.checkpoint.keep, 1, 1000);
    s.finish();
  }
  {
    auto s = top.section("metrics");
    s.readInt("port", c.metrics.port, 0, 65535);
    s.readString("bind_address", c.metrics.bind_address, false);
    s.finish();
  }
  {
    auto s = top.section("log");
    s.readChoice("level", c.log.level, {"trace", "debug", "info", "warn", "error"});
    s.readChoice("format", c.log.format, {"text", "json"});
    s.finish();
  }
  top.finish();

  // Defaults that depend on other keys.
  if (c.run.output_dir.empty()) c.run.output_dir = "runs/" + c.run.name;
  if (c.checkpoint.dir.empty()) c.checkpoint.dir = c.run.output_dir + "/checkpoints";
  if (c.data.path.empty()) {
    if (c.data.dataset == "fashion_mnist") c.data.path = "/usr/share/datasets/fashion-mnist";
    if (c.data.dataset == "cifar10") c.data.path = "data/cifar-10-batches-bin";
  }
  if (c.data.test_batch_size == 0) c.data.test_batch_size = c.data.batch_size;
  return c;
}

Config parseRoot(YAML::Node root, const std::string& source, const std::vector<std::string>& overrides) {
  Origin origin{source, {}};
  if (!root.IsDefined() || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  if (!root.IsMap()) {
    throw ConfigError(source + ": the top level must be a mapping of sections (run:, data:, model:, ...), got " +
                      describe(root));
  }
  for (const auto& assignment : overrides) applyOverride(root, assignment, origin);
  return parseTree(root, origin);
}

std::string syntaxError(const std::string& source, const YAML::Exception& e) {
  std::string where = source;
  if (!e.mark.is_null()) {
    where += ":" + std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1);
  }
  return where + ": YAML syntax error: " + e.msg;
}

}  // namespace

int SplitConfig::stalenessAt(int epoch) const {
  int k = staleness;
  for (const auto& [from, value] : staleness_schedule) {
    if (from <= epoch) k = value;
  }
  return k;
}

std::string Config::locate(const std::string& key_path) const {
  auto it = locations.find(key_path);
  if (it != locations.end()) return it->second;
  return source + " (default value)";
}

void failAt(const Config& config, const std::string& key_path, const std::string& message) {
  throw ConfigError(config.locate(key_path) + ": " + key_path + ": " + message);
}

Config parseConfig(const std::string& yaml_text, const std::string& source, const std::vector<std::string>& overrides) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(syntaxError(source, e));
  }
  return parseRoot(root, source, overrides);
}

Config loadConfig(const std::string& path, const std::vector<std::string>& overrides) {
  std::ifstream in(path);
  if (!in) {
    throw ConfigError("cannot read config file '" + path + "': " + std::strerror(errno));
  }
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) throw ConfigError("cannot read config file '" + path + "': read error");
  return parseConfig(text.str(), path, overrides);
}

}  // namespace tandem::config

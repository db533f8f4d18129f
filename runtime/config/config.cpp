#include "runtime/config/config.h"

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "compression/codec.h"
#include "compression/registry.h"
#include "runtime/common/error.h"
#include "runtime/common/strings.h"
#include "runtime/config/schema.h"

namespace tandem::config {
namespace {

// Where values came from: the file, and which key paths were overridden on the command
// line (so errors point at `--set ...` instead of a line in the file).
struct Origin {
  std::string source;
  std::map<std::string, std::string> overrides;  // key path → "--set key=value"
  std::set<std::string>* keys_read = nullptr;    // when set, every schema key the parser looks up

  // `path` may carry a suffix naming a part of the value: "a.b[2]", "a.b.3", "a.b (key)".
  std::string where(const std::string& path, const YAML::Mark& mark) const {
    for (const auto& [key, text] : overrides) {
      // The override set this key, or a mapping or list that holds `path`.
      if (path == key || (path.size() > key.size() && path.compare(0, key.size(), key) == 0 &&
                          (path[key.size()] == '.' || path[key.size()] == '[' || path[key.size()] == ' '))) {
        return text;
      }
      // A section the override created (nodes built here, not read from the file, have
      // no mark): an unknown section named only by `--set` is the argument's fault.
      if (mark.is_null() && key.size() > path.size() && key.compare(0, path.size(), path) == 0 &&
          key[path.size()] == '.') {
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

std::string markText(const std::string& source, const YAML::Mark& mark) {
  if (mark.is_null() || mark.line < 0) return source;
  return source + ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
}

// yaml-cpp keeps both entries of a repeated key and lookups see only one, so a second
// `lr:` would silently win or lose. Every mapping of the tree is checked. `lines`: the
// marks are lines of `source` (not of a `--set` value).
void rejectDuplicateKeys(const YAML::Node& node, const std::string& path, const std::string& source,
                         bool lines = true) {
  if (node.IsMap()) {
    std::map<std::string, YAML::Mark> seen;
    for (auto it = node.begin(); it != node.end(); ++it) {
      const std::string key = it->first.IsScalar() ? it->first.Scalar() : "";
      const std::string child = path.empty() ? key : path + "." + key;
      if (it->first.IsScalar()) {
        auto [first, inserted] = seen.emplace(key, it->first.Mark());
        if (!inserted) {
          std::string message =
              (lines ? markText(source, it->first.Mark()) : source) + ": " + child + ": duplicate key";
          if (lines && !first->second.is_null())
            message += " (first given at line " + std::to_string(first->second.line + 1) + ")";
          throw ConfigError(message + "; give each key once");
        }
      }
      rejectDuplicateKeys(it->second, child, source, lines);
    }
  } else if (node.IsSequence()) {
    for (std::size_t i = 0; i < node.size(); ++i) {
      rejectDuplicateKeys(node[i], path + "[" + std::to_string(i) + "]", source, lines);
    }
  }
}

// Why `spec` cannot be a codec spec in config, or "" when it can.
std::string codecProblem(const std::string& spec) {
  // The wire and the tensor metadata call uncompressed float32 "raw"
  // (transport::kRawCodec); config has one spelling for it, the documented one.
  if (spec == "raw" || spec.rfind("raw+", 0) == 0) {
    return "unknown codec 'raw' (did you mean 'none'?): in config, uncompressed float32 is spelled 'none'";
  }
  try {
    compression::makeCodec(spec);
  } catch (const compression::CodecError& e) {
    return e.what();
  }
  return "";
}

// Why `endpoint` is not one the trainers can bind or connect, or "" when it is.
std::string endpointProblem(const std::string& endpoint) {
  const std::string expected = "expected tcp://HOST:PORT (PORT 1-65535 or *), ipc://PATH or inproc://NAME";
  const auto scheme_end = endpoint.find("://");
  if (scheme_end == std::string::npos) return "'" + endpoint + "' has no scheme; " + expected;
  const std::string scheme = endpoint.substr(0, scheme_end);
  const std::string rest = endpoint.substr(scheme_end + 3);
  if (scheme == "ipc" || scheme == "inproc") {
    if (rest.empty()) return "'" + endpoint + "' names no " + (scheme == "ipc" ? "path" : "name") + "; " + expected;
    return "";
  }
  if (scheme != "tcp") {
    std::string message = "unknown scheme '" + scheme + "' in '" + endpoint + "'";
    if (auto guess = closestMatch(scheme, {"tcp", "ipc", "inproc"}); !guess.empty()) {
      message += " (did you mean '" + guess + "'?)";
    }
    return message + "; " + expected;
  }
  const auto colon = rest.rfind(':');
  if (rest.empty()) return "'" + endpoint + "' names no host and port; " + expected;
  if (colon == std::string::npos) return "'" + endpoint + "' has no port; " + expected;
  const std::string host = rest.substr(0, colon);
  const std::string port = rest.substr(colon + 1);
  if (host.empty()) return "'" + endpoint + "' has no host (use * for every interface); " + expected;
  if (host.find_first_of(" /") != std::string::npos) return "'" + endpoint + "': bad host '" + host + "'; " + expected;
  if (port == "*") return "";
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(port) < 1 || std::stoi(port) > 65535) {
    return "'" + endpoint + "': bad port '" + port + "'; " + expected;
  }
  return "";
}

// One mapping of the YAML tree. Every key read through it is remembered, so finish() can
// flag the ones nobody asked for, with a "did you mean" for likely typos. Ranges and
// choices come from the schema (runtime/config/schema.h).
class Section {
 public:
  Section(YAML::Node node, std::string path, const Origin& origin, std::map<std::string, std::string>& locations)
      : node_(std::move(node)), path_(std::move(path)), origin_(origin), locations_(locations) {
    if (node_.IsDefined() && !node_.IsNull() && !node_.IsMap()) {
      fail(origin_.where(path_, node_.Mark()), path_.empty() ? "(top level)" : path_,
           "expected a mapping of keys, got " + describe(node_));
    }
  }

  Section section(const std::string& key) {
    YAML::Node child = lookup(key);
    return Section(child, keyPath(key), origin_, locations_);
  }

  void readString(const std::string& key, std::string& out) {
    spec(key, KeyType::kString);
    YAML::Node n = lookup(key);
    if (!n.IsDefined()) return;
    if (!n.IsScalar()) typeError(key, n, "a string");
    if (n.Scalar().empty()) valueError(key, n, "must not be empty");
    out = n.Scalar();
  }

  // A choice from the schema's list (data.dataset).
  void readChoice(const std::string& key, std::string& out) {
    const KeySpec& k = spec(key, KeyType::kChoice);
    YAML::Node n = lookup(key);
    if (n.IsDefined()) out = choice(key, n, k);
  }

  // An enum; `spec_path` names the schema key when it differs from this key (the
  // `optimizer.schedule: cosine` shorthand of optimizer.schedule.name).
  template <typename E>
  void readEnum(const std::string& key, E& out, const std::string& spec_path = "") {
    const KeySpec& k = spec_path.empty() ? spec(key, KeyType::kChoice) : specAt(spec_path, KeyType::kChoice);
    YAML::Node n = lookup(key);
    if (!n.IsDefined()) return;
    const auto value = parseEnum<E>(choice(key, n, k));
    if (!value) throw InvariantError("schema choices of " + k.path + " differ from its enum's spellings");
    out = *value;
  }

  void readBool(const std::string& key, bool& out) {
    spec(key, KeyType::kBool);
    YAML::Node n = lookup(key);
    if (!n.IsDefined()) return;
    if (!n.IsScalar() || !YAML::convert<bool>::decode(n, out)) typeError(key, n, "true or false");
  }

  template <typename Int>
  void readInt(const std::string& key, Int& out) {
    const KeySpec& k = spec(key, KeyType::kInteger);
    YAML::Node n = lookup(key);
    if (!n.IsDefined()) return;
    out = decodeInt<Int>(keyPath(key), n, k);
  }

  // split.point: an integer, or `auto`.
  void readSplitPoint(const std::string& key, int& out, bool& automatic) {
    const KeySpec& k = spec(key, KeyType::kSplitPoint);
    YAML::Node n = lookup(key);
    if (!n.IsDefined()) return;
    if (n.IsScalar() && n.Scalar() == "auto") {
      automatic = true;
      return;
    }
    automatic = false;
    out = decodeInt<int>(keyPath(key), n, k);
  }

  void readDouble(const std::string& key, double& out) {
    const KeySpec& k = spec(key, KeyType::kNumber);
    YAML::Node n = lookup(key);
    if (!n.IsDefined()) return;
    double value = 0;
    if (!n.IsScalar() || !YAML::convert<double>::decode(n, value) || !std::isfinite(value)) {
      typeError(key, n, "a number");
    }
    const double min = k.min.value_or(-std::numeric_limits<double>::max());
    const double max = k.max.value_or(std::numeric_limits<double>::max());
    if (value < min || value > max || (k.min_exclusive && value == min)) {
      std::ostringstream range;
      range << "must be " << (k.min_exclusive ? "> " : ">= ") << min;
      if (k.max) range << " and <= " << max;
      valueError(key, n, range.str() + ", got " + n.Scalar());
    }
    out = value;
  }

  void readIntList(const std::string& key, std::vector<int>& out) {
    const KeySpec& k = spec(key, KeyType::kIntegerList);
    YAML::Node n = lookup(key);
    if (!n.IsDefined()) return;
    if (!n.IsSequence()) typeError(key, n, "a list of integers");
    out.clear();
    for (std::size_t i = 0; i < n.size(); ++i) {
      out.push_back(decodeInt<int>(keyPath(key) + "[" + std::to_string(i) + "]", n[i], k));
    }
  }

  void readCodec(const std::string& key, std::string& out) {
    spec(key, KeyType::kCodec);
    YAML::Node n = lookup(key);
    if (!n.IsDefined()) return;
    if (!n.IsScalar() || n.Scalar().empty()) typeError(key, n, "a codec spec");
    checkCodec(keyPath(key), n);
    out = n.Scalar();
  }

  void readCodecList(const std::string& key, std::vector<std::string>& out) {
    spec(key, KeyType::kCodecList);
    YAML::Node n = lookup(key);
    if (!n.IsDefined()) return;
    if (n.IsScalar()) {  // a single value: `codecs: int8`
      checkCodec(keyPath(key), n);
      out = {n.Scalar()};
      return;
    }
    if (!n.IsSequence()) typeError(key, n, "a list of codec specs");
    if (n.size() == 0) valueError(key, n, "needs at least one codec");
    out.clear();
    for (std::size_t i = 0; i < n.size(); ++i) {
      const std::string path = keyPath(key) + "[" + std::to_string(i) + "]";
      if (!n[i].IsScalar())
        fail(origin_.where(path, n[i].Mark()), path, "expected a codec spec, got " + describe(n[i]));
      checkCodec(path, n[i]);
      out.push_back(n[i].Scalar());
    }
  }

  void readEndpoint(const std::string& key, std::string& out) {
    spec(key, KeyType::kEndpoint);
    YAML::Node n = lookup(key);
    if (!n.IsDefined()) return;
    if (!n.IsScalar() || n.Scalar().empty()) typeError(key, n, "an endpoint");
    if (const auto problem = endpointProblem(n.Scalar()); !problem.empty()) valueError(key, n, problem);
    out = n.Scalar();
  }

  // A list of [start, duration] pairs of non-negative seconds.
  void readPairList(const std::string& key, std::vector<std::pair<double, double>>& out) {
    spec(key, KeyType::kOutageList);
    YAML::Node n = lookup(key);
    if (!n.IsDefined()) return;
    if (!n.IsSequence()) typeError(key, n, "a list of [start_s, duration_s] pairs");
    out.clear();
    for (std::size_t i = 0; i < n.size(); ++i) {
      const YAML::Node p = n[i];
      double a = 0, b = 0;
      if (!p.IsSequence() || p.size() != 2 || !YAML::convert<double>::decode(p[0], a) ||
          !YAML::convert<double>::decode(p[1], b) || !(a >= 0) || !(b > 0) || !std::isfinite(a) || !std::isfinite(b)) {
        const std::string path = keyPath(key) + "[" + std::to_string(i) + "]";
        fail(origin_.where(path, p.Mark()), path,
             "expected a [start_s, duration_s] pair with start >= 0 and duration > 0, got " + describe(p));
      }
      out.emplace_back(a, b);
    }
  }

  // A mapping of epochs to integers, e.g. `{0: 0, 3: 4}`.
  void readEpochMap(const std::string& key, std::map<int, int>& out) {
    const KeySpec& k = spec(key, KeyType::kEpochMap);
    YAML::Node n = lookup(key);
    if (!n.IsDefined()) return;
    if (!n.IsMap()) typeError(key, n, "a mapping of epoch → value, e.g. {0: 0, 3: 4}");
    KeySpec epochs;
    epochs.min = 0;
    epochs.max = 100000;
    out.clear();
    for (auto it = n.begin(); it != n.end(); ++it) {
      const int e = decodeInt<int>(keyPath(key) + " (key)", it->first, epochs);
      out[e] = decodeInt<int>(keyPath(key) + "." + it->first.Scalar(), it->second, k);
    }
  }

  // Raw access for checks across keys.
  YAML::Node raw(const std::string& key) { return lookup(key); }
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
  // The schema's entry for `key`: reading a key the schema does not describe is a bug.
  const KeySpec& spec(const std::string& key, KeyType type) { return specAt(keyPath(key), type); }
  const KeySpec& specAt(const std::string& path, KeyType type) {
    const KeySpec* k = findKey(path);
    if (k == nullptr) {
      throw InvariantError("the config parser reads '" + path + "', which runtime/config/schema.cpp does not describe");
    }
    if (k->type != type) {
      throw InvariantError("the config parser reads '" + path + "' as a " + typeName(type) + ", the schema says " +
                           k->typeName());
    }
    if (origin_.keys_read != nullptr) origin_.keys_read->insert(path);
    return *k;
  }

  std::string choice(const std::string& key, const YAML::Node& n, const KeySpec& k) {
    if (!n.IsScalar()) typeError(key, n, "one of: " + join(k.choices));
    const std::string value = n.Scalar();
    for (const auto& c : k.choices) {
      if (c == value) return value;
    }
    std::string message = "unknown value '" + value + "'";
    if (auto guess = closestMatch(value, k.choices); !guess.empty()) {
      message += " (did you mean '" + guess + "'?)";
    }
    valueError(key, n, message + "; expected one of: " + join(k.choices));
  }

  void checkCodec(const std::string& path, const YAML::Node& n) {
    if (const auto problem = codecProblem(n.Scalar()); !problem.empty()) {
      fail(origin_.where(path, n.Mark()), path, problem);
    }
  }

  YAML::Node lookup(const std::string& key) {
    known_.insert(key);
    if (!node_.IsDefined() || !node_.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
    YAML::Node n = node_[key];
    if (n.IsDefined()) locations_[keyPath(key)] = origin_.where(keyPath(key), n.Mark());
    return n;
  }

  template <typename Int>
  Int decodeInt(const std::string& path, const YAML::Node& n, const KeySpec& k) {
    const Int min = k.min ? static_cast<Int>(*k.min) : std::numeric_limits<Int>::min();
    const Int max = k.max ? static_cast<Int>(*k.max) : std::numeric_limits<Int>::max();
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
  rejectDuplicateKeys(value, path, where, false);
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
    s.readString("name", c.run.name);
    s.readInt("seed", c.run.seed);
    s.readInt("epochs", c.run.epochs);
    s.readString("output_dir", c.run.output_dir);
    s.readInt("threads", c.run.threads);
    s.readDouble("shutdown_grace_s", c.run.shutdown_grace_s);
    s.finish();
  }
  {
    auto s = top.section("data");
    s.readChoice("dataset", c.data.dataset);
    s.readString("path", c.data.path);
    s.readInt("batch_size", c.data.batch_size);
    s.readInt("test_batch_size", c.data.test_batch_size);
    s.readInt("max_train_batches", c.data.max_train_batches);
    s.readInt("max_test_batches", c.data.max_test_batches);
    s.readInt("prefetch", c.data.prefetch);
    s.readBool("shuffle", c.data.shuffle);
    s.readBool("normalize", c.data.normalize);
    auto syn = s.section("synthetic");
    auto& sc = c.data.synthetic;
    syn.readInt("train_size", sc.train_size);
    syn.readInt("test_size", sc.test_size);
    syn.readInt("channels", sc.channels);
    syn.readInt("height", sc.height);
    syn.readInt("width", sc.width);
    syn.readInt("num_classes", sc.num_classes);
    syn.readDouble("noise", sc.noise);
    syn.finish();
    auto sh = s.section("shard");
    sh.readInt("index", c.data.shard.index);
    sh.readInt("count", c.data.shard.count);
    sh.readEnum("scheme", c.data.shard.scheme);
    sh.readDouble("alpha", c.data.shard.alpha);
    sh.readInt("seed", c.data.shard.seed);
    if (c.data.shard.index >= c.data.shard.count) {
      sh.valueError("index", sh.raw("index"),
                    "shard " + std::to_string(c.data.shard.index) + " of " + std::to_string(c.data.shard.count) +
                        " (0-based: below data.shard.count)");
    }
    sh.finish();
    s.finish();
  }
  {
    auto s = top.section("model");
    s.readString("name", c.model.name);
    s.readInt("num_classes", c.model.num_classes);
    s.finish();
  }
  {
    auto s = top.section("optimizer");
    auto& o = c.optimizer;
    s.readEnum("name", o.name);
    s.readDouble("lr", o.lr);
    s.readDouble("momentum", o.momentum);
    s.readBool("nesterov", o.nesterov);
    s.readDouble("weight_decay", o.weight_decay);
    s.readDouble("beta1", o.beta1);
    s.readDouble("beta2", o.beta2);
    s.readDouble("eps", o.eps);
    if (o.nesterov && o.momentum == 0.0) {
      s.valueError("nesterov", s.raw("nesterov"), "nesterov needs optimizer.momentum > 0");
    }
    YAML::Node sched = s.raw("schedule");
    if (sched.IsDefined() && sched.IsScalar()) {
      // Shorthand: `schedule: cosine`.
      s.readEnum("schedule", o.schedule.name, "optimizer.schedule.name");
    } else {
      auto ss = s.section("schedule");
      ss.readEnum("name", o.schedule.name);
      ss.readInt("step_size", o.schedule.step_size);
      ss.readDouble("gamma", o.schedule.gamma);
      ss.readIntList("milestones", o.schedule.milestones);
      ss.readDouble("min_lr", o.schedule.min_lr);
      ss.readInt("warmup_epochs", o.schedule.warmup_epochs);
      for (std::size_t i = 1; i < o.schedule.milestones.size(); ++i) {
        if (o.schedule.milestones[i] <= o.schedule.milestones[i - 1]) {
          ss.valueError("milestones", ss.raw("milestones"), "milestones must be strictly increasing");
        }
      }
      if (o.schedule.name == LrSchedule::kMultistep && o.schedule.milestones.empty()) {
        ss.valueError("milestones", ss.raw("name"), "schedule 'multistep' needs a non-empty milestones list");
      }
      ss.finish();
    }
    s.finish();
  }
  {
    auto s = top.section("split");
    s.readSplitPoint("point", c.split.point, c.split.automatic);
    s.readInt("staleness", c.split.staleness);
    s.readEpochMap("staleness_schedule", c.split.staleness_schedule);
    s.readInt("staleness_warmup_steps", c.split.staleness_warmup_steps);
    s.readEnum("replay", c.split.replay);
    s.readEnum("compensation", c.split.compensation);
    s.finish();
  }
  {
    auto s = top.section("compression");
    s.readCodec("uplink", c.compression.uplink);
    s.readCodec("downlink", c.compression.downlink);
    s.readBool("error_feedback", c.compression.error_feedback);
    s.finish();
  }
  {
    auto s = top.section("scheduler");
    auto& sc = c.scheduler;
    s.readBool("enabled", sc.enabled);
    s.readDouble("memory_budget_mb", sc.memory_budget_mb);
    s.readCodecList("codecs", sc.codecs);
    s.readDouble("hysteresis", sc.hysteresis);
    s.readDouble("replan_threshold", sc.replan_threshold);
    s.readString("profile_dir", sc.profile_dir);
    s.readInt("profile_iterations", sc.profile_iterations);
    s.readEpochMap("split_schedule", sc.split_schedule);
    s.readInt("probe_bytes", sc.probe_bytes);
    s.finish();
  }
  {
    auto s = top.section("link");
    s.readEndpoint("endpoint", c.link.endpoint);
    s.readDouble("connect_timeout_s", c.link.connect_timeout_s);
    s.readDouble("heartbeat_interval_s", c.link.heartbeat_interval_s);
    s.readDouble("peer_timeout_s", c.link.peer_timeout_s);
    s.readDouble("accept_timeout_s", c.link.accept_timeout_s);
    s.readDouble("reconnect_grace_s", c.link.reconnect_grace_s);
    s.readDouble("max_message_mb", c.link.max_message_mb);
    if (c.link.peer_timeout_s <= c.link.heartbeat_interval_s) {
      s.valueError("peer_timeout_s", s.raw("peer_timeout_s"),
                   "must be longer than link.heartbeat_interval_s (" +
                       std::to_string(c.link.heartbeat_interval_s) + ")");
    }
    auto e = s.section("emulate");
    e.readDouble("uplink_mbps", c.link.emulate.uplink_mbps);
    e.readDouble("downlink_mbps", c.link.emulate.downlink_mbps);
    e.readDouble("rtt_ms", c.link.emulate.rtt_ms);
    e.readString("trace", c.link.emulate.trace);
    e.readPairList("outages", c.link.emulate.outages);
    e.finish();
    s.finish();
  }
  {
    auto s = top.section("security");
    s.readEnum("mode", c.security.mode);
    s.readString("key_file", c.security.key_file);
    s.readString("cloud_public_key_file", c.security.cloud_public_key_file);
    s.readString("authorized_keys", c.security.authorized_keys);
    s.finish();
  }
  {
    auto s = top.section("checkpoint");
    s.readBool("enabled", c.checkpoint.enabled);
    s.readString("dir", c.checkpoint.dir);
    s.readInt("every_steps", c.checkpoint.every_steps);
    s.readInt("keep", c.checkpoint.keep);
    s.finish();
  }
  {
    auto s = top.section("metrics");
    s.readInt("port", c.metrics.port);
    s.readString("bind_address", c.metrics.bind_address);
    s.finish();
  }
  {
    auto s = top.section("limits");
    s.readInt("max_sessions", c.limits.max_sessions);
    s.readInt("max_sessions_per_peer", c.limits.max_sessions_per_peer);
    s.readInt("max_pending_sessions", c.limits.max_pending_sessions);
    s.readDouble("session_memory_mb", c.limits.session_memory_mb);
    s.readDouble("peer_messages_per_s", c.limits.peer_messages_per_s);
    s.readInt("peer_queue_messages", c.limits.peer_queue_messages);
    s.readDouble("peer_queue_mb", c.limits.peer_queue_mb);
    s.readInt("log_burst", c.limits.log_burst);
    s.readDouble("log_interval_s", c.limits.log_interval_s);
    s.finish();
  }
  {
    auto s = top.section("guard");
    s.readDouble("spike_factor", c.guard.spike_factor);
    s.readInt("window", c.guard.window);
    s.readInt("snapshot_every_steps", c.guard.snapshot_every_steps);
    s.readInt("max_rollbacks", c.guard.max_rollbacks);
    s.readDouble("lr_factor", c.guard.lr_factor);
    s.readInt("inject_nan_step", c.guard.inject_nan_step);
    s.readEnum("inject_nan_on", c.guard.inject_nan_on);
    s.finish();
  }
  {
    auto s = top.section("fleet");
    auto& f = c.fleet;
    s.readEnum("mode", f.mode);
    s.readInt("average_every", f.average_every);
    s.readInt("min_edges", f.min_edges);
    s.readDouble("round_timeout_s", f.round_timeout_s);
    s.readInt("max_cloud_batch", f.max_cloud_batch);
    s.readDouble("gather_ms", f.gather_ms);
    s.finish();
  }
  {
    auto s = top.section("log");
    s.readEnum("level", c.log.level);
    s.readEnum("format", c.log.format);
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
  if (c.fleet.max_cloud_batch == 0) c.fleet.max_cloud_batch = 4 * c.data.batch_size;
  return c;
}

Config parseRoot(YAML::Node root, Origin& origin, const std::vector<std::string>& overrides) {
  if (!root.IsDefined() || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  if (!root.IsMap()) {
    throw ConfigError(origin.source + ": the top level must be a mapping of sections (run:, data:, model:, ...), got " +
                      describe(root));
  }
  rejectDuplicateKeys(root, "", origin.source);
  for (const auto& assignment : overrides) applyOverride(root, assignment, origin);
  return parseTree(root, origin);
}

std::string syntaxError(const std::string& source, const YAML::Exception& e) {
  return markText(source, e.mark) + ": YAML syntax error: " + e.msg;
}

YAML::Node loadYaml(const std::string& yaml_text, const std::string& source) {
  try {
    return YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(syntaxError(source, e));
  }
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
  Origin origin{source, {}};
  return parseRoot(loadYaml(yaml_text, source), origin, overrides);
}

Config loadConfig(const std::string& path, const std::vector<std::string>& overrides) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    throw ConfigError("cannot read config file '" + path + "': it is a directory; --config names a YAML file");
  }
  std::ifstream in(path);
  if (!in) {
    throw ConfigError("cannot read config file '" + path + "': " + std::strerror(errno));
  }
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) throw ConfigError("cannot read config file '" + path + "': read error");
  YAML::Node root = loadYaml(text.str(), path);
  // An empty file is far more likely a wrong path or a truncated write than a wish for
  // every default; `{}` says the latter.
  if (!root.IsDefined() || root.IsNull()) {
    throw ConfigError("config file '" + path + "' is empty (no keys); write `{}` to train with every default");
  }
  Origin origin{path, {}};
  return parseRoot(root, origin, overrides);
}

std::string printConfig(const Config& config) {
  std::string out =
      "# Tandem config, fully resolved (defaults included) from " + config.source + "; --config accepts it back.\n";
  std::vector<std::string> open;  // the sections the last key was in
  for (const auto& k : configSchema()) {
    const auto parts = split(k.path, '.');
    std::size_t common = 0;
    while (common < open.size() && common + 1 < parts.size() && open[common] == parts[common]) ++common;
    for (std::size_t i = common; i + 1 < parts.size(); ++i) {
      out += std::string(2 * i, ' ') + parts[i] + ":\n";
    }
    open.assign(parts.begin(), parts.end() - 1);
    const std::string indent(2 * (parts.size() - 1), ' ');
    const std::string value = k.value(config);
    if (k.optional && value == yamlQuote("")) {
      out += indent + "# " + parts.back() + ": (not set)\n";
    } else {
      out += indent + parts.back() + ": " + value + "\n";
    }
  }
  return out;
}

std::vector<std::string> keysReadByParser() {
  std::set<std::string> read;
  Origin origin{"(schema check)", {}, &read};
  parseRoot(YAML::Node(YAML::NodeType::Map), origin, {});
  return {read.begin(), read.end()};
}

}  // namespace tandem::config

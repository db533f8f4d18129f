#pragma once
// The closed sets of values config keys take. Each is spelled in YAML, on the command line
// and in JSON exactly as in its EnumNames table (runtime/config/enum_names.h).

#include "runtime/config/enum_names.h"
#include "runtime/config/role.h"

namespace tandem::config {

// split.replay: how the edge gets the graph it back-propagates a late gradient through.
enum class Replay {
  kRecompute,  // re-run the forward of the edge's stages on the stored input (memory: inputs only)
  kRetain,     // keep the forward's autograd graph until the gradient arrives
};
template <>
struct EnumNames<Replay> {
  static constexpr std::pair<Replay, const char*> kValues[] = {{Replay::kRecompute, "recompute"},
                                                               {Replay::kRetain, "retain"}};
};

// split.compensation: how the edge tempers a gradient that is s updates stale.
enum class Compensation {
  kNone,
  kLr,        // step × 1/(1+s)
  kMomentum,  // SGD momentum μ → max(0, μ − s/(s+1))
};
template <>
struct EnumNames<Compensation> {
  static constexpr std::pair<Compensation, const char*> kValues[] = {
      {Compensation::kNone, "none"}, {Compensation::kLr, "lr"}, {Compensation::kMomentum, "momentum"}};
};

// guard.inject_nan_on: which side's fault injection makes a gradient NaN.
enum class FaultSide { kNone, kEdge, kCloud };
template <>
struct EnumNames<FaultSide> {
  static constexpr std::pair<FaultSide, const char*> kValues[] = {
      {FaultSide::kNone, "none"}, {FaultSide::kEdge, "edge"}, {FaultSide::kCloud, "cloud"}};
};

// data.shard.scheme: how a dataset's training split is cut into disjoint shards.
enum class ShardScheme {
  kIid,        // a seeded permutation cut into equal parts
  kDirichlet,  // per class, the shards' parts drawn from Dirichlet(alpha): skewed labels
};
template <>
struct EnumNames<ShardScheme> {
  static constexpr std::pair<ShardScheme, const char*> kValues[] = {{ShardScheme::kIid, "iid"},
                                                                    {ShardScheme::kDirichlet, "dirichlet"}};
};

// fleet.mode: how the cloud serves several edges.
enum class FleetMode {
  kOff,      // every session trains its own copy of the cloud's stages
  kShared,   // one copy of every stage for all sessions; the edges' stages are averaged
  kPerEdge,  // each session its own copy of the cloud's stages (SplitFed v1); all replicas averaged
};
template <>
struct EnumNames<FleetMode> {
  static constexpr std::pair<FleetMode, const char*> kValues[] = {
      {FleetMode::kOff, "off"}, {FleetMode::kShared, "shared"}, {FleetMode::kPerEdge, "per_edge"}};
};

// optimizer.name
enum class OptimizerKind { kSgd, kAdam };
template <>
struct EnumNames<OptimizerKind> {
  static constexpr std::pair<OptimizerKind, const char*> kValues[] = {{OptimizerKind::kSgd, "sgd"},
                                                                      {OptimizerKind::kAdam, "adam"}};
};

// optimizer.schedule.name: the learning-rate schedule (runtime/optim/schedule.h).
enum class LrSchedule { kNone, kStep, kMultistep, kCosine };
template <>
struct EnumNames<LrSchedule> {
  static constexpr std::pair<LrSchedule, const char*> kValues[] = {{LrSchedule::kNone, "none"},
                                                                   {LrSchedule::kStep, "step"},
                                                                   {LrSchedule::kMultistep, "multistep"},
                                                                   {LrSchedule::kCosine, "cosine"}};
};

// security.mode
enum class SecurityMode { kCurve, kPlaintext };
template <>
struct EnumNames<SecurityMode> {
  static constexpr std::pair<SecurityMode, const char*> kValues[] = {{SecurityMode::kCurve, "curve"},
                                                                     {SecurityMode::kPlaintext, "plaintext"}};
};

// log.level; spellings are the log facade's (runtime/common/log.h).
enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError };
template <>
struct EnumNames<LogLevel> {
  static constexpr std::pair<LogLevel, const char*> kValues[] = {{LogLevel::kTrace, "trace"},
                                                                 {LogLevel::kDebug, "debug"},
                                                                 {LogLevel::kInfo, "info"},
                                                                 {LogLevel::kWarn, "warn"},
                                                                 {LogLevel::kError, "error"}};
};

// log.format
enum class LogFormat { kText, kJson };
template <>
struct EnumNames<LogFormat> {
  static constexpr std::pair<LogFormat, const char*> kValues[] = {{LogFormat::kText, "text"},
                                                                  {LogFormat::kJson, "json"}};
};

}  // namespace tandem::config

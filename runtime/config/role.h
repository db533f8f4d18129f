#pragma once
// Which side of the split a process (or a summary, a metric, a profile) belongs to. A
// standalone run is role edge. Spelled "edge" / "cloud" in file names
// (summary-<role>.json, config-<role>.yaml), JSON and metric labels.

#include "runtime/config/enum_names.h"

namespace tandem::config {

enum class Role { kEdge, kCloud };

template <>
struct EnumNames<Role> {
  static constexpr std::pair<Role, const char*> kValues[] = {{Role::kEdge, "edge"}, {Role::kCloud, "cloud"}};
};

}  // namespace tandem::config

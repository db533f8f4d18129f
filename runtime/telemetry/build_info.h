#pragma once
// What this binary was built from, for tandem_build_info (metrics.h) and bug reports. The
// values come from CMake (cmake/TandemBuildInfo.cmake): the project version, the git
// commit of the source tree at build time ("<12 hex>", "-dirty" when tracked files
// differed from it, "unknown" outside a git checkout), the compiler and the build type.

#include <string>

namespace tandem::telemetry {

struct BuildInfo {
  std::string version;     // "0.1.0"
  std::string git_commit;  // "cc2586b1a2b3", "cc2586b1a2b3-dirty" or "unknown"
  std::string compiler;    // "GNU 12.2.0"
  std::string build_type;  // "Release", "Debug", …, "none"
};

const BuildInfo& buildInfo();

}  // namespace tandem::telemetry

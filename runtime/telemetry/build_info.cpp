#include "runtime/telemetry/build_info.h"

#include "runtime/telemetry/build_info_values.h"  // generated in the build tree (cmake/TandemBuildInfo.cmake)

namespace tandem::telemetry {

const BuildInfo& buildInfo() {
  static const BuildInfo info{TANDEM_BUILD_VERSION, TANDEM_BUILD_GIT_COMMIT, TANDEM_BUILD_COMPILER, TANDEM_BUILD_TYPE};
  return info;
}

}  // namespace tandem::telemetry

#include "runtime/common/error.h"

namespace tandem::detail {

void throwInvariant(const char* file, int line, const std::string& what) {
  std::string path(file);
  // Report paths relative to the source tree, not the build machine's absolute path.
  if (auto pos = path.rfind("/runtime/"); pos != std::string::npos) {
    path = path.substr(pos + 1);
  } else if (auto p2 = path.rfind("/compression/"); p2 != std::string::npos) {
    path = path.substr(p2 + 1);
  }
  throw InvariantError(concat(path, ":", line, ": ", what));
}

}  // namespace tandem::detail

#include "runtime/telemetry/memory.h"

#include <unistd.h>

#include <fstream>
#include <string>

namespace tandem::telemetry {

MemorySnapshot readMemory() {
  MemorySnapshot m;
  std::ifstream statm("/proc/self/statm");
  std::int64_t size = 0, resident = 0;
  if (statm >> size >> resident) m.rss_bytes = resident * static_cast<std::int64_t>(::sysconf(_SC_PAGESIZE));
  std::ifstream meminfo("/proc/meminfo");
  std::string key, unit;
  std::int64_t value = 0;
  while (meminfo >> key >> value >> unit) {
    if (key == "MemAvailable:") {
      m.available_bytes = value * 1024;
      break;
    }
  }
  return m;
}

}  // namespace tandem::telemetry

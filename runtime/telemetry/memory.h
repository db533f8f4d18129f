#pragma once
// Process and system memory, from /proc (Linux).

#include <cstdint>

namespace tandem::telemetry {

struct MemorySnapshot {
  std::int64_t rss_bytes = 0;        // this process's resident set
  std::int64_t available_bytes = 0;  // MemAvailable of the system
};

// Zeros where /proc cannot be read.
MemorySnapshot readMemory();

}  // namespace tandem::telemetry

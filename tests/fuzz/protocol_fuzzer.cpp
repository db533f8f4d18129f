// libFuzzer target for the message header and frame parser (TANDEM_BUILD_FUZZERS=ON, clang):
//   build-fuzz/tests/fuzz/protocol_fuzzer tests/fuzz/corpus/protocol -max_total_time=300
#include <cstdint>

#include "tests/fuzz/protocol_fuzz_entry.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  tandem::transport::fuzz::runProtocolFuzzInput(data, size);
  return 0;
}

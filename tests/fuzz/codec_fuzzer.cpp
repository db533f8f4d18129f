// libFuzzer target for the codec decoders. Build with -DTANDEM_BUILD_FUZZERS=ON and clang,
// then run, for example:
//   build-fuzz/tests/fuzz/codec_fuzzer -max_total_time=300 -max_len=4096 \
//       build-fuzz/corpus-work tests/fuzz/corpus/codec
// (new inputs go to the first directory; keep the committed corpus small and hand-picked).
// The input format is described in tests/fuzz/codec_fuzz_entry.h.

#include <cstddef>
#include <cstdint>

#include "tests/fuzz/codec_fuzz_entry.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  tandem::compression::fuzz::runCodecFuzzInput(data, size);
  return 0;
}

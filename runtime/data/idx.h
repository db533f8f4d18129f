#pragma once
// Reader for the IDX format (MNIST / Fashion-MNIST), gzipped or plain.

#include <cstdint>
#include <string>
#include <vector>

namespace tandem::data {

struct IdxArray {
  std::vector<std::int64_t> dims;
  std::vector<std::uint8_t> values;  // row-major, dims' product bytes
};

// Reads an unsigned-byte IDX file (type code 0x08) with `expected_rank` dimensions.
// Throws DataError naming the file on a missing file, bad magic, wrong rank, a size that
// does not match the header, or trailing bytes.
IdxArray readIdx(const std::string& path, int expected_rank);

// Reads the whole (optionally gzip-compressed) file, refusing more than `max_bytes`.
std::vector<std::uint8_t> readMaybeGzip(const std::string& path, std::size_t max_bytes);

}  // namespace tandem::data

#include "runtime/data/idx.h"

#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "runtime/common/error.h"

namespace tandem::data {

std::vector<std::uint8_t> readMaybeGzip(const std::string& path, std::size_t max_bytes) {
  errno = 0;
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) {
    throw DataError("cannot open '" + path + "': " + (errno ? std::strerror(errno) : "out of memory"));
  }
  std::unique_ptr<gzFile_s, int (*)(gzFile)> guard(file, gzclose);
  std::vector<std::uint8_t> bytes;
  std::uint8_t chunk[1 << 16];
  while (true) {
    const int n = gzread(file, chunk, sizeof chunk);
    if (n < 0) {
      int code = 0;
      const char* message = gzerror(file, &code);
      throw DataError("cannot read '" + path + "': " + (code == Z_ERRNO ? std::strerror(errno) : message));
    }
    if (n == 0) break;
    if (bytes.size() + static_cast<std::size_t>(n) > max_bytes) {
      throw DataError("'" + path + "' is larger than " + std::to_string(max_bytes) + " bytes; not an IDX file?");
    }
    bytes.insert(bytes.end(), chunk, chunk + n);
  }
  // gzread stops quietly at a truncated gzip stream; gzclose reports it.
  int code = 0;
  const char* message = gzerror(file, &code);
  if (code != Z_OK && code != Z_STREAM_END) {
    throw DataError("cannot read '" + path + "': " + message);
  }
  const int closed = gzclose(guard.release());
  if (closed == Z_BUF_ERROR) {
    throw DataError("'" + path + "' is truncated (gzip stream ends early)");
  }
  if (closed != Z_OK) throw DataError("cannot read '" + path + "': gzip error " + std::to_string(closed));
  return bytes;
}

IdxArray readIdx(const std::string& path, int expected_rank) {
  // The largest IDX file we accept: well above CIFAR-sized image sets, far below memory.
  constexpr std::size_t kMaxBytes = std::size_t{4} << 30;
  const std::vector<std::uint8_t> bytes = readMaybeGzip(path, kMaxBytes);
  if (bytes.size() < 4) {
    throw DataError("'" + path + "' is truncated: " + std::to_string(bytes.size()) + " bytes, no IDX header");
  }
  if (bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08) {
    char magic[16];
    std::snprintf(magic, sizeof magic, "%02x%02x%02x%02x", bytes[0], bytes[1], bytes[2], bytes[3]);
    throw DataError("'" + path + "' has bad magic 0x" + magic + " (expected an unsigned-byte IDX file, 0x000008..)");
  }
  const int rank = bytes[3];
  if (rank != expected_rank) {
    throw DataError("'" + path + "' has " + std::to_string(rank) + " dimensions, expected " +
                    std::to_string(expected_rank));
  }
  const std::size_t header = 4 + 4 * static_cast<std::size_t>(rank);
  if (bytes.size() < header) throw DataError("'" + path + "' is truncated inside its header");
  IdxArray array;
  std::size_t count = 1;
  for (int i = 0; i < rank; ++i) {
    const std::uint8_t* p = &bytes[4 + 4 * i];
    const std::uint32_t d = (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) |
                            (std::uint32_t{p[2]} << 8) | std::uint32_t{p[3]};
    array.dims.push_back(d);
    if (d != 0 && count > kMaxBytes / d) throw DataError("'" + path + "' declares an absurd size");
    count *= d;
  }
  const std::size_t payload = bytes.size() - header;
  if (payload < count) {
    throw DataError("'" + path + "' is truncated: header declares " + std::to_string(count) + " values, file has " +
                    std::to_string(payload));
  }
  if (payload > count) {
    throw DataError("'" + path + "' has " + std::to_string(payload - count) +
                    " bytes after the values its header declares");
  }
  array.values.assign(bytes.begin() + static_cast<std::ptrdiff_t>(header), bytes.end());
  return array;
}

}  // namespace tandem::data

#pragma once
// How codecs split large tensors across cores with oneTBB. Internal to compression/.
//
// Work runs in the caller's task arena, so a caller bounds the threads a codec uses by
// calling it inside a tbb::task_arena (the benchmarks do that for their one-thread rows).
// Chunk boundaries are fixed multiples of kChunkElements, never derived from the number of
// threads, and every reduction we run through here is exact (min, max, integer counts), so
// payloads are bit-identical whatever the thread count.

#include <algorithm>
#include <cstddef>
#include <utility>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/parallel_reduce.h>

namespace tandem::compression::detail {

// Elements per chunk: 256 KiB of float32, large enough that scheduling overhead is noise
// and small enough to balance 16 cores on a 16 MiB tensor. A multiple of 8 so that chunks
// start on a byte boundary for every packed bit-width.
inline constexpr std::size_t kChunkElements = std::size_t{1} << 16;

// Below this many elements (2 MiB of float32) a codec stays on the calling thread. One
// thread encodes int8 at ~25 GB/s and decodes at ~55 GB/s while the tensor is in cache, so
// a 2 MiB tensor takes 40–80 µs: splitting smaller ones would gain little over the few µs
// TBB needs to wake its workers. Not tuned on a many-core machine (the development VM has
// two shared vCPUs; benchmarks/codec has the .../tbb rows to redo that).
inline constexpr std::size_t kParallelMinElements = std::size_t{1} << 19;

inline bool runsInParallel(std::size_t n) { return n >= kParallelMinElements; }

// Calls body(begin, end) on consecutive element ranges that together cover [0, n), each
// starting at a multiple of kChunkElements; concurrently when n is large.
template <class Body>
void forEachChunk(std::size_t n, const Body& body) {
  if (n == 0) return;
  if (!runsInParallel(n)) {
    body(std::size_t{0}, n);
    return;
  }
  const std::size_t chunks = (n + kChunkElements - 1) / kChunkElements;
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, chunks), [&](const tbb::blocked_range<std::size_t>& r) {
    body(r.begin() * kChunkElements, std::min(n, r.end() * kChunkElements));
  });
}

// Reduces map(begin, end) over the same ranges with combine(a, b). `combine` must be
// associative and commutative and exact (the result may not depend on grouping).
template <class T, class Map, class Combine>
T reduceChunks(std::size_t n, T identity, const Map& map, const Combine& combine) {
  if (n == 0) return identity;
  if (!runsInParallel(n)) return combine(identity, map(std::size_t{0}, n));
  const std::size_t chunks = (n + kChunkElements - 1) / kChunkElements;
  return tbb::parallel_reduce(
      tbb::blocked_range<std::size_t>(0, chunks), identity,
      [&](const tbb::blocked_range<std::size_t>& r, T acc) {
        return combine(std::move(acc), map(r.begin() * kChunkElements, std::min(n, r.end() * kChunkElements)));
      },
      combine);
}

}  // namespace tandem::compression::detail

#pragma once
// The prefetching batch loader: a background thread gathers the batches of one epoch, in
// a seeded order, into a bounded queue so the training loop never waits on data
// preparation while the queue is full.
//
// Threading: startEpoch(), next() and stop() are called from one consumer thread.

#include <tbb/concurrent_queue.h>

#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "runtime/data/dataset.h"

namespace tandem::data {

struct LoaderOptions {
  std::int64_t batch_size = 64;
  bool shuffle = true;
  std::uint64_t seed = 0;
  std::int64_t max_batches = 0;  // 0: every batch of the split
  int prefetch = 4;              // queue capacity, in batches
};

// The order of the `n` example indices in `epoch`: a Fisher–Yates shuffle driven by a
// mt19937_64 seeded from (seed, epoch), identical on every platform; 0..n-1 when
// `shuffle` is false.
std::vector<std::int64_t> epochOrder(std::int64_t n, std::uint64_t seed, int epoch, bool shuffle);

class BatchLoader {
 public:
  BatchLoader(std::shared_ptr<const Dataset> dataset, LoaderOptions options);
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  // Batches in one epoch (the last one may be smaller), after max_batches.
  std::int64_t batchesPerEpoch() const;
  std::int64_t samplesPerEpoch() const;
  const Dataset& dataset() const { return *dataset_; }

  // Starts preparing `epoch`'s batches from `first_batch` on (resume skips the others).
  // Stops any epoch still in progress.
  void startEpoch(int epoch, std::int64_t first_batch = 0);

  // The next batch of the current epoch; nullopt at its end. Rethrows an error raised
  // while preparing a batch.
  std::optional<Batch> next();

  // Stops the background thread; safe to call more than once.
  void stop();

 private:
  void produce(int epoch, std::int64_t first_batch);

  std::shared_ptr<const Dataset> dataset_;
  LoaderOptions options_;
  // nullopt marks the end of an epoch (or an error, see error_).
  tbb::concurrent_bounded_queue<std::optional<Batch>> queue_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> producer_done_{true};
  std::exception_ptr error_;
  bool finished_ = true;
};

}  // namespace tandem::data

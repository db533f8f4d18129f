#include "runtime/data/loader.h"

#include <algorithm>
#include <random>

#include "runtime/common/error.h"

namespace tandem::data {

std::vector<std::int64_t> epochOrder(std::int64_t n, std::uint64_t seed, int epoch, bool shuffle) {
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = i;
  if (!shuffle || n < 2) return order;
  // Mix the epoch into the seed (splitmix64 constant) so consecutive epochs differ.
  std::mt19937_64 rng(seed ^ (0x9E3779B97F4A7C15ULL * (static_cast<std::uint64_t>(epoch) + 1)));
  for (std::int64_t i = n - 1; i > 0; --i) {
    // Unbiased integer in [0, i] by rejection (std::uniform_int_distribution differs
    // between standard libraries; this does not).
    const std::uint64_t range = static_cast<std::uint64_t>(i) + 1;
    const std::uint64_t limit = std::numeric_limits<std::uint64_t>::max() - std::numeric_limits<std::uint64_t>::max() % range;
    std::uint64_t r;
    do {
      r = rng();
    } while (r >= limit);
    std::swap(order[static_cast<std::size_t>(i)], order[static_cast<std::size_t>(r % range)]);
  }
  return order;
}

BatchLoader::BatchLoader(std::shared_ptr<const Dataset> dataset, LoaderOptions options)
    : dataset_(std::move(dataset)), options_(options) {
  TANDEM_ENFORCE(options_.batch_size > 0);
  TANDEM_ENFORCE(options_.prefetch > 0);
  queue_.set_capacity(options_.prefetch);
}

BatchLoader::~BatchLoader() { stop(); }

std::int64_t BatchLoader::batchesPerEpoch() const {
  const std::int64_t all = (dataset_->size() + options_.batch_size - 1) / options_.batch_size;
  return options_.max_batches > 0 ? std::min(all, options_.max_batches) : all;
}

std::int64_t BatchLoader::samplesPerEpoch() const {
  return std::min(dataset_->size(), batchesPerEpoch() * options_.batch_size);
}

void BatchLoader::startEpoch(int epoch, std::int64_t first_batch) {
  stop();
  stopping_ = false;
  error_ = nullptr;
  finished_ = false;
  producer_done_ = false;
  queue_.clear();
  thread_ = std::thread([this, epoch, first_batch] { produce(epoch, first_batch); });
}

void BatchLoader::produce(int epoch, std::int64_t first_batch) {
  struct Done {
    std::atomic<bool>& flag;
    ~Done() { flag = true; }
  } done{producer_done_};
  try {
    const auto order = epochOrder(dataset_->size(), options_.seed, epoch, options_.shuffle);
    const std::int64_t batches = batchesPerEpoch();
    for (std::int64_t b = first_batch; b < batches && !stopping_; ++b) {
      const auto begin = static_cast<std::size_t>(b * options_.batch_size);
      const auto end = std::min(order.size(), begin + static_cast<std::size_t>(options_.batch_size));
      std::vector<std::int64_t> indices(order.begin() + static_cast<std::ptrdiff_t>(begin),
                                        order.begin() + static_cast<std::ptrdiff_t>(end));
      Batch batch = dataset_->gather(indices);
      batch.index = b;
      queue_.push(std::move(batch));
    }
    queue_.push(std::nullopt);
  } catch (const tbb::user_abort&) {
    // stop() aborted a blocked push.
  } catch (...) {
    error_ = std::current_exception();
    try {
      queue_.push(std::nullopt);
    } catch (const tbb::user_abort&) {
    }
  }
}

std::optional<Batch> BatchLoader::next() {
  if (finished_) return std::nullopt;
  std::optional<Batch> item;
  queue_.pop(item);
  if (!item) {
    finished_ = true;
    if (thread_.joinable()) thread_.join();
    if (error_) std::rethrow_exception(error_);
  }
  return item;
}

void BatchLoader::stop() {
  stopping_ = true;
  if (thread_.joinable()) {
    // The producer may be blocked in push() or about to push: keep waking and draining
    // until it has left produce().
    while (!producer_done_) {
      queue_.abort();
      std::optional<Batch> discarded;
      while (queue_.try_pop(discarded)) {
      }
      std::this_thread::yield();
    }
    thread_.join();
  }
  queue_.clear();
  finished_ = true;
}

}  // namespace tandem::data

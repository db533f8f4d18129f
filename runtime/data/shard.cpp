#include "runtime/data/shard.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <utility>

#include "runtime/common/error.h"
#include "runtime/config/enum_names.h"

namespace tandem::data {

namespace {

// One stream per scheme, both derived from data.shard.seed alone (splitmix64 finaliser),
// so the cut never follows run.seed or the loader's shuffling.
std::uint64_t streamSeed(std::uint64_t seed, std::uint64_t stream) {
  std::uint64_t z = seed + 0x9E3779B97F4A7C15ULL * (stream + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Unbiased integer in [0, range) by rejection (std::uniform_int_distribution differs
// between standard libraries; this does not).
std::uint64_t uniformBelow(std::mt19937_64& rng, std::uint64_t range) {
  const std::uint64_t limit =
      std::numeric_limits<std::uint64_t>::max() - std::numeric_limits<std::uint64_t>::max() % range;
  std::uint64_t r = 0;
  do {
    r = rng();
  } while (r >= limit);
  return r % range;
}

void shuffle(std::vector<std::int64_t>& values, std::mt19937_64& rng) {
  for (std::size_t i = values.size(); i > 1; --i) {
    std::swap(values[i - 1], values[static_cast<std::size_t>(uniformBelow(rng, i))]);
  }
}

void validate(const config::ShardConfig& shard) {
  if (shard.count < 1) throw ConfigError(fmt::format("data.shard.count: {} (must be at least 1)", shard.count));
  if (shard.index < 0 || shard.index >= shard.count) {
    throw ConfigError(
        fmt::format("data.shard.index: shard {} of {} (0-based: below data.shard.count)", shard.index, shard.count));
  }
  if (shard.scheme == config::ShardScheme::kDirichlet && !(shard.alpha > 0 && std::isfinite(shard.alpha))) {
    throw ConfigError(fmt::format("data.shard.alpha: {} (must be a positive number)", shard.alpha));
  }
}

std::vector<std::int64_t> iidShard(std::int64_t n, const config::ShardConfig& shard) {
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), std::int64_t{0});
  std::mt19937_64 rng(streamSeed(shard.seed, 0));
  shuffle(order, rng);
  // n = q·count + r: shards 0..r-1 hold q + 1 samples, the others q (so with fewer
  // samples than shards, the last ones are empty).
  const std::int64_t q = n / shard.count;
  const std::int64_t r = n % shard.count;
  const std::int64_t begin = shard.index * q + std::min<std::int64_t>(shard.index, r);
  const std::int64_t size = q + (shard.index < r ? 1 : 0);
  return {order.begin() + static_cast<std::ptrdiff_t>(begin),
          order.begin() + static_cast<std::ptrdiff_t>(begin + size)};
}

std::vector<std::int64_t> dirichletShard(const torch::Tensor& labels, std::int64_t num_classes,
                                         const config::ShardConfig& shard) {
  TANDEM_ENFORCE(num_classes > 0, "num_classes ", num_classes);
  const auto values = labels.contiguous();
  const auto* label = values.data_ptr<std::int64_t>();
  const std::int64_t n = values.size(0);
  std::vector<std::vector<std::int64_t>> by_class(static_cast<std::size_t>(num_classes));
  for (std::int64_t i = 0; i < n; ++i) {
    if (label[i] < 0 || label[i] >= num_classes) {
      throw DataError(
          fmt::format("sample {} has label {}, outside the dataset's {} classes (data.shard.scheme "
                      "dirichlet needs labels in [0, {}))",
                      i, label[i], num_classes, num_classes));
    }
    by_class[static_cast<std::size_t>(label[i])].push_back(i);
  }

  std::mt19937_64 rng(streamSeed(shard.seed, 1));
  std::gamma_distribution<double> gamma(shard.alpha, 1.0);
  const auto count = static_cast<std::size_t>(shard.count);
  std::vector<double> weights(count);
  std::vector<std::int64_t> result;
  // Every class draws its proportions and its order whether or not it has samples, so
  // the stream, and with it the cut, depends only on (num_classes, count, alpha, seed).
  for (auto& members : by_class) {
    double sum = 0.0;
    for (auto& w : weights) {
      w = gamma(rng);
      sum += w;
    }
    if (!(sum > 0.0)) {
      // Every variate underflowed (tiny alpha): Dirichlet's limit, one shard takes all.
      std::fill(weights.begin(), weights.end(), 0.0);
      weights[static_cast<std::size_t>(uniformBelow(rng, count))] = 1.0;
      sum = 1.0;
    }
    shuffle(members, rng);
    // Consecutive parts at the rounded cumulative proportions: disjoint, and together the
    // whole class.
    const auto size = static_cast<double>(members.size());
    double cumulative = 0.0;
    std::size_t begin = 0;
    for (std::size_t k = 0; k < count; ++k) {
      cumulative += weights[k];
      std::size_t end = members.size();
      if (k + 1 < count) {
        end = std::clamp(static_cast<std::size_t>(std::llround(size * std::min(1.0, cumulative / sum))), begin,
                         members.size());
      }
      if (k == static_cast<std::size_t>(shard.index)) {
        result.insert(result.end(), members.begin() + static_cast<std::ptrdiff_t>(begin),
                      members.begin() + static_cast<std::ptrdiff_t>(end));
      }
      begin = end;
    }
  }
  return result;
}

}  // namespace

std::vector<std::int64_t> shardIndices(const torch::Tensor& labels, std::int64_t num_classes,
                                       const config::ShardConfig& shard) {
  validate(shard);
  TANDEM_ENFORCE(labels.defined() && labels.dim() == 1 && labels.scalar_type() == torch::kInt64,
                 "labels must be int64 [N]");
  const std::int64_t n = labels.size(0);
  std::vector<std::int64_t> indices;
  if (shard.count == 1) {
    indices.resize(static_cast<std::size_t>(n));
    std::iota(indices.begin(), indices.end(), std::int64_t{0});
    return indices;
  }
  indices = shard.scheme == config::ShardScheme::kIid ? iidShard(n, shard) : dirichletShard(labels, num_classes, shard);
  if (indices.empty()) {
    const std::string remedy = shard.scheme == config::ShardScheme::kIid
                                   ? "lower data.shard.count to at most the split's size"
                                   : "raise data.shard.alpha, lower data.shard.count or try another data.shard.seed";
    throw DataError(
        fmt::format("data.shard: {} holds none of the split's {} samples; {}", shardName(shard), n, remedy));
  }
  std::sort(indices.begin(), indices.end());
  return indices;
}

ShardedDataset::ShardedDataset(std::shared_ptr<const Dataset> base, std::vector<std::int64_t> indices)
    : base_(std::move(base)), indices_(std::move(indices)) {
  TANDEM_ENFORCE(base_ != nullptr);
  const std::int64_t n = base_->size();
  for (const auto i : indices_) TANDEM_ENFORCE(i >= 0 && i < n, "index ", i, " outside the base's ", n, " examples");
}

Batch ShardedDataset::gather(const std::vector<std::int64_t>& indices) const {
  std::vector<std::int64_t> mapped;
  mapped.reserve(indices.size());
  for (const auto i : indices) {
    TANDEM_ENFORCE(i >= 0 && i < size(), "index ", i, " outside the shard's ", size(), " examples");
    mapped.push_back(indices_[static_cast<std::size_t>(i)]);
  }
  return base_->gather(mapped);
}

torch::Tensor ShardedDataset::labels() const {
  return base_->labels().index_select(0, torch::tensor(indices_, torch::kInt64));
}

std::shared_ptr<const Dataset> shardDataset(std::shared_ptr<const Dataset> dataset, const config::ShardConfig& shard) {
  validate(shard);
  if (shard.count == 1) return dataset;
  auto indices = shardIndices(dataset->labels(), dataset->info().num_classes, shard);
  return std::make_shared<ShardedDataset>(std::move(dataset), std::move(indices));
}

std::string shardName(const config::ShardConfig& shard) {
  std::string text = fmt::format("shard {} of {} ({}", shard.index, shard.count, config::toString(shard.scheme));
  if (shard.scheme == config::ShardScheme::kDirichlet) text += fmt::format(", alpha {}", shard.alpha);
  return text + fmt::format(", seed {})", shard.seed);
}

std::vector<std::int64_t> classHistogram(const torch::Tensor& labels, std::int64_t num_classes) {
  TANDEM_ENFORCE(labels.dim() == 1 && labels.scalar_type() == torch::kInt64, "labels must be int64 [N]");
  std::vector<std::int64_t> counts(static_cast<std::size_t>(std::max<std::int64_t>(num_classes, 0)), 0);
  const auto values = labels.contiguous();
  const auto* label = values.data_ptr<std::int64_t>();
  for (std::int64_t i = 0; i < values.size(0); ++i) {
    if (label[i] >= 0 && label[i] < num_classes) ++counts[static_cast<std::size_t>(label[i])];
  }
  return counts;
}

}  // namespace tandem::data

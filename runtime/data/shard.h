#pragma once
// Shards: a deterministic disjoint part of a training split, so each edge of a fleet
// trains on its own samples (data.shard.*). The cut depends only on the split's labels and
// (count, scheme, alpha, seed), never on run.seed, so every edge computes the same cut and
// shards 0..count-1 are disjoint and together hold every sample. The test split is never
// sharded.

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/config/config.h"
#include "runtime/data/dataset.h"

namespace tandem::data {

// The indices of shard `shard.index` of a split with `labels` (int64 [N], each in
// [0, num_classes)), in ascending order; 0..N-1 when shard.count is 1.
//   iid:       a permutation seeded by shard.seed, cut into `count` contiguous parts whose
//              sizes differ by at most 1.
//   dirichlet: for each class, proportions over the shards drawn from Dirichlet(alpha)
//              (Gamma(alpha, 1) variates of a mt19937_64 seeded by shard.seed, normalised);
//              the class's samples, in a seeded order, are cut into consecutive parts by
//              those proportions.
// Throws ConfigError when index/count/alpha are out of range, DataError when a label is
// out of range or the shard would hold no sample (naming the data.shard.* keys to change).
std::vector<std::int64_t> shardIndices(const torch::Tensor& labels, std::int64_t num_classes,
                                       const config::ShardConfig& shard);

// A view of the examples of `base` at `indices` (example i is base's indices[i]). Shares
// `base`; read-only like it, so gather() may be called from any thread.
class ShardedDataset final : public Dataset {
 public:
  ShardedDataset(std::shared_ptr<const Dataset> base, std::vector<std::int64_t> indices);

  const DatasetInfo& info() const override { return base_->info(); }
  std::int64_t size() const override { return static_cast<std::int64_t>(indices_.size()); }
  Batch gather(const std::vector<std::int64_t>& indices) const override;
  torch::Tensor labels() const override;

  const Dataset& base() const { return *base_; }
  // Positions in base() of this view's examples.
  const std::vector<std::int64_t>& indices() const { return indices_; }

 private:
  std::shared_ptr<const Dataset> base_;
  std::vector<std::int64_t> indices_;
};

// `dataset` itself when shard.count is 1, else the ShardedDataset of its shard.
std::shared_ptr<const Dataset> shardDataset(std::shared_ptr<const Dataset> dataset, const config::ShardConfig& shard);

// "shard 2 of 8 (dirichlet, alpha 0.3, seed 1)": for log lines and errors.
std::string shardName(const config::ShardConfig& shard);

// Examples per class of `labels` (int64 [N]): [num_classes].
std::vector<std::int64_t> classHistogram(const torch::Tensor& labels, std::int64_t num_classes);

}  // namespace tandem::data

#include <ATen/CPUGeneratorImpl.h>
#include <torch/types.h>

#include "runtime/data/dataset.h"

namespace tandem::data {

// Each class has a fixed random prototype image; a sample is its class prototype plus
// Gaussian noise. Learnable in a few steps at low noise, deterministic from the seed.
std::unique_ptr<Dataset> makeSynthetic(const config::SyntheticDataConfig& c, std::uint64_t seed, Split split) {
  auto prototypes_gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto prototypes = torch::randn({c.num_classes, c.channels, c.height, c.width}, prototypes_gen);
  const std::int64_t n = split == Split::kTrain ? c.train_size : c.test_size;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed * 2 + (split == Split::kTrain ? 1 : 2));
  auto labels = torch::randint(c.num_classes, {n}, gen, torch::kInt64);
  auto images = prototypes.index_select(0, labels) + c.noise * torch::randn({n, c.channels, c.height, c.width}, gen);
  return std::make_unique<TensorDataset>(DatasetInfo{"synthetic", c.channels, c.height, c.width, c.num_classes},
                                         images.contiguous(), labels);
}

}  // namespace tandem::data

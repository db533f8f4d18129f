#include "runtime/data/dataset.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <numeric>

#include "runtime/common/error.h"
#include "runtime/common/strings.h"

namespace tandem::data {

const char* splitName(Split split) { return split == Split::kTrain ? "train" : "test"; }

torch::Tensor Dataset::labels() const {
  constexpr std::int64_t kChunk = 4096;
  const std::int64_t n = size();
  std::vector<torch::Tensor> parts;
  for (std::int64_t begin = 0; begin < n; begin += kChunk) {
    std::vector<std::int64_t> indices(static_cast<std::size_t>(std::min(kChunk, n - begin)));
    std::iota(indices.begin(), indices.end(), begin);
    parts.push_back(gather(indices).labels);
  }
  return parts.empty() ? torch::empty({0}, torch::kInt64) : torch::cat(parts);
}

TensorDataset::TensorDataset(DatasetInfo info, torch::Tensor images, torch::Tensor labels, std::vector<float> mean,
                             std::vector<float> std)
    : info_(std::move(info)), images_(std::move(images)), labels_(std::move(labels)) {
  TANDEM_ENFORCE(images_.dim() == 4, "images must be [N, C, H, W], got rank ", images_.dim());
  TANDEM_ENFORCE_EQ(images_.size(0), labels_.size(0), "images and labels count");
  TANDEM_ENFORCE(images_.scalar_type() == torch::kUInt8 || images_.scalar_type() == torch::kFloat32);
  TANDEM_ENFORCE(labels_.scalar_type() == torch::kInt64);
  if (!mean.empty()) {
    TANDEM_ENFORCE_EQ(static_cast<std::int64_t>(mean.size()), info_.channels, "mean per channel");
    TANDEM_ENFORCE_EQ(mean.size(), std.size());
    TANDEM_ENFORCE(images_.scalar_type() == torch::kUInt8, "mean/std normalise uint8 images");
  }
  info_.uint8_pixels = images_.scalar_type() == torch::kUInt8;
  info_.mean = std::move(mean);
  info_.std = std::move(std);
}

torch::Tensor normalizePixels(const torch::Tensor& pixels, const DatasetInfo& info) {
  TANDEM_ENFORCE(pixels.scalar_type() == torch::kUInt8, "pixels must be uint8");
  auto x = pixels.to(torch::kFloat32).mul_(1.0f / 255.0f);
  if (!info.mean.empty()) {
    const auto c = static_cast<std::int64_t>(info.mean.size());
    const auto mean = torch::tensor(info.mean).view({1, c, 1, 1});
    const auto inv_std = 1.0 / torch::tensor(info.std).view({1, c, 1, 1});
    x.sub_(mean).mul_(inv_std);
  }
  return x;
}

Batch TensorDataset::gather(const std::vector<std::int64_t>& indices) const {
  const auto index = torch::tensor(indices, torch::kInt64);
  Batch batch;
  batch.inputs = images_.index_select(0, index);
  if (batch.inputs.scalar_type() == torch::kUInt8) {
    batch.pixels = batch.inputs;
    batch.inputs = normalizePixels(batch.pixels, info_);
  }
  batch.labels = labels_.index_select(0, index);
  return batch;
}

DatasetInfo fashionMnistInfo(bool normalize) {
  DatasetInfo info{"fashion_mnist", 1, 28, 28, 10};
  info.uint8_pixels = true;
  if (normalize) {
    info.mean = {0.2860f};  // Fashion-MNIST training-set statistics
    info.std = {0.3530f};
  }
  return info;
}

DatasetInfo cifar10Info(bool normalize) {
  DatasetInfo info{"cifar10", 3, 32, 32, 10};
  info.uint8_pixels = true;
  if (normalize) {
    info.mean = {0.4914f, 0.4822f, 0.4465f};  // CIFAR-10 training-set statistics
    info.std = {0.2470f, 0.2435f, 0.2616f};
  }
  return info;
}

namespace {

struct Entry {
  DatasetFactory factory;
  InfoFactory info;
};

struct Registry {
  std::mutex mutex;
  std::map<std::string, Entry> entries;
};

Registry& registry() {
  static Registry r;
  return r;
}

const Entry& lookup(const std::string& name) {
  registerBuiltinDatasets();
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto it = r.entries.find(name);
  if (it == r.entries.end()) {
    std::vector<std::string> names;
    for (const auto& [n, e] : r.entries) names.push_back(n);
    std::string message = "unknown dataset '" + name + "'";
    if (auto guess = closestMatch(name, names); !guess.empty()) message += " (did you mean '" + guess + "'?)";
    throw ConfigError(message + "; known: " + join(names));
  }
  return it->second;
}

}  // namespace

void registerDataset(const std::string& name, DatasetFactory factory, InfoFactory info) {
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  if (!r.entries.emplace(name, Entry{std::move(factory), std::move(info)}).second) {
    throw InvariantError("dataset '" + name + "' registered twice");
  }
}

void registerBuiltinDatasets() {
  static std::once_flag once;
  std::call_once(once, [] {
    registerDataset(
        "fashion_mnist", [](const config::DataConfig& c, Split s) { return loadFashionMnist(c.path, s, c.normalize); },
        [](const config::DataConfig& c) { return fashionMnistInfo(c.normalize); });
    registerDataset(
        "cifar10", [](const config::DataConfig& c, Split s) { return loadCifar10(c.path, s, c.normalize); },
        [](const config::DataConfig& c) { return cifar10Info(c.normalize); });
    registerDataset(
        "synthetic",
        // The synthetic set is seeded by its own shape so edge and cloud agree without
        // sharing run.seed; the loader's shuffling uses run.seed.
        [](const config::DataConfig& c, Split s) { return makeSynthetic(c.synthetic, 0x5eed, s); },
        [](const config::DataConfig& c) {
          const auto& s = c.synthetic;
          return DatasetInfo{"synthetic", s.channels, s.height, s.width, s.num_classes};
        });
  });
}

std::vector<std::string> datasetNames() {
  registerBuiltinDatasets();
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  std::vector<std::string> names;
  for (const auto& [n, e] : r.entries) names.push_back(n);
  return names;
}

std::unique_ptr<Dataset> makeDataset(const config::DataConfig& config, Split split) {
  return lookup(config.dataset).factory(config, split);
}

DatasetInfo datasetInfo(const config::DataConfig& config) { return lookup(config.dataset).info(config); }

}  // namespace tandem::data

#include "runtime/data/dataset.h"

#include <map>
#include <mutex>

#include "runtime/common/error.h"
#include "runtime/common/strings.h"

namespace tandem::data {

const char* splitName(Split split) { return split == Split::kTrain ? "train" : "test"; }

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
    mean_ = torch::tensor(mean).view({1, info_.channels, 1, 1});
    inv_std_ = 1.0 / torch::tensor(std).view({1, info_.channels, 1, 1});
  }
}

Batch TensorDataset::gather(const std::vector<std::int64_t>& indices) const {
  const auto index = torch::tensor(indices, torch::kInt64);
  Batch batch;
  batch.inputs = images_.index_select(0, index);
  if (batch.inputs.scalar_type() == torch::kUInt8) {
    batch.inputs = batch.inputs.to(torch::kFloat32).mul_(1.0f / 255.0f);
  }
  if (mean_.defined()) batch.inputs.sub_(mean_).mul_(inv_std_);
  batch.labels = labels_.index_select(0, index);
  return batch;
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
        "fashion_mnist",
        [](const config::DataConfig& c, Split s) { return loadFashionMnist(c.path, s, c.normalize); },
        [](const config::DataConfig&) { return DatasetInfo{"fashion_mnist", 1, 28, 28, 10}; });
    registerDataset(
        "cifar10", [](const config::DataConfig& c, Split s) { return loadCifar10(c.path, s, c.normalize); },
        [](const config::DataConfig&) { return DatasetInfo{"cifar10", 3, 32, 32, 10}; });
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

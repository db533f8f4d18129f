#pragma once
// Datasets: in-memory splits read from files (Fashion-MNIST IDX, CIFAR-10 binary) or
// generated (synthetic), looked up by name in a registry filled by
// registerBuiltinDatasets(). Only the edge holds data; the cloud only needs the shape
// (DatasetInfo) to build its stages.

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "runtime/config/config.h"

namespace tandem::data {

enum class Split { kTrain, kTest };
const char* splitName(Split split);

struct DatasetInfo {
  DatasetInfo() = default;
  DatasetInfo(std::string dataset, std::int64_t c, std::int64_t h, std::int64_t w, std::int64_t classes)
      : name(std::move(dataset)), channels(c), height(h), width(w), num_classes(classes) {}

  std::string name;
  std::int64_t channels = 0;
  std::int64_t height = 0;
  std::int64_t width = 0;
  std::int64_t num_classes = 0;
  // The dataset's native samples are uint8 pixels, turned into the model's float32 input
  // by normalizePixels() with `mean`/`std` per channel (empty: scaled to [0, 1] only).
  // Split at p = 0, the edge sends these bytes and the cloud normalises them.
  bool uint8_pixels = false;
  std::vector<float> mean;
  std::vector<float> std;

  std::vector<std::int64_t> sampleShape() const { return {channels, height, width}; }
};

// A batch ready for the model: inputs float32 [N, C, H, W] (normalised), labels int64 [N].
struct Batch {
  torch::Tensor inputs;
  torch::Tensor labels;
  std::int64_t index = 0;  // position of the batch within its epoch
  torch::Tensor pixels;    // uint8 [N, C, H, W] the inputs came from (uint8_pixels datasets only)

  std::int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
};

// Read-only after construction; gather() may be called from any thread.
class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual const DatasetInfo& info() const = 0;
  virtual std::int64_t size() const = 0;
  // The examples at `indices`, normalised, as one batch.
  virtual Batch gather(const std::vector<std::int64_t>& indices) const = 0;
  // Every example's label, int64 [size()] (sharding by class needs them). The default
  // gathers the whole split batch by batch; datasets that hold their labels override it.
  virtual torch::Tensor labels() const;
};

// A split held as tensors: images uint8 or float32 [N, C, H, W], labels int64 [N].
// uint8 images are scaled to [0, 1] and, when mean/std are given, normalised per channel
// (normalizePixels); `info` then records that and the statistics.
class TensorDataset final : public Dataset {
 public:
  TensorDataset(DatasetInfo info, torch::Tensor images, torch::Tensor labels, std::vector<float> mean = {},
                std::vector<float> std = {});
  const DatasetInfo& info() const override { return info_; }
  std::int64_t size() const override { return labels_.size(0); }
  Batch gather(const std::vector<std::int64_t>& indices) const override;
  torch::Tensor labels() const override { return labels_; }

  const torch::Tensor& images() const { return images_; }

 private:
  DatasetInfo info_;
  torch::Tensor images_;
  torch::Tensor labels_;
};

// uint8 pixels [N, C, H, W] → float32 model input as `info` says: × 1/255, then per
// channel (x − mean) × 1/std. The one definition of the transform, so the edge's own input
// and the cloud's normalisation of pixels sent at p = 0 are the same floats.
torch::Tensor normalizePixels(const torch::Tensor& pixels, const DatasetInfo& info);

// The DatasetInfo of the built-in image sets, with their training-set statistics when
// `normalize`.
DatasetInfo fashionMnistInfo(bool normalize);
DatasetInfo cifar10Info(bool normalize);

// Builds one split from the data config. Throws DataError naming the file when a file is
// missing, truncated or corrupt.
using DatasetFactory = std::function<std::unique_ptr<Dataset>(const config::DataConfig&, Split)>;
// The shape and class count without reading the data (the cloud needs only these).
using InfoFactory = std::function<DatasetInfo(const config::DataConfig&)>;

void registerDataset(const std::string& name, DatasetFactory factory, InfoFactory info);
void registerBuiltinDatasets();  // fashion_mnist, cifar10, synthetic; idempotent
std::vector<std::string> datasetNames();

std::unique_ptr<Dataset> makeDataset(const config::DataConfig& config, Split split);
DatasetInfo datasetInfo(const config::DataConfig& config);

// Implementations (one file each), exposed for tests.
std::unique_ptr<Dataset> loadFashionMnist(const std::string& directory, Split split, bool normalize);
std::unique_ptr<Dataset> loadCifar10(const std::string& directory, Split split, bool normalize);
std::unique_ptr<Dataset> makeSynthetic(const config::SyntheticDataConfig& config, std::uint64_t seed, Split split);

}  // namespace tandem::data

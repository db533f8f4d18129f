#include <torch/types.h>

#include "runtime/common/error.h"
#include "runtime/data/dataset.h"
#include "runtime/data/idx.h"

namespace tandem::data {

std::unique_ptr<Dataset> loadFashionMnist(const std::string& directory, Split split, bool normalize) {
  const std::string prefix = directory + "/" + (split == Split::kTrain ? "train" : "t10k");
  const std::string images_path = prefix + "-images-idx3-ubyte.gz";
  const std::string labels_path = prefix + "-labels-idx1-ubyte.gz";
  IdxArray images = readIdx(images_path, 3);
  IdxArray labels = readIdx(labels_path, 1);
  if (images.dims[0] != labels.dims[0]) {
    throw DataError("'" + images_path + "' holds " + std::to_string(images.dims[0]) + " images but '" + labels_path +
                    "' holds " + std::to_string(labels.dims[0]) + " labels");
  }
  if (images.dims[1] != 28 || images.dims[2] != 28) {
    throw DataError("'" + images_path + "' holds " + std::to_string(images.dims[1]) + "x" +
                    std::to_string(images.dims[2]) + " images, expected 28x28");
  }
  const std::int64_t n = images.dims[0];
  for (std::int64_t i = 0; i < n; ++i) {
    if (labels.values[i] > 9) {
      throw DataError("'" + labels_path + "': label " + std::to_string(labels.values[i]) + " at index " +
                      std::to_string(i) + " is outside 0..9");
    }
  }
  auto image_tensor = torch::from_blob(images.values.data(), {n, 1, 28, 28}, torch::kUInt8).clone();
  auto label_tensor = torch::from_blob(labels.values.data(), {n}, torch::kUInt8).to(torch::kInt64);
  auto info = fashionMnistInfo(normalize);
  return std::make_unique<TensorDataset>(info, std::move(image_tensor), std::move(label_tensor), info.mean, info.std);
}

}  // namespace tandem::data

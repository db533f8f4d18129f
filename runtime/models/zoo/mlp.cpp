// mlp: four fully connected stages. Stage 0 flattens the image.
//   0: flatten, 784→512, ReLU   1: 512→256, ReLU   2: 256→128, ReLU   3: 128→classes
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/linear.h>

#include "runtime/models/zoo/zoo.h"

namespace tandem::models::zoo {

std::vector<Stage> mlp(const ModelSpec& spec) {
  namespace nn = torch::nn;
  const std::int64_t in = spec.channels * spec.height * spec.width;
  return {
      Stage(nn::Flatten(), nn::Linear(in, 512), nn::ReLU()),
      Stage(nn::Linear(512, 256), nn::ReLU()),
      Stage(nn::Linear(256, 128), nn::ReLU()),
      Stage(nn::Linear(128, spec.num_classes)),
  };
}

}  // namespace tandem::models::zoo

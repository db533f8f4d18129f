// vgg11 with BatchNorm, nine stages: one per convolution (conv3x3, BN, ReLU, and the
// max-pool that follows it in VGG's configuration A), then the classifier. A pool is
// skipped once the feature map is 1×1 (small inputs such as 28×28).
//   0: 64, pool   1: 128, pool   2: 256   3: 256, pool   4: 512   5: 512, pool
//   6: 512   7: 512, pool   8: global average pool, flatten, 512→classes
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>

#include <utility>

#include "runtime/models/zoo/zoo.h"

namespace tandem::models::zoo {

std::vector<Stage> vgg11(const ModelSpec& spec) {
  namespace nn = torch::nn;
  const std::pair<std::int64_t, bool> layers[] = {{64, true},   {128, true}, {256, false}, {256, true},
                                                  {512, false}, {512, true}, {512, false}, {512, true}};
  std::vector<Stage> stages;
  std::int64_t in = spec.channels;
  std::int64_t h = spec.height;
  std::int64_t w = spec.width;
  for (const auto& [out, pool] : layers) {
    Stage stage(nn::Conv2d(nn::Conv2dOptions(in, out, 3).padding(1).bias(false)), nn::BatchNorm2d(out),
                         nn::ReLU());
    if (pool && h >= 2 && w >= 2) {
      stage->push_back(nn::MaxPool2d(2));
      h /= 2;
      w /= 2;
    }
    stages.push_back(stage);
    in = out;
  }
  stages.push_back(Stage(nn::AdaptiveAvgPool2d(1), nn::Flatten(), nn::Linear(512, spec.num_classes)));
  return stages;
}

}  // namespace tandem::models::zoo

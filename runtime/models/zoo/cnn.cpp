// cnn: a small LeNet-like network, five stages.
//   0: conv3x3 C→32, ReLU                      (32 × H × W: the largest activation)
//   1: conv3x3 32→32, ReLU, maxpool 2          (32 × H/2 × W/2)
//   2: conv3x3 32→64, ReLU, maxpool 2          (64 × H/4 × W/4)
//   3: flatten, →128, ReLU                     (128)
//   4: 128→classes
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>

#include "runtime/models/zoo/zoo.h"

namespace tandem::models::zoo {

std::vector<Stage> cnn(const ModelSpec& spec) {
  namespace nn = torch::nn;
  auto conv = [](std::int64_t in, std::int64_t out) { return nn::Conv2d(nn::Conv2dOptions(in, out, 3).padding(1)); };
  const std::int64_t flat = 64 * (spec.height / 4) * (spec.width / 4);
  return {
      Stage(conv(spec.channels, 32), nn::ReLU()),
      Stage(conv(32, 32), nn::ReLU(), nn::MaxPool2d(2)),
      Stage(conv(32, 64), nn::ReLU(), nn::MaxPool2d(2)),
      Stage(nn::Flatten(), nn::Linear(flat, 128), nn::ReLU()),
      Stage(nn::Linear(128, spec.num_classes)),
  };
}

}  // namespace tandem::models::zoo

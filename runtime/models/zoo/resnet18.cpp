// resnet18, CIFAR-style (3×3 stem, stride 1, no max-pool), ten stages:
//   0: stem conv3x3 C→64, BN, ReLU
//   1–2: layer1 (64), 3–4: layer2 (128, /2), 5–6: layer3 (256, /2), 7–8: layer4 (512, /2),
//   one BasicBlock per stage
//   9: global average pool, flatten, 512→classes
#include <torch/nn/cloneable.h>
#include <torch/nn/functional/activation.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>

#include "runtime/models/zoo/zoo.h"

namespace tandem::models::zoo {
namespace {

namespace nn = torch::nn;

nn::Conv2d conv3x3(std::int64_t in, std::int64_t out, std::int64_t stride) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false));
}

// Cloneable (submodules built in reset()) so stages can be deep-copied.
class BasicBlockImpl : public nn::Cloneable<BasicBlockImpl> {
 public:
  BasicBlockImpl(std::int64_t in, std::int64_t out, std::int64_t stride) : in_(in), out_(out), stride_(stride) {
    reset();
  }

  void reset() override {
    conv1_ = register_module("conv1", conv3x3(in_, out_, stride_));
    bn1_ = register_module("bn1", nn::BatchNorm2d(out_));
    conv2_ = register_module("conv2", conv3x3(out_, out_, 1));
    bn2_ = register_module("bn2", nn::BatchNorm2d(out_));
    if (stride_ != 1 || in_ != out_) {
      shortcut_ = register_module(
          "shortcut", Stage(nn::Conv2d(nn::Conv2dOptions(in_, out_, 1).stride(stride_).bias(false)),
                            nn::BatchNorm2d(out_)));
    }
  }

  torch::Tensor forward(const torch::Tensor& x) {
    auto y = torch::relu(bn1_(conv1_(x)));
    y = bn2_(conv2_(y));
    y = y + (shortcut_ ? shortcut_->forward(x) : x);
    return torch::relu(y);
  }

 private:
  std::int64_t in_, out_, stride_;
  nn::Conv2d conv1_{nullptr};
  nn::BatchNorm2d bn1_{nullptr};
  nn::Conv2d conv2_{nullptr};
  nn::BatchNorm2d bn2_{nullptr};
  Stage shortcut_{nullptr};
};
TORCH_MODULE(BasicBlock);

}  // namespace

std::vector<Stage> resnet18(const ModelSpec& spec) {
  std::vector<Stage> stages;
  stages.push_back(Stage(conv3x3(spec.channels, 64, 1), nn::BatchNorm2d(64), nn::ReLU()));
  std::int64_t in = 64;
  for (std::int64_t width : {64, 128, 256, 512}) {
    for (int block = 0; block < 2; ++block) {
      const std::int64_t stride = (block == 0 && width != 64) ? 2 : 1;
      stages.push_back(Stage(BasicBlock(in, width, stride)));
      in = width;
    }
  }
  stages.push_back(Stage(nn::AdaptiveAvgPool2d(1), nn::Flatten(), nn::Linear(512, spec.num_classes)));
  return stages;
}

}  // namespace tandem::models::zoo

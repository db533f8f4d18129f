// mobilenetv2, CIFAR-style (stride 1 in the stem and the 24-channel group), nine stages:
//   0: stem conv3x3 C→32, BN, ReLU6
//   1–7: the seven inverted-residual groups (t, c, n, s) = (1,16,1,1) (6,24,2,1)
//        (6,32,3,2) (6,64,4,2) (6,96,3,1) (6,160,3,2) (6,320,1,1)
//   8: conv1x1 320→1280, BN, ReLU6, global average pool, flatten, 1280→classes
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>

#include "runtime/models/zoo/zoo.h"

namespace tandem::models::zoo {
namespace {

namespace nn = torch::nn;

Stage convBnRelu6(std::int64_t in, std::int64_t out, std::int64_t kernel, std::int64_t stride,
                           std::int64_t groups = 1) {
  return Stage(
      nn::Conv2d(nn::Conv2dOptions(in, out, kernel).stride(stride).padding(kernel / 2).groups(groups).bias(false)),
      nn::BatchNorm2d(out), nn::ReLU6());
}

// Cloneable (submodules built in reset()) so stages can be deep-copied.
class InvertedResidualImpl : public nn::Cloneable<InvertedResidualImpl> {
 public:
  InvertedResidualImpl(std::int64_t in, std::int64_t out, std::int64_t stride, std::int64_t expand)
      : in_(in), out_(out), stride_(stride), expand_(expand), residual_(stride == 1 && in == out) {
    reset();
  }

  void reset() override {
    const std::int64_t hidden = in_ * expand_;
    Stage body;
    if (expand_ != 1) body->push_back(convBnRelu6(in_, hidden, 1, 1));
    body->push_back(convBnRelu6(hidden, hidden, 3, stride_, hidden));  // depthwise
    body->push_back(nn::Conv2d(nn::Conv2dOptions(hidden, out_, 1).bias(false)));
    body->push_back(nn::BatchNorm2d(out_));
    body_ = register_module("body", body);
  }

  torch::Tensor forward(const torch::Tensor& x) {
    auto y = body_->forward(x);
    return residual_ ? x + y : y;
  }

 private:
  std::int64_t in_, out_, stride_, expand_;
  bool residual_;
  Stage body_{nullptr};
};
TORCH_MODULE(InvertedResidual);

}  // namespace

std::vector<Stage> mobilenetv2(const ModelSpec& spec) {
  struct Group {
    std::int64_t expand, channels, repeats, stride;
  };
  const Group groups[] = {{1, 16, 1, 1},  {6, 24, 2, 1},  {6, 32, 3, 2}, {6, 64, 4, 2},
                          {6, 96, 3, 1},  {6, 160, 3, 2}, {6, 320, 1, 1}};
  std::vector<Stage> stages;
  stages.push_back(convBnRelu6(spec.channels, 32, 3, 1));
  std::int64_t in = 32;
  for (const auto& g : groups) {
    Stage stage;
    for (std::int64_t i = 0; i < g.repeats; ++i) {
      stage->push_back(InvertedResidual(in, g.channels, i == 0 ? g.stride : 1, g.expand));
      in = g.channels;
    }
    stages.push_back(stage);
  }
  Stage head = convBnRelu6(in, 1280, 1, 1);
  head->push_back(nn::AdaptiveAvgPool2d(1));
  head->push_back(nn::Flatten());
  head->push_back(nn::Linear(1280, spec.num_classes));
  stages.push_back(head);
  return stages;
}

}  // namespace tandem::models::zoo

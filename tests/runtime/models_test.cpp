#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/nn/functional/loss.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <cmath>

#include "runtime/common/error.h"
#include "runtime/models/stage_model.h"

namespace tandem::models {
namespace {

struct Case {
  std::string name;
  std::int64_t channels, height, width;
};

class ZooModel : public ::testing::TestWithParam<Case> {
 protected:
  ModelSpec spec() const {
    const auto& c = GetParam();
    return ModelSpec{c.name, c.channels, c.height, c.width, 10};
  }
};

// Gradients of every parameter after a backward pass, in StageModel::parameters() order.
std::vector<torch::Tensor> grads(const StageModel& model) {
  std::vector<torch::Tensor> out;
  for (const auto& p : model.parameters(0, model.numStages())) out.push_back(p.grad().clone());
  return out;
}

void zeroGrads(const StageModel& model) {
  for (auto& p : model.parameters(0, model.numStages())) {
    if (p.grad().defined()) p.mutable_grad().zero_();
  }
}

TEST_P(ZooModel, EverySplitPointEqualsTheWholeModel) {
  StageModel model = makeModel(spec(), 5);
  const int n = model.numStages();
  ASSERT_GE(n, 4) << "a zoo model should offer several split points";
  // Eval mode: BatchNorm uses its running statistics, so each forward is a pure function
  // of the weights (train-mode statistics would also match, but would be updated twice).
  model.train(false);
  const auto x = torch::randn({3, spec().channels, spec().height, spec().width});
  const auto labels = torch::tensor({1, 4, 7}, torch::kInt64);

  zeroGrads(model);
  const auto whole = model.forward(x, 0, n);
  torch::nn::functional::cross_entropy(whole, labels).backward();
  const auto reference = grads(model);

  for (int p = 0; p <= n; ++p) {
    SCOPED_TRACE("split point " + std::to_string(p));
    zeroGrads(model);
    // Edge: stages [0, p); the boundary tensor crosses "the network" as a detached leaf.
    const auto edge_out = model.forward(x, 0, p);
    auto boundary = edge_out.detach().requires_grad_(true);
    const auto logits = model.forward(boundary, p, n);
    EXPECT_TRUE(torch::allclose(logits, whole, 1e-5, 1e-6));
    torch::nn::functional::cross_entropy(logits, labels).backward();
    if (p > 0) edge_out.backward(boundary.grad());
    const auto split_grads = grads(model);
    ASSERT_EQ(split_grads.size(), reference.size());
    for (std::size_t i = 0; i < reference.size(); ++i) {
      ASSERT_TRUE(torch::allclose(split_grads[i], reference[i], 1e-4, 1e-6)) << "parameter " << i;
    }
  }
}

TEST_P(ZooModel, BoundaryShapesMatchActualActivations) {
  StageModel model = makeModel(spec(), 1);
  const auto& shapes = model.boundaryShapes();
  ASSERT_EQ(static_cast<int>(shapes.size()), model.numStages() + 1);
  EXPECT_EQ(shapes.front(), (Shape{spec().channels, spec().height, spec().width}));
  EXPECT_EQ(shapes.back(), (Shape{10}));
  model.train(false);
  torch::NoGradGuard no_grad;
  auto x = torch::randn({2, spec().channels, spec().height, spec().width});
  for (int i = 0; i < model.numStages(); ++i) {
    x = model.forward(x, i, i + 1);
    EXPECT_EQ(Shape(x.sizes().begin() + 1, x.sizes().end()), shapes[static_cast<std::size_t>(i) + 1]) << "stage " << i;
  }
}

TEST_P(ZooModel, InitialisationIsDeterministicFromTheSeed) {
  StageModel a = makeModel(spec(), 11);
  StageModel b = makeModel(spec(), 11);
  StageModel c = makeModel(spec(), 12);
  const auto sa = a.state(0, a.numStages());
  const auto sb = b.state(0, b.numStages());
  const auto sc = c.state(0, c.numStages());
  ASSERT_EQ(sa.size(), sb.size());
  bool any_different = false;
  for (std::size_t i = 0; i < sa.size(); ++i) {
    EXPECT_TRUE(sa[i].equal(sb[i])) << "tensor " << i;
    if (!sa[i].equal(sc[i])) any_different = true;
  }
  EXPECT_TRUE(any_different);
  EXPECT_EQ(a.fingerprint(), c.fingerprint());
}

// The documented scheme (stage_model.cpp; README, "Learning per step against PyTorch"):
// a convolution followed by BatchNorm and every Linear U(±1/sqrt(fan_in)) (PyTorch's
// default); a convolution without BatchNorm N(0, 2 / (fan_out / groups)) with bias 0;
// BatchNorm weight 1, bias 0 and fresh running statistics.
TEST_P(ZooModel, InitialisationFollowsTheDocumentedScheme) {
  StageModel model = makeModel(spec(), 21);
  int convs = 0;
  int linears = 0;
  for (int s = 0; s < model.numStages(); ++s) {
    const auto modules = model.stage(s)->modules(/*include_self=*/false);
    for (std::size_t i = 0; i < modules.size(); ++i) {
      const auto& module = modules[i];
      if (auto* conv = module->as<torch::nn::Conv2dImpl>()) {
        ++convs;
        const auto& w = conv->weight;
        const bool batch_norm_next = i + 1 < modules.size() && modules[i + 1]->as<torch::nn::BatchNorm2dImpl>();
        const double fan_in = static_cast<double>(w[0].numel());
        const double fan_out =
            static_cast<double>(w.size(0) * w.size(2) * w.size(3)) / static_cast<double>(conv->options.groups());
        const double expected = batch_norm_next ? 1.0 / std::sqrt(3.0 * fan_in) : std::sqrt(2.0 / fan_out);
        EXPECT_NEAR(w.mean().item<double>(), 0.0, 5.0 * expected / std::sqrt(static_cast<double>(w.numel())))
            << "stage " << s << " conv " << w.sizes();
        if (w.numel() >= 4096) {  // enough samples for the std to be within 5 %
          EXPECT_NEAR(w.std().item<double>(), expected, 0.05 * expected) << "stage " << s << " conv " << w.sizes();
        }
        if (batch_norm_next) {
          EXPECT_LE(w.abs().max().item<float>(), static_cast<float>(1.0 / std::sqrt(fan_in))) << "stage " << s;
        }
        if (conv->bias.defined() && !batch_norm_next) {
          EXPECT_EQ(conv->bias.abs().max().item<float>(), 0.0F);
        }
      } else if (auto* linear = module->as<torch::nn::LinearImpl>()) {
        ++linears;
        const double bound = 1.0 / std::sqrt(static_cast<double>(linear->weight.size(1)));
        EXPECT_LE(linear->weight.abs().max().item<float>(), static_cast<float>(bound)) << "stage " << s;
        EXPECT_GT(linear->weight.abs().max().item<double>(), 0.9 * bound) << "stage " << s;
        EXPECT_LE(linear->bias.abs().max().item<float>(), static_cast<float>(bound)) << "stage " << s;
      } else if (auto* bn = module->as<torch::nn::BatchNorm2dImpl>()) {
        EXPECT_TRUE(bn->weight.eq(1.0).all().item<bool>());
        EXPECT_TRUE(bn->bias.eq(0.0).all().item<bool>());
        EXPECT_TRUE(bn->running_mean.eq(0.0).all().item<bool>());
        EXPECT_TRUE(bn->running_var.eq(1.0).all().item<bool>());
        // PyTorch's BatchNorm defaults, which the benchmark's PyTorch models use too.
        EXPECT_DOUBLE_EQ(bn->options.eps(), 1e-5);
        ASSERT_TRUE(bn->options.momentum().has_value());
        EXPECT_DOUBLE_EQ(*bn->options.momentum(), 0.1);
      }
    }
  }
  EXPECT_GE(linears, 1);
  if (GetParam().name != "mlp") {
    EXPECT_GE(convs, 3);
  }
}

// The BatchNorm models start bit for bit where PyTorch's module defaults do. Expected
// values printed by python3-torch 1.13 (/usr/bin/python3, from the repository root):
//   import sys; sys.path.insert(0, "benchmarks"); import torch, learning_per_step as L
//   torch.manual_seed(7); m = L.MODELS["resnet18"](1, 28, 28, 10); p = list(m.parameters())
//   print(p[0].flatten()[:3].tolist(), p[-2].flatten()[:2].tolist(), p[-1][:3].tolist())
// The last Linear is drawn after every other parameter, so it checks the whole sequence.
TEST(Zoo, BatchNormModelsMatchPyTorchDefaultsBitForBit) {
  struct Expected {
    std::string name;
    std::vector<float> first_conv, head_weight, head_bias;
  };
  const std::vector<Expected> cases = {
      {"resnet18",
       {0.02328169345855713F, -0.2007978856563568F, 0.10614113509654999F},
       {0.00700483750551939F, -0.03814634680747986F},
       {-0.029786493629217148F, 0.02936546877026558F, 0.004856576211750507F}},
      {"mobilenetv2",
       {0.02328169345855713F, -0.2007978856563568F, 0.10614113509654999F},
       {0.026708966121077538F, 0.016389306634664536F},
       {-0.023587461560964584F, -0.02448270656168461F, 0.006467727012932301F}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    StageModel model = makeModel(ModelSpec{c.name, 1, 28, 28, 10}, 7);
    const auto params = model.parameters(0, model.numStages());
    const auto first = params.front().flatten();
    const auto head_weight = params[params.size() - 2].flatten();
    const auto head_bias = params.back();
    for (std::size_t i = 0; i < c.first_conv.size(); ++i) {
      EXPECT_EQ(first[static_cast<std::int64_t>(i)].item<float>(), c.first_conv[i]) << i;
    }
    for (std::size_t i = 0; i < c.head_weight.size(); ++i) {
      EXPECT_EQ(head_weight[static_cast<std::int64_t>(i)].item<float>(), c.head_weight[i]) << i;
    }
    for (std::size_t i = 0; i < c.head_bias.size(); ++i) {
      EXPECT_EQ(head_bias[static_cast<std::int64_t>(i)].item<float>(), c.head_bias[i]) << i;
    }
  }
}

TEST_P(ZooModel, RangeSharesParameters) {
  StageModel model = makeModel(spec(), 3);
  const int n = model.numStages();
  auto sub = model.range(1, n);
  EXPECT_EQ(sub->parameters().size(), model.parameters(1, n).size());
  EXPECT_EQ(sub->parameters().front().data_ptr(), model.parameters(1, n).front().data_ptr());
  model.train(false);
  sub->eval();
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({2, spec().channels, spec().height, spec().width});
  const auto h = model.forward(x, 0, 1);
  EXPECT_TRUE(torch::allclose(sub->forward(h), model.forward(x, 0, n), 1e-5, 1e-6));
}

INSTANTIATE_TEST_SUITE_P(Zoo, ZooModel,
                         ::testing::Values(Case{"mlp", 1, 28, 28}, Case{"cnn", 1, 28, 28}, Case{"cnn", 3, 32, 32},
                                           Case{"resnet18", 1, 28, 28}, Case{"resnet18", 3, 32, 32},
                                           Case{"vgg11", 1, 28, 28}, Case{"vgg11", 3, 32, 32},
                                           Case{"mobilenetv2", 1, 28, 28}, Case{"mobilenetv2", 3, 32, 32}),
                         [](const auto& info) {
                           return info.param.name + "_" + std::to_string(info.param.channels) + "x" +
                                  std::to_string(info.param.height);
                         });

TEST(Zoo, RegistryListsAndRejects) {
  EXPECT_EQ(modelNames(), (std::vector<std::string>{"cnn", "mlp", "mobilenetv2", "resnet18", "vgg11"}));
  try {
    makeModel(ModelSpec{"resnet19", 1, 28, 28, 10}, 1);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("unknown model 'resnet19' (did you mean 'resnet18'?)"));
  }
}

TEST(Zoo, FingerprintDiffersAcrossArchitectures) {
  EXPECT_NE(makeModel(ModelSpec{"cnn", 1, 28, 28, 10}, 1).fingerprint(),
            makeModel(ModelSpec{"cnn", 1, 28, 28, 12}, 1).fingerprint());
  EXPECT_NE(makeModel(ModelSpec{"cnn", 1, 28, 28, 10}, 1).fingerprint(),
            makeModel(ModelSpec{"mlp", 1, 28, 28, 10}, 1).fingerprint());
}

}  // namespace
}  // namespace tandem::models

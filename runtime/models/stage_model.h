#pragma once
// Models are ordered lists of stages (docs/design.md, "Models are lists of stages"). A
// split point p runs stages [0, p) on the edge and [p, n) on the cloud. Both processes
// build the same architecture from the same spec and seed; the zoo is a registry by name
// filled by registerBuiltinModels().
//
// Threading: a StageModel is used by one compute thread at a time.

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace tandem::models {

struct ModelSpec {
  std::string name;
  std::int64_t channels = 1;
  std::int64_t height = 28;
  std::int64_t width = 28;
  std::int64_t num_classes = 10;
};

using Shape = std::vector<std::int64_t>;

// One stage: a Sequential whose forward() is not a template, so stages (and blocks built
// from Sequentials) can nest inside other Sequentials.
// clone() gives a deep copy that is again a Stage (the retain replay mode stashes weights
// by cloning the edge's stages); every module inside a stage is Cloneable.
class StageImpl : public torch::nn::SequentialImpl {
 public:
  using SequentialImpl::SequentialImpl;
  torch::Tensor forward(torch::Tensor x) { return SequentialImpl::forward(std::move(x)); }
  std::shared_ptr<torch::nn::Module> clone(
      const torch::optional<torch::Device>& device = torch::nullopt) const override;
};
TORCH_MODULE(Stage);

class StageModel {
 public:
  StageModel(ModelSpec spec, std::vector<Stage> stages);

  const ModelSpec& spec() const { return spec_; }
  int numStages() const { return static_cast<int>(stages_.size()); }
  Stage& stage(int i);
  const Stage& stage(int i) const;

  // Stages [a, b) as one module sharing this model's parameters (empty when a == b).
  Stage range(int a, int b) const;
  // Runs stages [a, b) on x.
  torch::Tensor forward(const torch::Tensor& x, int a, int b) const;

  // Trainable parameters and all buffers (BatchNorm statistics) of stages [a, b), in a
  // fixed order: stage by stage, module registration order.
  std::vector<torch::Tensor> parameters(int a, int b) const;
  std::vector<torch::Tensor> buffers(int a, int b) const;
  // Parameters and buffers of stages [a, b) in that fixed order: the state that moves
  // between edge and cloud.
  std::vector<torch::Tensor> state(int a, int b) const;

  // Per-sample shapes at each stage boundary: [0] is the input, [i] the output of stage
  // i-1, [n] the logits. Computed once by a forward pass in eval mode.
  const std::vector<Shape>& boundaryShapes() const { return boundary_shapes_; }

  // Bytes of trainable parameters in stage i (float32).
  std::int64_t parameterBytes(int stage) const;

  // Hash of the architecture (name, stage count, every parameter and buffer shape): two
  // processes with the same fingerprint can exchange stage weights.
  std::string fingerprint() const;

  void train(bool on);

 private:
  ModelSpec spec_;
  std::vector<Stage> stages_;
  std::vector<Shape> boundary_shapes_;
};

// Builds the stages of one architecture. Parameters are initialised afterwards by
// makeModel(), so factories need not seed anything.
using ModelFactory = std::function<std::vector<Stage>(const ModelSpec&)>;

void registerModel(const std::string& name, ModelFactory factory);
void registerBuiltinModels();  // mlp, cnn, resnet18, vgg11, mobilenetv2; idempotent
std::vector<std::string> modelNames();

// Builds the model and initialises every parameter deterministically from `seed`
// (PyTorch-default convolutions before BatchNorm and linear layers, Kaiming-normal
// convolutions without BatchNorm, BatchNorm 1/0; stage_model.cpp), without
// touching LibTorch's global generator, so it is safe from several threads.
// Throws ConfigError for an unknown name (listing the known ones).
StageModel makeModel(const ModelSpec& spec, std::uint64_t seed);

}  // namespace tandem::models

#include "runtime/models/stage_model.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/utils.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <mutex>

#include "runtime/common/error.h"
#include "runtime/common/strings.h"
#include "runtime/models/zoo/zoo.h"

namespace tandem::models {
namespace {

struct Registry {
  std::mutex mutex;
  std::map<std::string, ModelFactory> factories;
};

Registry& registry() {
  static Registry r;
  return r;
}

// torch.nn.init.kaiming_uniform_(w, a = sqrt(5)), the default of nn.Conv2d and nn.Linear,
// in PyTorch's own double arithmetic: U(±b), b = sqrt(3) * gain / sqrt(fan_in), which is
// 1 / sqrt(fan_in) once rounded to float.
double defaultWeightBound(double fan_in) {
  const double a = std::sqrt(5.0);
  const double gain = std::sqrt(2.0 / (1.0 + std::pow(a, 2)));
  return std::sqrt(3.0) * (gain / std::sqrt(fan_in));
}

// nn.Conv2d / nn.Linear reset_parameters(): the weight as above, then the bias
// U(±1/sqrt(fan_in)); fan_in = weight.size(1) * kernel area.
void initialiseDefault(const torch::Tensor& weight, const torch::Tensor& bias, at::Generator& gen) {
  const auto fan_in = static_cast<double>(weight[0].numel());
  const double bound = defaultWeightBound(fan_in);
  weight.uniform_(-bound, bound, gen);
  if (bias.defined()) {
    const double bias_bound = 1.0 / std::sqrt(fan_in);
    bias.uniform_(-bias_bound, bias_bound, gen);
  }
}

// Every parameter drawn from one explicit generator, in module registration order:
// - a convolution followed by BatchNorm, and every Linear: PyTorch's module default
//   (initialiseDefault). Behind BatchNorm a convolution's scale only sets its effective
//   learning rate; torchvision's Kaiming-normal fan_out gave resnet18 runs that trailed
//   PyTorch's defaults per step (README, "Learning per step against PyTorch"), so the
//   BatchNorm models (resnet18, vgg11, mobilenetv2) start exactly where PyTorch's would:
//   makeModel(spec, seed) is bit for bit torch.manual_seed(seed) and the same modules
//   built in Python (benchmarks/learning_per_step.py --order tandem replays it).
// - a convolution without BatchNorm (cnn): Kaiming normal, fan_out (divided by the
//   groups), ReLU gain, bias 0, which learned faster than PyTorch's default there.
// - BatchNorm: weight 1, bias 0, fresh running statistics.
void initialise(std::vector<Stage>& stages, std::uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  torch::NoGradGuard no_grad;
  for (auto& stage : stages) {
    const auto modules = stage->modules(/*include_self=*/false);
    for (std::size_t i = 0; i < modules.size(); ++i) {
      const auto& module = modules[i];
      if (auto* conv = module->as<torch::nn::Conv2dImpl>()) {
        const bool batch_norm_next = i + 1 < modules.size() && modules[i + 1]->as<torch::nn::BatchNorm2dImpl>();
        if (batch_norm_next) {
          initialiseDefault(conv->weight, conv->bias, gen);
          continue;
        }
        const auto& w = conv->weight;
        const double fan_out = static_cast<double>(w.size(0) * w.size(2) * w.size(3)) /
                               static_cast<double>(conv->options.groups());
        w.normal_(0.0, std::sqrt(2.0 / fan_out), gen);
        if (conv->bias.defined()) conv->bias.zero_();
      } else if (auto* linear = module->as<torch::nn::LinearImpl>()) {
        initialiseDefault(linear->weight, linear->bias, gen);
      } else if (auto* bn = module->as<torch::nn::BatchNorm2dImpl>()) {
        bn->weight.fill_(1.0);
        bn->bias.zero_();
        bn->running_mean.zero_();
        bn->running_var.fill_(1.0);
        bn->num_batches_tracked.zero_();
      }
    }
  }
}

std::uint64_t fnv1a(const std::string& text, std::uint64_t hash = 1469598103934665603ULL) {
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 1099511628211ULL;
  }
  return hash;
}

}  // namespace

std::shared_ptr<torch::nn::Module> StageImpl::clone(const torch::optional<torch::Device>& device) const {
  auto copy = std::make_shared<StageImpl>();
  for (const auto& module : *this) copy->push_back(module.clone(device));
  return copy;
}

StageModel::StageModel(ModelSpec spec, std::vector<Stage> stages)
    : spec_(std::move(spec)), stages_(std::move(stages)) {
  TANDEM_ENFORCE(!stages_.empty(), "model '", spec_.name, "' has no stages");
  // Boundary shapes from one eval-mode forward on a 2-sample batch (BatchNorm statistics
  // are not updated in eval mode; training mode is restored afterwards).
  std::vector<bool> was_training;
  for (auto& s : stages_) {
    was_training.push_back(s->is_training());
    s->eval();
  }
  torch::NoGradGuard no_grad;
  auto x = torch::zeros({2, spec_.channels, spec_.height, spec_.width});
  boundary_shapes_.push_back(Shape(x.sizes().begin() + 1, x.sizes().end()));
  for (std::size_t i = 0; i < stages_.size(); ++i) {
    x = stages_[i]->forward(x);
    boundary_shapes_.push_back(Shape(x.sizes().begin() + 1, x.sizes().end()));
  }
  for (std::size_t i = 0; i < stages_.size(); ++i) stages_[i]->train(was_training[i]);
}

Stage& StageModel::stage(int i) {
  TANDEM_ENFORCE(i >= 0 && i < numStages(), "stage ", i, " of ", numStages());
  return stages_[static_cast<std::size_t>(i)];
}

const Stage& StageModel::stage(int i) const {
  TANDEM_ENFORCE(i >= 0 && i < numStages(), "stage ", i, " of ", numStages());
  return stages_[static_cast<std::size_t>(i)];
}

Stage StageModel::range(int a, int b) const {
  TANDEM_ENFORCE(0 <= a && a <= b && b <= numStages(), "stage range [", a, ", ", b, ") of ", numStages());
  Stage seq;
  for (int i = a; i < b; ++i) seq->push_back("stage" + std::to_string(i), stages_[static_cast<std::size_t>(i)]);
  return seq;
}

torch::Tensor StageModel::forward(const torch::Tensor& x, int a, int b) const {
  TANDEM_ENFORCE(0 <= a && a <= b && b <= numStages(), "stage range [", a, ", ", b, ") of ", numStages());
  torch::Tensor y = x;
  for (int i = a; i < b; ++i) {
    Stage s = stages_[static_cast<std::size_t>(i)];  // a holder copy: forward() is not const
    y = s->forward(y);
  }
  return y;
}

std::vector<torch::Tensor> StageModel::parameters(int a, int b) const {
  std::vector<torch::Tensor> out;
  for (int i = a; i < b; ++i) {
    for (auto& p : stage(i)->parameters()) out.push_back(p);
  }
  return out;
}

std::vector<torch::Tensor> StageModel::buffers(int a, int b) const {
  std::vector<torch::Tensor> out;
  for (int i = a; i < b; ++i) {
    for (auto& p : stage(i)->buffers()) out.push_back(p);
  }
  return out;
}

std::vector<torch::Tensor> StageModel::state(int a, int b) const {
  std::vector<torch::Tensor> out;
  for (int i = a; i < b; ++i) {
    for (auto& p : stage(i)->parameters()) out.push_back(p);
    for (auto& p : stage(i)->buffers()) out.push_back(p);
  }
  return out;
}

std::int64_t StageModel::parameterBytes(int i) const {
  std::int64_t bytes = 0;
  for (const auto& p : stage(i)->parameters()) bytes += p.numel() * static_cast<std::int64_t>(p.element_size());
  return bytes;
}

std::string StageModel::fingerprint() const {
  std::string text = spec_.name + "/" + std::to_string(stages_.size());
  for (const auto& s : stages_) {
    text += "|";
    for (const auto& item : s->named_parameters()) {
      text += item.key();
      for (auto d : item.value().sizes()) text += "," + std::to_string(d);
      text += ";";
    }
    for (const auto& item : s->named_buffers()) {
      text += item.key();
      for (auto d : item.value().sizes()) text += "," + std::to_string(d);
      text += ";";
    }
  }
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(fnv1a(text)));
  return buf;
}

void StageModel::train(bool on) {
  for (auto& s : stages_) s->train(on);
}

void registerModel(const std::string& name, ModelFactory factory) {
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  if (!r.factories.emplace(name, std::move(factory)).second) {
    throw InvariantError("model '" + name + "' registered twice");
  }
}

void registerBuiltinModels() {
  static std::once_flag once;
  std::call_once(once, [] {
    registerModel("mlp", zoo::mlp);
    registerModel("cnn", zoo::cnn);
    registerModel("resnet18", zoo::resnet18);
    registerModel("vgg11", zoo::vgg11);
    registerModel("mobilenetv2", zoo::mobilenetv2);
  });
}

std::vector<std::string> modelNames() {
  registerBuiltinModels();
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  std::vector<std::string> names;
  for (const auto& [n, f] : r.factories) names.push_back(n);
  return names;
}

StageModel makeModel(const ModelSpec& spec, std::uint64_t seed) {
  registerBuiltinModels();
  ModelFactory factory;
  {
    auto& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    auto it = r.factories.find(spec.name);
    if (it == r.factories.end()) {
      std::vector<std::string> names;
      for (const auto& [n, f] : r.factories) names.push_back(n);
      std::string message = "unknown model '" + spec.name + "'";
      if (auto guess = closestMatch(spec.name, names); !guess.empty()) message += " (did you mean '" + guess + "'?)";
      throw ConfigError(message + "; known: " + join(names));
    }
    factory = it->second;
  }
  auto stages = factory(spec);
  initialise(stages, seed);
  return StageModel(spec, std::move(stages));
}

}  // namespace tandem::models

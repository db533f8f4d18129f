#include "runtime/optim/stage_optimizers.h"

#include <c10/util/string_utils.h>
#include <torch/optim/adam.h>
#include <torch/optim/sgd.h>

#include "runtime/common/error.h"

namespace tandem::optim {
namespace {

// LibTorch keys per-parameter state by the address of the parameter's TensorImpl.
std::string stateKey(const torch::Tensor& p) { return c10::guts::to_string(p.unsafeGetTensorImpl()); }

}  // namespace

StageOptimizers::StageOptimizers(const config::OptimizerConfig& config, models::StageModel& model, int first,
                                 int last)
    : config_(config), model_(model), lr_(config.lr) {
  for (int s = first; s < last; ++s) addStage(s);
}

std::unique_ptr<torch::optim::Optimizer> StageOptimizers::make(int stage) const {
  auto params = model_.parameters(stage, stage + 1);
  if (config_.name == config::OptimizerKind::kAdam) {
    return std::make_unique<torch::optim::Adam>(
        params, torch::optim::AdamOptions(lr_)
                    .betas({config_.beta1, config_.beta2})
                    .eps(config_.eps)
                    .weight_decay(config_.weight_decay));
  }
  return std::make_unique<torch::optim::SGD>(params, torch::optim::SGDOptions(lr_)
                                                         .momentum(config_.momentum)
                                                         .nesterov(config_.nesterov)
                                                         .weight_decay(config_.weight_decay));
}

void StageOptimizers::addStage(int stage) {
  TANDEM_ENFORCE(!hasStage(stage), "stage ", stage, " already has an optimizer");
  optimizers_[stage] = make(stage);
}

void StageOptimizers::removeStage(int stage) {
  TANDEM_ENFORCE(hasStage(stage), "stage ", stage, " has no optimizer");
  optimizers_.erase(stage);
}

void StageOptimizers::zeroGrad() {
  for (auto& [s, o] : optimizers_) o->zero_grad();
}

void StageOptimizers::step() {
  for (auto& [s, o] : optimizers_) o->step();
}

void StageOptimizers::step(int first, int last) {
  for (auto& [s, o] : optimizers_) {
    if (s >= first && s < last) o->step();
  }
}

void StageOptimizers::stepWith(double lr_factor, double momentum) {
  const double base_lr = lr_;
  setLearningRate(base_lr * lr_factor);
  if (momentum >= 0 && config_.name == config::OptimizerKind::kSgd) {
    for (auto& [s, o] : optimizers_) {
      for (auto& group : o->param_groups()) static_cast<torch::optim::SGDOptions&>(group.options()).momentum(momentum);
    }
  }
  step();
  setLearningRate(base_lr);
  if (momentum >= 0 && config_.name == config::OptimizerKind::kSgd) {
    for (auto& [s, o] : optimizers_) {
      for (auto& group : o->param_groups()) {
        static_cast<torch::optim::SGDOptions&>(group.options()).momentum(config_.momentum);
      }
    }
  }
}

void StageOptimizers::setLearningRate(double lr) {
  lr_ = lr;
  for (auto& [s, o] : optimizers_) {
    for (auto& group : o->param_groups()) {
      if (config_.name == config::OptimizerKind::kAdam) {
        static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
      } else {
        static_cast<torch::optim::SGDOptions&>(group.options()).lr(lr);
      }
    }
  }
}

std::vector<std::vector<torch::Tensor>> StageOptimizers::exportState(int stage) const {
  auto it = optimizers_.find(stage);
  TANDEM_ENFORCE(it != optimizers_.end(), "stage ", stage, " has no optimizer");
  const auto& states = it->second->state();
  std::vector<std::vector<torch::Tensor>> out;
  for (const auto& p : model_.parameters(stage, stage + 1)) {
    std::vector<torch::Tensor> entry;
    auto found = states.find(stateKey(p));
    if (found != states.end()) {
      if (config_.name == config::OptimizerKind::kAdam) {
        const auto& s = static_cast<const torch::optim::AdamParamState&>(*found->second);
        entry = {torch::tensor(s.step(), torch::kInt64), s.exp_avg().clone(), s.exp_avg_sq().clone()};
      } else {
        const auto& s = static_cast<const torch::optim::SGDParamState&>(*found->second);
        if (s.momentum_buffer().defined()) entry = {s.momentum_buffer().clone()};
      }
    }
    out.push_back(std::move(entry));
  }
  return out;
}

void StageOptimizers::importState(int stage, const std::vector<std::vector<torch::Tensor>>& state) {
  auto it = optimizers_.find(stage);
  TANDEM_ENFORCE(it != optimizers_.end(), "stage ", stage, " has no optimizer");
  auto& states = it->second->state();
  const auto params = model_.parameters(stage, stage + 1);
  TANDEM_ENFORCE_EQ(params.size(), state.size(), "optimizer state entries for stage ", stage);
  for (std::size_t i = 0; i < params.size(); ++i) {
    const auto& entry = state[i];
    const auto key = stateKey(params[i]);
    states.erase(key);
    if (entry.empty()) continue;
    if (config_.name == config::OptimizerKind::kAdam) {
      TANDEM_ENFORCE_EQ(entry.size(), std::size_t{3}, "Adam state tensors");
      TANDEM_ENFORCE(entry[1].sizes() == params[i].sizes() && entry[2].sizes() == params[i].sizes());
      auto s = std::make_unique<torch::optim::AdamParamState>();
      s->step(entry[0].item<std::int64_t>());
      s->exp_avg(entry[1].clone());
      s->exp_avg_sq(entry[2].clone());
      states[key] = std::move(s);
    } else {
      TANDEM_ENFORCE_EQ(entry.size(), std::size_t{1}, "SGD state tensors");
      TANDEM_ENFORCE(entry[0].sizes() == params[i].sizes(), "momentum buffer shape");
      auto s = std::make_unique<torch::optim::SGDParamState>();
      s->momentum_buffer(entry[0].clone());
      states[key] = std::move(s);
    }
  }
}

}  // namespace tandem::optim

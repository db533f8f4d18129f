#include "runtime/pipeline/fleet.h"

#include <torch/utils.h>

#include <cmath>

#include "runtime/common/error.h"
#include "runtime/pipeline/link.h"

namespace tandem::pipeline {

using transport::AverageInfo;
using transport::ErrorCode;
using transport::WireError;

StageReplica captureStage(const models::StageModel& model, const optim::StageOptimizers& optimizer, int stage) {
  StageReplica out;
  for (const auto& t : model.state(stage, stage + 1)) out.state.push_back(t.detach().clone());
  out.optimizer = optimizer.exportState(stage);
  return out;
}

void installStage(const StageReplica& replica, models::StageModel& model, optim::StageOptimizers& optimizer,
                  int stage) {
  auto state = model.state(stage, stage + 1);
  TANDEM_ENFORCE_EQ(state.size(), replica.state.size(), "state tensors of stage ", stage);
  {
    torch::NoGradGuard no_grad;
    for (std::size_t i = 0; i < state.size(); ++i) state[i].copy_(replica.state[i]);
  }
  optimizer.importState(stage, replica.optimizer);
}

namespace {

torch::Tensor weightedSum(const std::vector<const torch::Tensor*>& tensors, const std::vector<double>& weights,
                          double total) {
  torch::NoGradGuard no_grad;
  const auto dtype = tensors.front()->scalar_type();
  auto sum = torch::zeros(tensors.front()->sizes(), torch::kFloat64);
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i]) sum.add_(tensors[i]->to(torch::kFloat64), weights[i] / total);
  }
  if (c10::isIntegralType(dtype, false)) sum.round_();
  return sum.to(dtype);
}

}  // namespace

StageReplica averageReplicas(const std::vector<const StageReplica*>& replicas) {
  TANDEM_ENFORCE(!replicas.empty(), "averaging no replicas");
  double total = 0.0;
  std::vector<double> weights;
  for (const auto* r : replicas) {
    TANDEM_ENFORCE(r->weight > 0 && std::isfinite(r->weight), "replica weight ", r->weight);
    TANDEM_ENFORCE_EQ(r->state.size(), replicas.front()->state.size(), "replica state tensors");
    TANDEM_ENFORCE_EQ(r->optimizer.size(), replicas.front()->optimizer.size(), "replica optimizer entries");
    weights.push_back(r->weight);
    total += r->weight;
  }
  StageReplica out;
  out.weight = total;
  if (replicas.size() == 1) {
    out.state = replicas.front()->state;
    out.optimizer = replicas.front()->optimizer;
    return out;
  }
  for (std::size_t t = 0; t < replicas.front()->state.size(); ++t) {
    std::vector<const torch::Tensor*> tensors;
    for (const auto* r : replicas) tensors.push_back(&r->state[t]);
    out.state.push_back(weightedSum(tensors, weights, total));
  }
  for (std::size_t p = 0; p < replicas.front()->optimizer.size(); ++p) {
    // Replicas without state for this parameter count as zeros; their layout must agree
    // where they have one.
    const std::vector<torch::Tensor>* shape = nullptr;
    for (const auto* r : replicas) {
      const auto& entry = r->optimizer[p];
      if (entry.empty()) continue;
      if (shape) TANDEM_ENFORCE_EQ(entry.size(), shape->size(), "optimizer tensors of parameter ", p);
      shape = &entry;
    }
    std::vector<torch::Tensor> entry;
    if (shape) {
      for (std::size_t k = 0; k < shape->size(); ++k) {
        std::vector<const torch::Tensor*> tensors;
        for (const auto* r : replicas) tensors.push_back(r->optimizer[p].empty() ? nullptr : &r->optimizer[p][k]);
        // weightedSum takes the shape and dtype of the first tensor: put a present one first.
        std::vector<double> w = weights;
        for (std::size_t i = 0; i < tensors.size(); ++i) {
          if (tensors[i]) {
            std::swap(tensors[0], tensors[i]);
            std::swap(w[0], w[i]);
            break;
          }
        }
        entry.push_back(weightedSum(tensors, w, total));
      }
    }
    out.optimizer.push_back(std::move(entry));
  }
  return out;
}

void addStages(transport::Message& message, const models::StageModel& model, const optim::StageOptimizers& optimizer,
               int stages) {
  auto& info = std::get<AverageInfo>(message.body);
  info.stages = static_cast<std::uint32_t>(stages);
  info.optimizer_layout.clear();
  for (int s = 0; s < stages; ++s) {
    const auto replica = captureStage(model, optimizer, s);
    for (const auto& t : replica.state) addFrame(message, transport::rawFrame(t));
    for (const auto& entry : replica.optimizer) {
      info.optimizer_layout.push_back(static_cast<std::uint32_t>(entry.size()));
      for (const auto& t : entry) addFrame(message, transport::rawFrame(t.contiguous()));
    }
  }
}

std::vector<StageReplica> stagesFromMessage(transport::Message& message, const models::StageModel& model,
                                            config::OptimizerKind optimizer, transport::CodecCache& codecs) {
  const auto fail = [](const std::string& why) { throw WireError(ErrorCode::kInvalidTensor, "fleet stages: " + why); };
  const auto& info = std::get<AverageInfo>(message.body);
  const int stages = static_cast<int>(info.stages);
  if (stages < 0 || stages > model.numStages()) {
    fail(std::to_string(info.stages) + " stages, the model has " + std::to_string(model.numStages()));
  }
  // Everything is checked against the architecture before a tensor is decoded.
  const std::uint32_t full = optimizer == config::OptimizerKind::kAdam ? 3 : 1;
  const auto& metas = message.header.tensors;
  std::size_t next = 0;
  std::size_t param = 0;
  const auto expect = [&](const std::vector<std::int64_t>& shape, transport::DType dtype, const std::string& what) {
    if (next >= metas.size()) fail("too few tensors: " + what + " missing");
    const auto& m = metas[next];
    if (m.codec != transport::kRawCodec) fail(what + " is not raw");
    if (m.shape != shape || m.dtype != dtype) {
      fail(what + " is " + shapeString(m.shape) + " " + transport::dtypeName(m.dtype) + ", expected " +
           shapeString(shape) + " " + transport::dtypeName(dtype));
    }
    ++next;
  };
  for (int s = 0; s < stages; ++s) {
    const auto state = model.state(s, s + 1);
    for (std::size_t i = 0; i < state.size(); ++i) {
      expect(state[i].sizes().vec(), transport::toWire(state[i].scalar_type()),
             "stage " + std::to_string(s) + " tensor " + std::to_string(i));
    }
    for (const auto& p : model.parameters(s, s + 1)) {
      if (param >= info.optimizer_layout.size()) fail("optimizer layout too short");
      const auto n = info.optimizer_layout[param++];
      if (n != 0 && n != full)
        fail("parameter " + std::to_string(param - 1) + " has " + std::to_string(n) +
             " optimizer tensors, expected 0 or " + std::to_string(full));
      for (std::uint32_t k = 0; k < n; ++k) {
        const bool step = optimizer == config::OptimizerKind::kAdam && k == 0;
        expect(step ? std::vector<std::int64_t>{} : p.sizes().vec(),
               step ? transport::DType::kInt64 : transport::DType::kFloat32, "optimizer state");
      }
    }
  }
  if (param != info.optimizer_layout.size()) fail("optimizer layout for more parameters than the stages have");
  if (next != metas.size()) fail(std::to_string(metas.size()) + " tensors, expected " + std::to_string(next));

  std::vector<StageReplica> out(static_cast<std::size_t>(stages));
  next = 0;
  param = 0;
  const auto take = [&] {
    auto t = transport::frameToTensor(metas[next], std::move(message.payloads[next]), codecs);
    ++next;
    if (t.is_floating_point() && !torch::isfinite(t).all().item<bool>()) fail("a tensor holds NaN or infinity");
    return t;
  };
  for (int s = 0; s < stages; ++s) {
    auto& replica = out[static_cast<std::size_t>(s)];
    const auto state_count = model.state(s, s + 1).size();
    for (std::size_t i = 0; i < state_count; ++i) replica.state.push_back(take());
    for (std::size_t p = 0; p < model.parameters(s, s + 1).size(); ++p) {
      std::vector<torch::Tensor> entry;
      for (std::uint32_t k = 0; k < info.optimizer_layout[param]; ++k) entry.push_back(take());
      ++param;
      replica.optimizer.push_back(std::move(entry));
    }
  }
  return out;
}

}  // namespace tandem::pipeline

#include "runtime/pipeline/migration.h"

#include <torch/utils.h>

#include "runtime/pipeline/link.h"

namespace tandem::pipeline {

using transport::ErrorCode;
using transport::MigrateInfo;
using transport::WireError;

StageState captureStages(const models::StageModel& model, const optim::StageOptimizers& optimizer, int first,
                         int last) {
  StageState out;
  for (const auto& t : model.state(first, last)) out.tensors.push_back(t.detach().clone());
  for (int s = first; s < last; ++s) {
    for (const auto& entry : optimizer.exportState(s)) {
      out.optimizer_layout.push_back(static_cast<std::uint32_t>(entry.size()));
      for (const auto& t : entry) out.tensors.push_back(t);
    }
  }
  return out;
}

void restoreStages(const StageState& in, models::StageModel& model, optim::StageOptimizers& optimizer, int first,
                   int last, bool add_to_optimizer) {
  const auto fail = [](const std::string& why) { throw WireError(ErrorCode::kInvalidTensor, "stage state: " + why); };
  auto state = model.state(first, last);
  const auto params = model.parameters(first, last);
  if (in.optimizer_layout.size() != params.size()) {
    fail("optimizer layout for " + std::to_string(in.optimizer_layout.size()) + " parameters, stages " +
         std::to_string(first) + ".." + std::to_string(last - 1) + " have " + std::to_string(params.size()));
  }
  std::size_t expected = state.size();
  for (auto n : in.optimizer_layout) {
    if (n > 3) fail("more than 3 optimizer tensors for one parameter");
    expected += n;
  }
  if (in.tensors.size() != expected) {
    fail(std::to_string(in.tensors.size()) + " tensors, expected " + std::to_string(expected));
  }
  // Check every weight before changing anything (optimizer tensors are checked by
  // importState against their parameter).
  for (std::size_t i = 0; i < state.size(); ++i) {
    if (in.tensors[i].sizes() != state[i].sizes() || in.tensors[i].scalar_type() != state[i].scalar_type()) {
      fail("tensor " + std::to_string(i) + " is " + shapeString(in.tensors[i].sizes().vec()) + ", expected " +
           shapeString(state[i].sizes().vec()));
    }
  }
  {
    torch::NoGradGuard no_grad;
    for (std::size_t i = 0; i < state.size(); ++i) state[i].copy_(in.tensors[i]);
  }
  std::size_t next = state.size();
  std::size_t param = 0;
  for (int s = first; s < last; ++s) {
    const auto stage_params = model.parameters(s, s + 1);
    std::vector<std::vector<torch::Tensor>> stage_state;
    for (std::size_t k = 0; k < stage_params.size(); ++k, ++param) {
      std::vector<torch::Tensor> entry;
      for (std::uint32_t j = 0; j < in.optimizer_layout[param]; ++j) entry.push_back(in.tensors[next++]);
      stage_state.push_back(std::move(entry));
    }
    if (add_to_optimizer) optimizer.addStage(s);
    try {
      optimizer.importState(s, stage_state);
    } catch (const InvariantError& e) {
      if (add_to_optimizer) optimizer.removeStage(s);
      fail(std::string("optimizer state of stage ") + std::to_string(s) + ": " + e.what());
    }
  }
}

void packStages(transport::Message& message, models::StageModel& model, optim::StageOptimizers& optimizer, int first,
                int last) {
  auto state = captureStages(model, optimizer, first, last);
  std::get<MigrateInfo>(message.body).optimizer_layout = state.optimizer_layout;
  for (const auto& t : state.tensors) addFrame(message, transport::rawFrame(t));
  for (int s = first; s < last; ++s) optimizer.removeStage(s);
}

void unpackStages(transport::Message& message, models::StageModel& model, optim::StageOptimizers& optimizer, int first,
                  int last, transport::CodecCache& codecs) {
  StageState state;
  state.optimizer_layout = std::get<MigrateInfo>(message.body).optimizer_layout;
  for (std::size_t i = 0; i < message.header.tensors.size(); ++i) {
    if (message.header.tensors[i].codec != transport::kRawCodec) {
      throw WireError(ErrorCode::kInvalidTensor, "migration tensors travel raw");
    }
    state.tensors.push_back(transport::frameToTensor(message.header.tensors[i], std::move(message.payloads[i]), codecs));
  }
  restoreStages(state, model, optimizer, first, last, true);
}

}  // namespace tandem::pipeline

#include "runtime/pipeline/migration.h"

#include <torch/utils.h>

#include "runtime/pipeline/link.h"

namespace tandem::pipeline {

using transport::ErrorCode;
using transport::MigrateInfo;
using transport::WireError;

void packStages(transport::Message& message, models::StageModel& model, optim::StageOptimizers& optimizer, int first,
                int last) {
  auto& info = std::get<MigrateInfo>(message.body);
  info.optimizer_layout.clear();
  for (const auto& t : model.state(first, last)) addFrame(message, transport::rawFrame(t));
  for (int s = first; s < last; ++s) {
    for (const auto& entry : optimizer.exportState(s)) {
      info.optimizer_layout.push_back(static_cast<std::uint32_t>(entry.size()));
      for (const auto& t : entry) addFrame(message, transport::rawFrame(t));
    }
    optimizer.removeStage(s);
  }
}

void unpackStages(transport::Message& message, models::StageModel& model, optim::StageOptimizers& optimizer, int first,
                  int last, transport::CodecCache& codecs) {
  const auto& info = std::get<MigrateInfo>(message.body);
  const auto fail = [](const std::string& why) { throw WireError(ErrorCode::kInvalidTensor, "migration: " + why); };
  auto state = model.state(first, last);
  const auto params = model.parameters(first, last);
  if (info.optimizer_layout.size() != params.size()) {
    fail("optimizer layout for " + std::to_string(info.optimizer_layout.size()) + " parameters, stages " +
         std::to_string(first) + ".." + std::to_string(last - 1) + " have " + std::to_string(params.size()));
  }
  std::size_t expected = state.size();
  for (auto n : info.optimizer_layout) {
    if (n > 3) fail("more than 3 optimizer tensors for one parameter");
    expected += n;
  }
  if (message.header.tensors.size() != expected) {
    fail(std::to_string(message.header.tensors.size()) + " tensors, expected " + std::to_string(expected));
  }
  // Check every shape before changing anything.
  for (std::size_t i = 0; i < state.size(); ++i) {
    const auto& meta = message.header.tensors[i];
    if (meta.shape != state[i].sizes().vec() || meta.dtype != transport::toWire(state[i].scalar_type()) ||
        meta.codec != transport::kRawCodec) {
      fail("tensor " + std::to_string(i) + " is " + shapeString(meta.shape) + ", expected " +
           shapeString(state[i].sizes().vec()));
    }
  }
  std::vector<torch::Tensor> received;
  for (std::size_t i = 0; i < expected; ++i) {
    received.push_back(transport::frameToTensor(message.header.tensors[i], std::move(message.payloads[i]), codecs));
  }
  {
    torch::NoGradGuard no_grad;
    for (std::size_t i = 0; i < state.size(); ++i) state[i].copy_(received[i]);
  }
  std::size_t next = state.size();
  std::size_t param = 0;
  for (int s = first; s < last; ++s) {
    const auto stage_params = model.parameters(s, s + 1);
    std::vector<std::vector<torch::Tensor>> stage_state;
    for (std::size_t k = 0; k < stage_params.size(); ++k, ++param) {
      std::vector<torch::Tensor> entry;
      for (std::uint32_t j = 0; j < info.optimizer_layout[param]; ++j) entry.push_back(received[next++]);
      stage_state.push_back(std::move(entry));
    }
    optimizer.addStage(s);
    try {
      optimizer.importState(s, stage_state);
    } catch (const InvariantError& e) {
      optimizer.removeStage(s);
      fail(std::string("optimizer state of stage ") + std::to_string(s) + ": " + e.what());
    }
  }
}

}  // namespace tandem::pipeline

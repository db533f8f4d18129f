#include "runtime/session/handshake.h"

#include <algorithm>
#include <cctype>
#include <random>

namespace tandem::session {

std::vector<std::string> handshakeDifferences(const transport::Hello& hello, const config::Config& config,
                                              const models::StageModel& model, bool resuming) {
  std::vector<std::string> differences;
  const auto differ = [&](const std::string& what, const std::string& edge, const std::string& cloud) {
    if (edge != cloud) differences.push_back(what + ": edge " + edge + ", cloud " + cloud);
  };
  differ("model", "'" + hello.model + "'", "'" + config.model.name + "'");
  if (hello.model == config.model.name) {
    differ("architecture fingerprint (input shape or classes differ)", hello.fingerprint, model.fingerprint());
  }
  differ("stages", std::to_string(hello.num_stages), std::to_string(model.numStages()));
  if (!config.split.automatic && !resuming && config.scheduler.split_schedule.empty()) {
    differ("split point", std::to_string(hello.split_point), std::to_string(config.split.point));
  }
  differ("batch size", std::to_string(hello.batch_size), std::to_string(config.data.batch_size));
  if (hello.split_point > static_cast<std::uint32_t>(model.numStages())) {
    differences.push_back("split point " + std::to_string(hello.split_point) + " is beyond the model");
  }
  if (hello.epochs == 0) differences.push_back("epochs: edge asks for 0");
  return differences;
}

ResumeChoice chooseResume(const transport::Hello& hello, const config::Config& config) {
  ResumeChoice choice;
  if (!config.checkpoint.enabled) return choice;
  // The run name becomes a directory: nothing in it may climb out of checkpoint.dir.
  std::string run = hello.run_name;
  for (auto& ch : run) {
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '-' && ch != '_' && ch != '.') ch = '_';
  }
  choice.store =
      std::make_unique<checkpoint::CheckpointStore>(config.checkpoint.dir + "/cloud/" + run, config.checkpoint.keep);
  if (!hello.resume) return choice;
  const auto mine = choice.store->validSteps();
  for (auto it = mine.rbegin(); it != mine.rend(); ++it) {
    if (std::find(hello.checkpoints.begin(), hello.checkpoints.end(), *it) != hello.checkpoints.end()) {
      choice.checkpoint = choice.store->load(*it);
      break;
    }
  }
  return choice;
}

std::uint64_t newSessionId() {
  std::random_device device;
  std::uint64_t id = 0;
  while (id == 0) id = (std::uint64_t{device()} << 32) | device();
  return id;
}

}  // namespace tandem::session

#include "runtime/session/handshake.h"

#include <algorithm>
#include <cctype>
#include <random>

namespace tandem::session {

std::vector<Difference> handshakeDifferences(const transport::Hello& hello, const config::Config& config,
                                             const std::string& fingerprint, int num_stages, bool resuming) {
  std::vector<Difference> differences;
  const auto differ = [&](const std::string& what, const std::string& edge, const std::string& cloud) {
    if (edge != cloud) {
      differences.push_back(
          {what + ": edge " + edge + ", cloud " + cloud, what + ": edge " + edge + " differs from the cloud's"});
    }
  };
  differ("model", "'" + hello.model + "'", "'" + config.model.name + "'");
  if (hello.model == config.model.name && hello.fingerprint != fingerprint) {
    differences.push_back({"architecture fingerprint (input shape or classes differ): edge " + hello.fingerprint +
                               ", cloud " + fingerprint,
                           "architecture differs from the cloud's (compare data and model settings: input shape, "
                           "channels, classes)"});
  }
  differ("stages", std::to_string(hello.num_stages), std::to_string(num_stages));
  // A shared fleet is heterogeneous by design: each edge brings its own split point.
  const bool fleet = config.fleet.mode != config::FleetMode::kOff;
  if (!fleet && !config.split.automatic && !resuming && config.scheduler.split_schedule.empty()) {
    differ("split point", std::to_string(hello.split_point), std::to_string(config.split.point));
  }
  differ("batch size", std::to_string(hello.batch_size), std::to_string(config.data.batch_size));
  if (hello.split_point > static_cast<std::uint32_t>(num_stages)) {
    const std::string text = "split point " + std::to_string(hello.split_point) + " is beyond the model";
    differences.push_back({text, text});
  }
  if (hello.epochs == 0) differences.push_back({"epochs: edge asks for 0", "epochs: edge asks for 0"});
  return differences;
}

std::string refusalText(const std::vector<Difference>& differences, bool authenticated) {
  std::string text = "handshake refused: ";
  for (std::size_t i = 0; i < differences.size(); ++i) {
    text += (i ? "; " : "") + (authenticated ? differences[i].full : differences[i].for_peer);
  }
  return text;
}

std::string directoryName(const std::string& run_name) {
  std::string name = run_name.empty() ? "_" : run_name;
  for (auto& ch : name) {
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '-' && ch != '_' && ch != '.') ch = '_';
  }
  // "." and ".." (and any name of dots only) would name this directory or its parent.
  if (name.find_first_not_of('.') == std::string::npos) name = std::string(name.size(), '_');
  return name;
}

ResumeChoice chooseResume(const transport::Hello& hello, const config::Config& config) {
  ResumeChoice choice;
  if (!config.checkpoint.enabled) return choice;
  const std::string run = directoryName(hello.run_name);
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

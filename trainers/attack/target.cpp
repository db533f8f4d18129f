// The only file of the attack tool that needs LibTorch: the model decides the fingerprint
// and the activation shape a valid Hello and a valid batch must have.
#include "trainers/attack/attacks.h"

#include "runtime/config/enum_names.h"
#include "runtime/pipeline/setup.h"

namespace tandem::attack {

Target makeTarget(const config::Config& config, const std::string& endpoint) {
  const auto model = pipeline::buildModel(config);
  const int split = pipeline::initialSplitPoint(config, model);
  Target t;
  t.endpoint = endpoint;
  auto& hello = t.hello;
  hello.edge_name = "tandem-attack";
  hello.run_name = config.run.name;
  hello.model = config.model.name;
  hello.fingerprint = model.fingerprint();
  hello.num_stages = static_cast<std::uint32_t>(model.numStages());
  hello.split_point = static_cast<std::uint32_t>(split);
  hello.batch_size = static_cast<std::uint32_t>(config.data.batch_size);
  hello.staleness = static_cast<std::uint32_t>(config.split.staleness);
  hello.replay = config::toString(config.split.replay);
  hello.uplink_codec = config.compression.uplink;
  hello.downlink_codec = config.compression.downlink;
  hello.epochs = static_cast<std::uint32_t>(config.run.epochs);
  t.activation = model.boundaryShapes()[static_cast<std::size_t>(split)];
  t.num_classes = model.spec().num_classes;
  t.batch_size = config.data.batch_size;
  t.max_message_bytes = static_cast<std::uint64_t>(config.link.max_message_mb * 1024.0 * 1024.0);
  return t;
}

}  // namespace tandem::attack

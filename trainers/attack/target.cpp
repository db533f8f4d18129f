// The only file of the attack tool that needs LibTorch: the model decides the fingerprint
// and the activation shape a valid Hello and a valid batch must have.
#include "trainers/attack/attacks.h"

#include "runtime/pipeline/setup.h"

namespace tandem::attack {

Target makeTarget(const config::Config& config, const std::string& endpoint) {
  const auto model = pipeline::buildModel(config);
  const int split = pipeline::initialSplitPoint(config, model);
  Target t;
  t.endpoint = endpoint;
  t.hello = pipeline::helloFor(config, model, split, "tandem-attack");
  t.activation = model.boundaryShapes()[static_cast<std::size_t>(split)];
  t.num_classes = model.spec().num_classes;
  t.batch_size = config.data.batch_size;
  t.max_message_bytes = static_cast<std::uint64_t>(config.link.max_message_mb * 1024.0 * 1024.0);
  return t;
}

}  // namespace tandem::attack

#include "runtime/scheduler/profiler.h"

#include <torch/utils.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "compression/registry.h"
#include "runtime/common/log.h"
#include "runtime/telemetry/summary.h"

namespace tandem::scheduler {

using Clock = std::chrono::steady_clock;

std::string hostName() {
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  return host;
}

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

}  // namespace

SideProfile measureStages(models::StageModel& model, const torch::Tensor& input, int iterations) {
  const int n = model.numStages();
  // Leave the model as we found it: weights are not stepped, but BatchNorm statistics and
  // gradients change during measurement.
  std::vector<torch::Tensor> saved_buffers;
  for (const auto& b : model.buffers(0, n)) saved_buffers.push_back(b.clone());
  std::vector<torch::Tensor> saved_grads;
  for (const auto& p : model.parameters(0, n)) saved_grads.push_back(p.grad().defined() ? p.grad().clone() : torch::Tensor());
  model.train(true);

  SideProfile profile;
  profile.host = hostName();
  profile.batch_size = input.size(0);
  std::vector<std::vector<double>> forward(static_cast<std::size_t>(n)), backward(static_cast<std::size_t>(n));
  for (int it = -1; it < iterations; ++it) {  // iteration -1 warms up
    torch::Tensor x = input;
    for (int s = 0; s < n; ++s) {
      auto in = x.detach().requires_grad_(s > 0);
      auto t0 = Clock::now();
      auto y = model.forward(in, s, s + 1);
      auto t1 = Clock::now();
      auto grad = torch::ones_like(y) / static_cast<double>(y.numel());
      y.backward(grad);
      auto t2 = Clock::now();
      if (it >= 0) {
        forward[static_cast<std::size_t>(s)].push_back(seconds(t0, t1));
        backward[static_cast<std::size_t>(s)].push_back(seconds(t1, t2));
      }
      x = y.detach();
    }
  }
  for (int s = 0; s < n; ++s) {
    profile.forward_seconds.push_back(median(forward[static_cast<std::size_t>(s)]));
    profile.backward_seconds.push_back(median(backward[static_cast<std::size_t>(s)]));
  }

  torch::NoGradGuard no_grad;
  auto buffers = model.buffers(0, n);
  for (std::size_t i = 0; i < buffers.size(); ++i) buffers[i].copy_(saved_buffers[i]);
  auto params = model.parameters(0, n);
  for (std::size_t i = 0; i < params.size(); ++i) params[i].mutable_grad() = saved_grads[i];
  return profile;
}

std::map<std::string, double> measureCodecs(const std::vector<std::string>& codecs, int iterations,
                                            std::int64_t numel) {
  std::map<std::string, double> out;
  const std::int64_t rows = 64;
  const std::vector<std::int64_t> shape{rows, std::max<std::int64_t>(numel / rows, 1)};
  const auto values = torch::randn(shape).contiguous();
  const double bytes = static_cast<double>(values.numel()) * 4.0;
  std::vector<float> decoded(static_cast<std::size_t>(values.numel()));
  for (const auto& spec : codecs) {
    if (spec == "none" || out.count(spec) > 0) continue;
    const auto codec = compression::makeCodec(spec);
    std::vector<double> times;
    for (int it = -1; it < std::max(iterations, 1); ++it) {  // iteration -1 warms up
      const auto t0 = Clock::now();
      const auto payload = codec->encode(values.data_ptr<float>(), shape);
      codec->decode(payload.data(), payload.size(), shape, decoded.data());
      const auto t1 = Clock::now();
      if (it >= 0) times.push_back(seconds(t0, t1));
    }
    out[spec] = median(times) / bytes;
  }
  return out;
}

std::vector<std::string> codecsToCalibrate(const config::Config& config) {
  std::vector<std::string> codecs;
  const auto add = [&](const std::string& c) {
    if (c != "none" && std::find(codecs.begin(), codecs.end(), c) == codecs.end()) codecs.push_back(c);
  };
  for (const auto& c : config.scheduler.codecs) add(c);
  add(config.compression.uplink);
  add(config.compression.downlink);
  return codecs;
}

ModelProfile describeModel(const models::StageModel& model, std::int64_t batch_size, config::OptimizerKind optimizer) {
  ModelProfile p;
  p.model = model.spec().name;
  p.batch_size = batch_size;
  p.num_stages = model.numStages();
  p.boundary_shapes = model.boundaryShapes();
  const int state_copies = optimizer == config::OptimizerKind::kAdam ? 2 : 1;
  for (int s = 0; s < model.numStages(); ++s) {
    const auto params = model.parameterBytes(s);
    std::int64_t buffers = 0;
    for (const auto& b : model.buffers(s, s + 1)) buffers += b.numel() * static_cast<std::int64_t>(b.element_size());
    p.parameter_bytes.push_back(params);
    p.buffer_bytes.push_back(buffers);
    p.optimizer_state_bytes.push_back(params * state_copies);
  }
  return p;
}

SideProfile sideProfile(const config::Config& config, models::StageModel& model, const torch::Tensor& input,
                        config::Role role_value) {
  const std::string role = config::toString(role_value);
  auto log = log::get(role + ".scheduler");
  const std::string key = model.spec().name + "-b" + std::to_string(input.size(0)) + "-" + hostName() + "-" + role +
                          "-" + model.fingerprint() + ".json";
  const auto path = std::filesystem::path(config.scheduler.profile_dir) / key;
  const auto codecs = codecsToCalibrate(config);
  const auto calibrate = [&](SideProfile& profile) {
    std::vector<std::string> missing;
    for (const auto& c : codecs) {
      if (profile.codec_seconds_per_byte.count(c) == 0) missing.push_back(c);
    }
    if (missing.empty()) return false;
    for (const auto& [codec, cost] : measureCodecs(missing, config.scheduler.profile_iterations)) {
      profile.codec_seconds_per_byte[codec] = cost;
      log->info("codec {} on this host: {:.3g} ns per input byte (encode + decode)", codec, cost * 1e9);
    }
    return true;
  };
  std::optional<SideProfile> cached;
  if (std::ifstream in{path}) {
    std::stringstream text;
    text << in.rdbuf();
    try {
      auto profile = sideFromJson(text.str());
      if (static_cast<int>(profile.forward_seconds.size()) == model.numStages()) {
        log->info("stage profile from {}", path.string());
        cached = std::move(profile);
      } else {
        log->warn("cached profile {} has the wrong number of stages; measuring again", path.string());
      }
    } catch (const std::exception& e) {
      log->warn("cached profile {} is unusable ({}); measuring again", path.string(), e.what());
    }
  }
  SideProfile profile;
  if (cached) {
    profile = std::move(*cached);
    if (!calibrate(profile)) return profile;
  } else {
    log->info("profiling {} stages of {} with batches of {} ({} iterations)...", model.numStages(), model.spec().name,
              input.size(0), config.scheduler.profile_iterations);
    profile = measureStages(model, input, config.scheduler.profile_iterations);
    calibrate(profile);
  }
  try {
    telemetry::writeFileAtomically(path.string(), toJson(profile));
    log->info("stage profile written to {}", path.string());
  } catch (const std::exception& e) {
    log->warn("could not cache the profile: {}", e.what());
  }
  return profile;
}

}  // namespace tandem::scheduler

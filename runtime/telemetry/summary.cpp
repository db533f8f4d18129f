#include "runtime/telemetry/summary.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "runtime/common/error.h"

namespace tandem::telemetry {

std::int64_t RunSummary::totalSteps() const {
  std::int64_t n = 0;
  for (const auto& e : history) n += e.steps;
  return n;
}

std::int64_t RunSummary::totalSamples() const {
  std::int64_t n = 0;
  for (const auto& e : history) n += e.train_samples;
  return n;
}

double RunSummary::trainSamplesPerSecond() const {
  double seconds = 0;
  for (const auto& e : history) seconds += e.train_seconds;
  return seconds > 0 ? static_cast<double>(totalSamples()) / seconds : 0.0;
}

std::vector<int> RunSummary::splitPoints() const {
  std::vector<int> out;
  for (const auto& e : history) out.push_back(e.split_point);
  return out;
}

std::vector<int> RunSummary::staleness() const {
  std::vector<int> out;
  for (const auto& e : history) out.push_back(e.staleness);
  return out;
}

namespace {

// A number, or NaN where JSON has null (not measured).
double numberOrNan(const nlohmann::json& j) {
  return j.is_null() ? std::numeric_limits<double>::quiet_NaN() : j.get<double>();
}

// A JSON number, or null for NaN (not measured).
nlohmann::json measured(double value) { return std::isnan(value) ? nlohmann::json() : nlohmann::json(value); }

nlohmann::json recordJson(const EpochRecord& e) {
  return {{"epoch", e.epoch + 1},
          {"learning_rate", e.learning_rate},
          {"train_loss", e.train_loss},
          {"train_accuracy", e.train_accuracy},
          {"test_loss", measured(e.test_loss)},
          {"test_accuracy", measured(e.test_accuracy)},
          {"train_samples", e.train_samples},
          {"steps", e.steps},
          {"train_seconds", e.train_seconds},
          {"epoch_seconds", e.epoch_seconds},
          {"samples_per_second", e.samplesPerSecond()},
          {"split_point", e.split_point},
          {"staleness", e.staleness},
          {"bytes_uplink", e.bytes_uplink},
          {"bytes_downlink", e.bytes_downlink},
          {"partial", e.partial}};
}

}  // namespace

std::string historyToJson(const std::vector<EpochRecord>& history) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& e : history) out.push_back(recordJson(e));
  return out.dump();
}

std::vector<EpochRecord> historyFromJson(const std::string& text) {
  std::vector<EpochRecord> out;
  bool zero_based = false;  // written before epochs were 1-based: it holds an epoch 0
  try {
    for (const auto& j : nlohmann::json::parse(text)) {
      EpochRecord e;
      e.epoch = j.at("epoch");
      if (e.epoch < 0) throw Error("malformed epoch history: epoch " + std::to_string(e.epoch));
      zero_based = zero_based || e.epoch == 0;
      e.learning_rate = j.at("learning_rate");
      e.train_loss = j.at("train_loss");
      e.train_accuracy = j.at("train_accuracy");
      e.test_loss = numberOrNan(j.at("test_loss"));
      e.test_accuracy = numberOrNan(j.at("test_accuracy"));
      e.train_samples = j.at("train_samples");
      e.steps = j.at("steps");
      e.train_seconds = j.at("train_seconds");
      e.epoch_seconds = j.at("epoch_seconds");
      e.split_point = j.at("split_point");
      e.staleness = j.at("staleness");
      e.bytes_uplink = j.at("bytes_uplink");
      e.bytes_downlink = j.at("bytes_downlink");
      e.partial = j.value("partial", false);
      out.push_back(e);
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("malformed epoch history: ") + e.what());
  }
  if (!zero_based) {
    for (auto& e : out) --e.epoch;
  }
  return out;
}

std::string toJson(const RunSummary& s) {
  using nlohmann::json;
  json epochs = json::array();
  for (const auto& e : s.history) epochs.push_back(recordJson(e));
  json repartitions = json::array();
  for (const auto& r : s.repartitions) {
    repartitions.push_back({{"epoch", r.epoch + 1},
                            {"step", r.step},
                            {"from", r.from},
                            {"to", r.to},
                            {"codec", r.codec},
                            {"trigger", r.trigger},
                            {"seconds", r.seconds},
                            {"bytes", r.bytes}});
  }
  json interventions = json::array();
  for (const auto& i : s.interventions) {
    interventions.push_back({{"epoch", i.epoch + 1},
                             {"step", i.step},
                             {"side", i.side},
                             {"reason", i.reason},
                             {"loss", measured(i.loss)},
                             {"rolled_back_to", i.rolled_back_to < 0 ? json() : json(i.rolled_back_to)},
                             {"action", i.action}});
  }
  // Final figures come from the last epoch that measured them; null when none did.
  const EpochRecord* last_trained = s.history.empty() ? nullptr : &s.history.back();
  const EpochRecord* last_tested = nullptr;
  int completed = 0;
  for (const auto& e : s.history) {
    if (!e.partial) ++completed;
    if (!std::isnan(e.test_accuracy)) last_tested = &e;
  }
  const auto nullable = [](const EpochRecord* e, double EpochRecord::*field) {
    return e ? measured(e->*field) : nlohmann::json();
  };
  json out = {
      {"role", s.role},
      {"run_name", s.run_name},
      {"mode", s.mode},
      {"model", s.model},
      {"dataset", s.dataset},
      {"epochs", completed},
      {"epochs_planned", s.epochs_planned},
      {"interrupted", s.interrupted},
      {"final_test_accuracy", nullable(last_tested, &EpochRecord::test_accuracy)},
      {"final_test_loss", nullable(last_tested, &EpochRecord::test_loss)},
      {"final_train_loss", nullable(last_trained, &EpochRecord::train_loss)},
      {"final_train_accuracy", nullable(last_trained, &EpochRecord::train_accuracy)},
      {"wall_seconds", s.wall_seconds},
      {"train_samples", s.totalSamples()},
      {"steps", s.totalSteps()},
      {"train_samples_per_second", s.trainSamplesPerSecond()},
      {"bytes_uplink", s.bytes_uplink},
      {"bytes_downlink", s.bytes_downlink},
      {"split_points", s.splitPoints()},
      {"staleness", s.staleness()},
      {"repartitions", repartitions},
      {"interventions", interventions},
      {"diverged", s.diverged},
      {"history", epochs},
  };
  if (s.pipeline) {
    const auto& p = *s.pipeline;
    out["pipeline"] = {{"edge_compute_s", p.edge_compute_s},
                       {"upload_s", p.upload_s},
                       {"cloud_compute_s", p.cloud_compute_s},
                       {"download_s", p.download_s},
                       {"bottleneck", p.bottleneck},
                       {"bound_samples_per_second", p.bound_samples_per_second},
                       {"achieved_ratio", p.achieved_ratio}};
  }
  return out.dump(2) + "\n";
}

void writeFileAtomically(const std::string& path, const std::string& text) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  std::error_code ec;
  if (target.has_parent_path()) {
    fs::create_directories(target.parent_path(), ec);
    if (ec) throw Error("cannot create directory '" + target.parent_path().string() + "': " + ec.message());
  }
  const std::string temp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error("cannot write '" + temp + "': " + std::strerror(errno));
  std::size_t written = 0;
  while (written < text.size()) {
    const ssize_t n = ::write(fd, text.data() + written, text.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      ::unlink(temp.c_str());
      throw Error("cannot write '" + temp + "': " + std::strerror(err));
    }
    written += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    const int err = errno;
    ::unlink(temp.c_str());
    throw Error("cannot write '" + temp + "': " + std::strerror(err));
  }
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(temp.c_str());
    throw Error("cannot rename '" + temp + "' to '" + path + "': " + std::strerror(err));
  }
}

std::string writeSummary(const std::string& output_dir, const RunSummary& summary) {
  const std::string path = output_dir + "/summary-" + summary.role + ".json";
  writeFileAtomically(path, toJson(summary));
  return path;
}

}  // namespace tandem::telemetry

#include "runtime/pipeline/setup.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "runtime/common/error.h"
#include "runtime/config/enum_names.h"
#include "runtime/data/shard.h"

namespace tandem::pipeline {

telemetry::RunSummary newRunSummary(config::Role role, const char* mode, const std::string& run_name,
                                    const std::string& model, const std::string& dataset, int epochs_planned) {
  telemetry::RunSummary summary;
  summary.role = config::toString(role);
  summary.mode = mode;
  summary.run_name = run_name;
  summary.model = model;
  summary.dataset = dataset;
  summary.epochs_planned = epochs_planned;
  return summary;
}

telemetry::EpochRecord epochRecord(int epoch, double learning_rate, const RunningStats& train, const RunningStats& test,
                                   double train_seconds, double epoch_seconds, int split_point, int staleness) {
  telemetry::EpochRecord r;
  r.epoch = epoch;
  r.learning_rate = learning_rate;
  r.train_loss = train.loss();
  r.train_accuracy = train.accuracy();
  r.test_loss = test.loss();
  r.test_accuracy = test.accuracy();
  r.train_samples = train.samples;
  r.steps = train.steps;
  r.train_seconds = train_seconds;
  r.epoch_seconds = epoch_seconds;
  r.split_point = split_point;
  r.staleness = staleness;
  return r;
}

std::string epochLine(const telemetry::EpochRecord& r, int epochs) {
  return fmt::format("epoch {}/{}: train loss {:.4f} acc {:.2f}% | test loss {:.4f} acc {:.2f}% | {:.0f} samples/s | {:.1f} s",
                     r.epoch + 1, epochs, r.train_loss, r.train_accuracy * 100, r.test_loss, r.test_accuracy * 100,
                     r.samplesPerSecond(), r.epoch_seconds);
}

void logEpoch(spdlog::logger& logger, const telemetry::EpochRecord& r, int epochs, const EpochLogExtra& extra) {
  log::Fields fields{{"epoch", r.epoch + 1},
                     {"epochs", epochs},
                     {"learning_rate", r.learning_rate},
                     {"train_loss", r.train_loss},
                     {"train_accuracy", r.train_accuracy},
                     {"test_loss", r.test_loss},
                     {"test_accuracy", r.test_accuracy},
                     {"train_samples", r.train_samples},
                     {"steps", r.steps},
                     {"samples_per_second", r.samplesPerSecond()},
                     {"train_seconds", r.train_seconds},
                     {"epoch_seconds", r.epoch_seconds},
                     {"split_point", r.split_point},
                     {"staleness", r.staleness},
                     {"bytes_uplink", r.bytes_uplink},
                     {"bytes_downlink", r.bytes_downlink}};
  fields.insert(fields.end(), extra.fields.begin(), extra.fields.end());
  log::event(logger, spdlog::level::info, "epoch", extra.prefix + epochLine(r, epochs) + extra.suffix, fields);
}

models::ModelSpec modelSpec(const config::Config& config) {
  const data::DatasetInfo info = data::datasetInfo(config.data);
  models::ModelSpec spec;
  spec.name = config.model.name;
  spec.channels = info.channels;
  spec.height = info.height;
  spec.width = info.width;
  spec.num_classes = config.model.num_classes > 0 ? config.model.num_classes : info.num_classes;
  if (spec.num_classes < info.num_classes) {
    config::failAt(config, "model.num_classes",
                   std::to_string(spec.num_classes) + " is fewer than the " + std::to_string(info.num_classes) +
                       " classes of dataset '" + info.name + "'");
  }
  return spec;
}

transport::Hello helloFor(const config::Config& config, const models::StageModel& model, int split,
                          std::string edge_name) {
  transport::Hello hello;
  hello.edge_name = std::move(edge_name);
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
  return hello;
}

models::StageModel buildModel(const config::Config& config) {
  const auto spec = modelSpec(config);
  try {
    return models::makeModel(spec, config.run.seed);
  } catch (const ConfigError& e) {
    config::failAt(config, "model.name", e.what());
  }
}

int initialSplitPoint(const config::Config& config, const models::StageModel& model) {
  if (config.split.point > model.numStages()) {
    config::failAt(config, "split.point",
                   std::to_string(config.split.point) + " is beyond the " + std::to_string(model.numStages()) +
                       " stages of model '" + model.spec().name + "' (valid: 0.." +
                       std::to_string(model.numStages()) + ")");
  }
  return config.split.point;
}

std::shared_ptr<const data::Dataset> loadDataset(const config::Config& config, data::Split split) {
  std::shared_ptr<const data::Dataset> dataset = data::makeDataset(config.data, split);
  const auto& shard = config.data.shard;
  if (split != data::Split::kTrain || shard.count == 1) return dataset;  // the test split is never sharded

  const std::int64_t split_size = dataset->size();
  dataset = data::shardDataset(std::move(dataset), shard);
  std::string text =
      fmt::format("training on {}: {} of {} samples", data::shardName(shard), dataset->size(), split_size);
  log::Fields fields{
      {"shard_index", shard.index}, {"shard_count", shard.count}, {"scheme", config::toString(shard.scheme)},
      {"shard_seed", shard.seed},   {"samples", dataset->size()}, {"split_samples", split_size}};
  if (shard.scheme == config::ShardScheme::kDirichlet) {
    const auto histogram = data::classHistogram(dataset->labels(), dataset->info().num_classes);
    text += fmt::format(", per class [{}]", fmt::join(histogram, " "));
    fields.emplace_back("alpha", shard.alpha);
    fields.emplace_back("class_counts", fmt::format("{}", fmt::join(histogram, " ")));
  }
  log::event(*log::get("edge.data"), spdlog::level::info, "shard", text, fields);
  return dataset;
}

std::unique_ptr<data::BatchLoader> makeLoader(const config::Config& config,
                                              std::shared_ptr<const data::Dataset> dataset, data::Split split) {
  data::LoaderOptions options;
  const bool train = split == data::Split::kTrain;
  options.batch_size = train ? config.data.batch_size : config.data.test_batch_size;
  options.shuffle = train && config.data.shuffle;
  options.seed = config.run.seed;
  options.max_batches = train ? config.data.max_train_batches : config.data.max_test_batches;
  options.prefetch = config.data.prefetch;
  return std::make_unique<data::BatchLoader>(std::move(dataset), options);
}

}  // namespace tandem::pipeline

#pragma once
// The end-of-run summary: `<run.output_dir>/summary-<role>.json` (a contract other tools
// read, docs/design.md). Accuracies are fractions in [0, 1]; times in seconds; byte
// counts are payload + header bytes on the wire. Epochs are 1-based in every file a user
// reads (summary history and repartitions, as in the log lines); in memory they are
// 0-based.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tandem::telemetry {

struct EpochRecord {
  int epoch = 0;  // 0-based here, 1-based in JSON
  double learning_rate = 0.0;
  double train_loss = 0.0;
  double train_accuracy = 0.0;
  double test_loss = 0.0;
  double test_accuracy = 0.0;
  std::int64_t train_samples = 0;
  std::int64_t steps = 0;
  double train_seconds = 0.0;  // the training part of the epoch, without evaluation
  double epoch_seconds = 0.0;  // training and evaluation
  int split_point = 0;
  int staleness = 0;
  std::uint64_t bytes_uplink = 0;
  std::uint64_t bytes_downlink = 0;
  // The run stopped during this epoch: its counts are what was trained; what was not
  // measured (test_loss, test_accuracy) is NaN, null in JSON.
  bool partial = false;

  double samplesPerSecond() const { return train_seconds > 0 ? static_cast<double>(train_samples) / train_seconds : 0.0; }
};

// One live re-partition.
struct Repartition {
  int epoch = 0;          // 0-based here, 1-based in JSON
  std::int64_t step = 0;  // training steps before it
  int from = 0;
  int to = 0;
  std::string codec;
  std::string trigger;  // start | epoch | bandwidth | scheduled
  double seconds = 0.0;
  std::uint64_t bytes = 0;
};

// One intervention of the divergence guard: a training step that failed its check, and
// what was done about it.
struct Intervention {
  int epoch = 0;                     // 0-based here, 1-based in JSON
  std::int64_t step = 0;             // the training step (0-based over the run) that failed
  std::string side;                  // edge | cloud: where the check failed
  std::string reason;                // non_finite | loss_spike
  double loss = 0.0;                 // that step's loss (NaN: null in JSON)
  std::int64_t rolled_back_to = -1;  // steps applied at the snapshot restored; -1: none (the run stopped)
  std::string action;                // the safer setting from then on, e.g. "K 4 -> 2"; or why the run stopped
};

// The measured pipeline of a split run: mean seconds per step of each stage, the slowest
// of them (the bound on throughput) and how close the run came to it.
struct PipelineBound {
  double edge_compute_s = 0.0;   // forward, encode, decode, replay and backward on the edge
  double upload_s = 0.0;         // activation bytes per step over the estimated uplink
  double cloud_compute_s = 0.0;  // the cloud's forward, backward and step
  double download_s = 0.0;       // gradient bytes per step over the estimated downlink
  std::string bottleneck;
  double bound_samples_per_second = 0.0;
  double achieved_ratio = 0.0;   // achieved samples/s over the bound
};

struct RunSummary {
  std::string role;  // edge | cloud | standalone runs report role "edge"
  std::string run_name;
  std::string mode;  // standalone | split
  std::string model;
  std::string dataset;
  int epochs_planned = 0;
  bool interrupted = false;
  double wall_seconds = 0.0;
  std::uint64_t bytes_uplink = 0;
  std::uint64_t bytes_downlink = 0;
  std::vector<EpochRecord> history;
  std::vector<Repartition> repartitions;
  std::vector<Intervention> interventions;
  bool diverged = false;  // the divergence guard stopped the run (exit 1)
  std::optional<PipelineBound> pipeline;

  std::int64_t totalSteps() const;
  std::int64_t totalSamples() const;
  double trainSamplesPerSecond() const;  // over the training parts of all epochs
  std::vector<int> splitPoints() const;   // one per epoch
  std::vector<int> staleness() const;     // K, one per epoch
};

// Epoch records as a JSON array and back (checkpoints carry the history so far), with
// 1-based "epoch" as in summary files. Histories written by earlier versions were 0-based;
// a history always starts at its run's first epoch, so one that holds an epoch 0 is read
// as 0-based (checkpoints of those versions stay resumable). Throws tandem::Error on
// malformed text.
std::string historyToJson(const std::vector<EpochRecord>& history);
std::vector<EpochRecord> historyFromJson(const std::string& text);

// The summary as JSON text (pretty-printed).
std::string toJson(const RunSummary& summary);

// Writes `<output_dir>/summary-<role>.json` atomically (temporary file, then rename),
// creating the directory. Returns the path. Throws tandem::Error on an I/O failure.
std::string writeSummary(const std::string& output_dir, const RunSummary& summary);

// Writes `text` to `path` atomically: a temporary file in the same directory, fsync,
// rename. Creates missing parent directories.
void writeFileAtomically(const std::string& path, const std::string& text);

}  // namespace tandem::telemetry

#pragma once
// Checkpoints: what a trainer needs to continue after a crash, written atomically
// (temporary file, fsync, rename, fsync of the directory) as ckpt-<step>.tnd, the last
// few kept. A file is a magic line, a JSON manifest (run position and, per tensor, its
// dtype, shape, offset, size and CRC-32) and the tensors' raw bytes; loading checks the
// magic, every size against the file and every CRC, so a truncated or corrupt file is
// detected and the previous one used. Nothing in it is executable or a language-specific
// object dump.

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "runtime/telemetry/summary.h"

namespace tandem::checkpoint {

struct Checkpoint {
  std::string role;  // edge | cloud
  std::string run_name;
  std::uint64_t step = 0;  // training steps applied on both sides
  int epoch = 0;           // the epoch to continue
  std::int64_t batch = 0;  // the first batch of `epoch` not yet trained
  int split = 0;
  int staleness = 0;
  std::string codec;
  std::uint64_t updates = 0;
  // Running statistics of `epoch` so far (so the resumed epoch reports the whole epoch).
  double loss_sum = 0.0;
  std::int64_t correct = 0;
  std::int64_t samples = 0;
  std::int64_t steps = 0;
  double epoch_seconds = 0.0;  // training time spent in `epoch` before the checkpoint
  std::vector<std::uint32_t> optimizer_layout;
  std::vector<torch::Tensor> tensors;  // the stages' state (see pipeline::StageState)
  std::vector<telemetry::EpochRecord> history;  // the epochs finished before `epoch`
};

class CheckpointStore {
 public:
  // `directory` is created on the first save; `keep` >= 1.
  CheckpointStore(std::string directory, int keep);

  // Writes ckpt-<step>.tnd atomically and removes all but the newest `keep`. Throws
  // tandem::Error on an I/O failure.
  std::string save(const Checkpoint& checkpoint);

  // Steps of the checkpoints that load cleanly, ascending. Invalid files are logged and
  // skipped.
  std::vector<std::uint64_t> validSteps() const;

  // Throws tandem::Error naming the file and the problem.
  Checkpoint load(std::uint64_t step) const;

  const std::string& directory() const { return directory_; }
  std::string pathFor(std::uint64_t step) const;

 private:
  std::string directory_;
  int keep_;
};

}  // namespace tandem::checkpoint

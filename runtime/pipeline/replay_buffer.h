#pragma once
// The edge's replay buffer: one entry per batch whose gradient has not come back yet
// (docs/design.md, "Feature replay"). Its capacity is K + 1, so memory stays bounded
// whatever the link does; gradients must come back in the order the batches were sent.
//
// Threading: the edge compute thread only.

#include <torch/nn/module.h>
#include <torch/types.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

namespace tandem::pipeline {

struct ReplayEntry {
  std::uint64_t step = 0;
  torch::Tensor input;       // recompute: the batch's input to stage 0
  torch::Tensor activation;  // retain: the boundary activation, with its autograd graph
  // retain: the weight snapshot the activation was computed with (the graph's leaves).
  std::vector<std::shared_ptr<torch::nn::Module>> stash;
  std::uint64_t updates_at_send = 0;  // edge optimizer steps done when the batch was sent
  std::int64_t samples = 0;
  int epoch = 0;
  std::int64_t batch = 0;        // the batch's index in its epoch
  torch::Tensor labels;          // to send the batch again after a link outage
  double sent_at = 0.0;          // edge steady clock (s) when handed to the transport
  std::uint64_t wire_bytes = 0;  // size of the Activations message
};

class ReplayBuffer {
 public:
  explicit ReplayBuffer(std::size_t capacity) : capacity_(capacity) {}

  std::size_t capacity() const { return capacity_; }
  // Changes the capacity (a new K at an epoch boundary); only while empty.
  void setCapacity(std::size_t capacity);
  // Raises the capacity, also with batches in flight (K warming up); never lowers it.
  void raiseCapacity(std::size_t capacity) { capacity_ = std::max(capacity_, capacity); }

  bool full() const { return entries_.size() >= capacity_; }
  bool empty() const { return entries_.empty(); }
  std::size_t size() const { return entries_.size(); }
  std::size_t peakSize() const { return peak_; }
  std::uint64_t oldestStep() const;

  // Throws InvariantError when full (the caller waits for a gradient first).
  void push(ReplayEntry entry);
  // The entry for `step`, which must be the oldest in flight; throws ProtocolError otherwise.
  const ReplayEntry& oldest(std::uint64_t step) const;
  // Removes and returns the entry for `step`, which must be the oldest in flight; throws
  // ProtocolError when the cloud answers a step that is not the oldest in flight.
  ReplayEntry pop(std::uint64_t step);
  void clear() { entries_.clear(); }
  // True when `step` is in flight (not necessarily the oldest).
  bool contains(std::uint64_t step) const;
  const std::deque<ReplayEntry>& entries() const { return entries_; }
  // The entry pushed last; the buffer must not be empty.
  ReplayEntry& newest();

 private:
  std::size_t capacity_;
  std::size_t peak_ = 0;
  std::deque<ReplayEntry> entries_;
};

}  // namespace tandem::pipeline

#pragma once
// Error feedback for compressed activations (docs/design.md, "Error-feedback
// compression"). The edge keeps e = Q(x) − x for every in-flight batch and, when the
// gradient g (computed by the cloud at Q(x)) comes back, corrects it with the seed
// system's first-order term  g ← g − λ · e ⊙ g ⊙ g  (a diagonal Gauss–Newton estimate
// of the Hessian, as in delay-compensated SGD).
//
// Threading: one ErrorFeedback per edge pipeline, used from its compute thread only.
//
// What the correction buys, measured (tests/compression/error_feedback_test.cpp, a linear
// cloud layer + softmax cross-entropy): e ⊙ g ⊙ g is a diagonal estimate of H·e, while the
// true Hessian of a cloud layer is far from diagonal, so the correction removes only a
// small part of the gradient error g(Q(x)) − g(x). With a batch-mean loss and lambda = 1 it
// helps a little (0.02 % to 5 % smaller error, less for larger batches and wider layers);
// the best lambda is about 0.1–0.45 × batch size and removes at most ~9 %. With a summed
// (per-sample) loss, lambda = 1 overshoots and the corrected gradient is 5–30 % further
// from g(x) than the uncorrected one (up to 3× for an MSE loss). Keep lambda <= 1 for
// batch-mean losses and scale it by 1 / batch size for summed ones.

#include <cstdint>
#include <map>
#include <vector>

#include "compression/codec.h"

namespace tandem::compression {

// Element-wise: error[i] = decoded[i] − original[i]. `error` may alias either input.
void computeError(const float* original, const float* decoded, float* error, std::size_t n);

// Element-wise, in place: grad[i] −= lambda · error[i] · grad[i]².
void correctGradient(float* grad, const float* error, std::size_t n, float lambda = 1.0f);

class ErrorFeedback {
 public:
  explicit ErrorFeedback(float lambda = 1.0f) : lambda_(lambda) {}

  // Encodes `values` with `codec`, stores the quantisation error under `step`, returns the
  // payload. Replaces any error already stored for `step`.
  std::vector<std::uint8_t> encode(const Codec& codec, std::uint64_t step, const float* values,
                                   const std::vector<std::int64_t>& shape);

  // Corrects `grad` (the gradient for batch `step`, same shape as at encode) in place and
  // forgets that step's error. Returns false, changing nothing, if no error is stored for
  // `step` (lossless codec or unknown step); throws CodecError on a size mismatch, leaving
  // the gradient and the stored error unchanged.
  bool correct(std::uint64_t step, float* grad, std::size_t n);

  // Drops a stored error without using it (batch abandoned).
  void forget(std::uint64_t step) { errors_.erase(step); }

  std::size_t pending() const { return errors_.size(); }
  // Memory held by the stored errors (4 bytes per activation element in flight), for the
  // edge's memory budget.
  std::size_t pendingBytes() const;
  float lambda() const { return lambda_; }

 private:
  float lambda_;
  std::map<std::uint64_t, std::vector<float>> errors_;
};

}  // namespace tandem::compression

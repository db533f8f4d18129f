#include "compression/error_feedback.h"

#include <string>

namespace tandem::compression {

void computeError(const float* original, const float* decoded, float* error, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) error[i] = decoded[i] - original[i];
}

void correctGradient(float* grad, const float* error, std::size_t n, float lambda) {
  for (std::size_t i = 0; i < n; ++i) grad[i] -= lambda * error[i] * grad[i] * grad[i];
}

std::vector<std::uint8_t> ErrorFeedback::encode(const Codec& codec, std::uint64_t step, const float* values,
                                                const std::vector<std::int64_t>& shape) {
  std::vector<std::uint8_t> payload = codec.encode(values, shape);
  if (codec.lossless()) {
    errors_.erase(step);
    return payload;
  }
  // Decode our own payload: the error must be what the receiver will see, not an estimate.
  const auto n = static_cast<std::size_t>(checkedNumel(shape));
  std::vector<float> error(n);
  codec.decode(payload.data(), payload.size(), shape, error.data());
  computeError(values, error.data(), error.data(), n);
  errors_.insert_or_assign(step, std::move(error));
  return payload;
}

bool ErrorFeedback::correct(std::uint64_t step, float* grad, std::size_t n) {
  const auto it = errors_.find(step);
  if (it == errors_.end()) return false;
  if (it->second.size() != n) {
    throw CodecError("error feedback: gradient for step " + std::to_string(step) + " has " + std::to_string(n) +
                     " elements, the activation it corrects had " + std::to_string(it->second.size()));
  }
  correctGradient(grad, it->second.data(), n, lambda_);
  errors_.erase(it);
  return true;
}

std::size_t ErrorFeedback::pendingBytes() const {
  std::size_t bytes = 0;
  for (const auto& entry : errors_) bytes += entry.second.size() * sizeof(float);
  return bytes;
}

}  // namespace tandem::compression

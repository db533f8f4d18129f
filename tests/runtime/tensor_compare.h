#pragma once
// Comparing lists of tensors in tests (model states, gradients).

#include <gtest/gtest.h>
#include <torch/types.h>

#include <algorithm>
#include <vector>

namespace tandem::test_util {

// The largest absolute difference between corresponding tensors (in double precision); a
// size mismatch is a test failure.
inline double maxDifference(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    worst = std::max(worst, (a[i].to(torch::kDouble) - b[i].to(torch::kDouble)).abs().max().item<double>());
  }
  return worst;
}

}  // namespace tandem::test_util

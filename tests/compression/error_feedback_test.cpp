// Error feedback: the bookkeeping of ErrorFeedback, and whether the seed system's
// first-order correction g ← g − λ·e⊙g⊙g brings the gradient computed at the compressed
// activation closer to the gradient at the exact one, measured on a small split model.

#include <cmath>
#include <random>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "compression/error_feedback.h"
#include "compression/registry.h"
#include "tests/compression/codec_test_util.h"

namespace tandem::compression {
namespace {

TEST(ErrorFeedbackMath, ComputeErrorAndCorrectGradient) {
  const std::vector<float> original{1.0f, -2.0f, 0.5f};
  const std::vector<float> decoded{1.25f, -2.0f, 0.0f};
  std::vector<float> error(3);
  computeError(original.data(), decoded.data(), error.data(), 3);
  EXPECT_EQ(error, (std::vector<float>{0.25f, 0.0f, -0.5f}));
  std::vector<float> grad{2.0f, 3.0f, -1.0f};
  correctGradient(grad.data(), error.data(), 3);
  EXPECT_EQ(grad, (std::vector<float>{2.0f - 0.25f * 4.0f, 3.0f, -1.0f + 0.5f * 1.0f}));
  std::vector<float> scaled{2.0f, 3.0f, -1.0f};
  correctGradient(scaled.data(), error.data(), 3, 0.5f);
  EXPECT_EQ(scaled, (std::vector<float>{1.5f, 3.0f, -0.75f}));
}

TEST(ErrorFeedbackBookkeeping, StoresOneErrorPerStepOfALossyCodec) {
  ErrorFeedback feedback;
  const auto int8 = makeCodec("int8");
  const auto x = test::normalData(40, 3);
  const auto payload = feedback.encode(*int8, 7, x.data(), {4, 10});
  EXPECT_EQ(payload, int8->encode(x.data(), {4, 10}));
  EXPECT_EQ(feedback.pending(), 1u);
  EXPECT_EQ(feedback.pendingBytes(), 40 * sizeof(float));

  // The stored error is what the receiver decodes minus the input.
  std::vector<float> decoded(40);
  int8->decode(payload.data(), payload.size(), {4, 10}, decoded.data());
  std::vector<float> grad(40, 1.0f);
  EXPECT_TRUE(feedback.correct(7, grad.data(), grad.size()));
  for (std::size_t i = 0; i < 40; ++i) EXPECT_FLOAT_EQ(grad[i], 1.0f - (decoded[i] - x[i]));
  EXPECT_EQ(feedback.pending(), 0u);
  EXPECT_FALSE(feedback.correct(7, grad.data(), grad.size())) << "an error is used once";
}

TEST(ErrorFeedbackBookkeeping, LosslessCodecsAndUnknownStepsChangeNothing) {
  ErrorFeedback feedback;
  const auto x = test::normalData(8, 1);
  feedback.encode(*makeCodec("int4"), 1, x.data(), {8});
  feedback.encode(*makeCodec("none+zstd"), 1, x.data(), {8});  // replaces step 1's error with none
  EXPECT_EQ(feedback.pending(), 0u);
  std::vector<float> grad(8, 1.0f);
  EXPECT_FALSE(feedback.correct(1, grad.data(), grad.size()));
  EXPECT_FALSE(feedback.correct(99, grad.data(), grad.size()));
  EXPECT_EQ(grad, std::vector<float>(8, 1.0f));
}

TEST(ErrorFeedbackBookkeeping, SizeMismatchThrowsAndKeepsTheError) {
  ErrorFeedback feedback;
  const auto x = test::normalData(8, 1);
  feedback.encode(*makeCodec("int2"), 3, x.data(), {8});
  std::vector<float> grad(9, 1.0f);
  EXPECT_THROW(feedback.correct(3, grad.data(), grad.size()), CodecError);
  EXPECT_EQ(grad, std::vector<float>(9, 1.0f));
  EXPECT_EQ(feedback.pending(), 1u);
  feedback.forget(3);
  EXPECT_EQ(feedback.pending(), 0u);
}

TEST(ErrorFeedbackBookkeeping, KeepsStepsApartAndReplacesARepeatedStep) {
  ErrorFeedback feedback(0.5f);
  EXPECT_EQ(feedback.lambda(), 0.5f);
  const auto codec = makeCodec("int2");
  const auto a = test::normalData(16, 1);
  const auto b = test::normalData(16, 2);
  feedback.encode(*codec, 1, a.data(), {16});
  feedback.encode(*codec, 2, b.data(), {16});
  feedback.encode(*codec, 2, a.data(), {16});
  EXPECT_EQ(feedback.pending(), 2u);
  std::vector<float> g1(16, 1.0f);
  std::vector<float> g2(16, 1.0f);
  feedback.correct(1, g1.data(), 16);
  feedback.correct(2, g2.data(), 16);
  EXPECT_EQ(g1, g2) << "step 2 was re-encoded from the same data as step 1";
}

// ----- does the correction help? ----------------------------------------------------------
//
// A split model small enough to differentiate by hand. The edge computes the activation
// x = relu(a · W1) of a batch a (B × D); the cloud computes logits z = x · W2 (W2 is H × C)
// and the softmax cross-entropy against labels y, averaged over the batch as training
// losses are. g(x) = ∂L/∂x = (softmax(z) − onehot(y)) · W2ᵀ / B.

struct SplitModel {
  int batch;
  int hidden;
  int classes = 10;
  bool meanOverBatch = true;
  std::vector<float> activation;  // x, batch × hidden
  std::vector<float> w2;          // hidden × classes
  std::vector<int> labels;

  SplitModel(int b, int h, float weightScale, std::uint32_t seed) : batch(b), hidden(h) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const int inputs = 12;
    std::vector<float> a(static_cast<std::size_t>(batch * inputs));
    std::vector<float> w1(static_cast<std::size_t>(inputs * hidden));
    for (float& v : a) v = normal(rng);
    for (float& v : w1) v = normal(rng) / std::sqrt(static_cast<float>(inputs));
    w2.resize(static_cast<std::size_t>(hidden * classes));
    for (float& v : w2) v = normal(rng) * weightScale / std::sqrt(static_cast<float>(hidden));
    labels.resize(static_cast<std::size_t>(batch));
    for (int& y : labels) y = static_cast<int>(rng() % static_cast<std::uint32_t>(classes));
    activation.assign(static_cast<std::size_t>(batch * hidden), 0.0f);
    for (int i = 0; i < batch; ++i) {
      for (int j = 0; j < hidden; ++j) {
        double s = 0;
        for (int k = 0; k < inputs; ++k) s += static_cast<double>(a[i * inputs + k]) * w1[k * hidden + j];
        activation[i * hidden + j] = static_cast<float>(std::max(0.0, s));
      }
    }
  }

  std::vector<float> gradient(const std::vector<float>& x) const {
    std::vector<float> g(x.size());
    for (int i = 0; i < batch; ++i) {
      std::vector<double> z(static_cast<std::size_t>(classes), 0.0);
      for (int c = 0; c < classes; ++c) {
        for (int j = 0; j < hidden; ++j) z[c] += static_cast<double>(x[i * hidden + j]) * w2[j * classes + c];
      }
      const double top = *std::max_element(z.begin(), z.end());
      double sum = 0;
      for (double v : z) sum += std::exp(v - top);
      for (int j = 0; j < hidden; ++j) {
        double acc = 0;
        for (int c = 0; c < classes; ++c) {
          const double dz = std::exp(z[c] - top) / sum - (c == labels[i] ? 1.0 : 0.0);
          acc += dz * w2[j * classes + c];
        }
        g[i * hidden + j] = static_cast<float>(meanOverBatch ? acc / batch : acc);
      }
    }
    return g;
  }
};

double distance(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
  return std::sqrt(s);
}

struct Outcome {
  double uncorrected;  // ‖g(Q(x)) − g(x)‖
  double corrected;    // ‖g(Q(x)) − λ·e⊙g⊙g − g(x)‖
};

Outcome measure(const SplitModel& model, const std::string& spec, float lambda) {
  const std::vector<std::int64_t> shape{model.batch, model.hidden};
  ErrorFeedback feedback(lambda);
  const auto codec = makeCodec(spec);
  const auto payload = feedback.encode(*codec, 0, model.activation.data(), shape);
  std::vector<float> received(model.activation.size());
  codec->decode(payload.data(), payload.size(), shape, received.data());

  const std::vector<float> exact = model.gradient(model.activation);
  std::vector<float> grad = model.gradient(received);
  const double uncorrected = distance(grad, exact);
  EXPECT_TRUE(feedback.correct(0, grad.data(), grad.size()));
  return Outcome{uncorrected, distance(grad, exact)};
}

class CorrectionHelps : public ::testing::TestWithParam<std::string> {};

// The configuration the trainers use: batch-mean cross-entropy, lambda = 1. The measured
// improvement is small (see error_feedback.h): about 4 % here, less for wider layers and
// larger batches; the assertion is only that it points the right way on every seed.
TEST_P(CorrectionHelps, WithABatchMeanLossAndLambdaOne) {
  for (std::uint32_t seed = 1; seed <= 5; ++seed) {
    const SplitModel model(8, 16, 1.0f, seed);
    const Outcome o = measure(model, GetParam(), 1.0f);
    ASSERT_GT(o.uncorrected, 0.0);
    EXPECT_LT(o.corrected, o.uncorrected) << "seed " << seed;
    RecordProperty("ratio_seed_" + std::to_string(seed), std::to_string(o.corrected / o.uncorrected));
  }
}

// The first-order term is a diagonal estimate of the cloud's Hessian; with a summed loss
// g⊙g is batch-size times larger and the correction overshoots. This pins the measured
// limitation so that a change of formula has to revisit error_feedback.h.
TEST_P(CorrectionHelps, NotWithASummedLossAndLambdaOne) {
  SplitModel model(32, 64, 1.0f, 7);
  model.meanOverBatch = false;
  const Outcome o = measure(model, GetParam(), 1.0f);
  EXPECT_GT(o.corrected, o.uncorrected);
  RecordProperty("ratio_lambda_1", std::to_string(o.corrected / o.uncorrected));
  // Scaling lambda by 1 / batch size recovers the batch-mean behaviour.
  const Outcome scaled = measure(model, GetParam(), 1.0f / 32);
  EXPECT_LT(scaled.corrected, scaled.uncorrected);
  RecordProperty("ratio_lambda_1_over_batch", std::to_string(scaled.corrected / scaled.uncorrected));
}

INSTANTIATE_TEST_SUITE_P(Codecs, CorrectionHelps, ::testing::Values("int8", "int4"));

}  // namespace
}  // namespace tandem::compression

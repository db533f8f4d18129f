#include "runtime/scheduler/cost_model.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>

#include "runtime/common/error.h"
#include "tests/scheduler/synthetic_profile.h"

namespace tandem::scheduler {
namespace {

using testing::encodedSize;
using ::testing::HasSubstr;
using testing::link;
using testing::syntheticProfile;

// Two stages, batch 2, per-sample boundaries [3], [5], [10]: A(0) = 24, A(1) = 40, A(2) = 80
// bytes. Stage 0 holds 1000 B of weights and 100 B of buffers, stage 1 3000 B of weights.
ModelProfile tinyProfile() {
  return syntheticProfile(2, {3},
                          {{1.0, 3.0, 0.1, 0.3, 5, 1000, 100},  //
                           {2.0, 4.0, 0.2, 0.4, 10, 3000, 0}});
}

CostModel tinyModel(CostModelOptions options = {}) {
  options.codec_seconds_per_byte = 0.01;
  return CostModel(tinyProfile(), encodedSize, options);
}

// uplink 8000 bit/s, downlink 16000 bit/s, rtt 50 ms.
const LinkEstimate kSlowLink = link(0.008, 0.016, 50);

void expectTimes(const IterationTimes& t, double edge, double edge_forward, double up, double cloud, double down,
                 double latency) {
  EXPECT_NEAR(t.edge, edge, 1e-12);
  EXPECT_NEAR(t.edge_forward, edge_forward, 1e-12);
  EXPECT_NEAR(t.up, up, 1e-12);
  EXPECT_NEAR(t.cloud, cloud, 1e-12);
  EXPECT_NEAR(t.down, down, 1e-12);
  EXPECT_NEAR(t.latency, latency, 1e-12);
}

TEST(CostModel, IterationTimesByHand) {
  const auto model = tinyModel();
  // Split 1, no codec: the edge runs stage 0's forward twice (recompute) and its backward;
  // 40 B of activation + 16 B of labels + 256 B of header go up, 40 + 128 B come down.
  expectTimes(model.iteration(1, "none", kSlowLink), 2 * 1.0 + 3.0, 1.0, 312 * 8 / 8000.0, 0.2 + 0.4, 168 * 8 / 16000.0,
              0.05);
  // int8 quarters the activation; encode+decode costs 0.01 s per float32 byte, half a side.
  expectTimes(model.iteration(1, "int8", kSlowLink), 5.2, 1.2, 282 * 8 / 8000.0, 0.8, 168 * 8 / 16000.0, 0.05);
  // Split 0: the raw input goes up (encoded too), only an acknowledgement comes back.
  expectTimes(model.iteration(0, "int8", kSlowLink), 0.12, 0.12, 278 * 8 / 8000.0, 1.0 + 0.12, 128 * 8 / 16000.0, 0.05);
  // Split n: the logits go up and the cloud only computes the loss.
  const auto retain = tinyModel({config::Replay::kRetain});
  expectTimes(retain.iteration(2, "none", kSlowLink), 1 + 3 + 2 + 4, 3.0, 352 * 8 / 8000.0, 0.0, 208 * 8 / 16000.0,
              0.05);

  CostModelOptions down_int8;
  down_int8.downlink_codec = "int8";
  const auto t = tinyModel(down_int8).iteration(1, "none", kSlowLink);
  // The cloud encodes the gradient and the edge decodes it after the gradient is back.
  expectTimes(t, 5.2, 1.0, 312 * 8 / 8000.0, 0.8, 138 * 8 / 16000.0, 0.05);
  EXPECT_DOUBLE_EQ(t.bottleneck(), 5.2);
  EXPECT_DOUBLE_EQ(t.sum(), t.edge + t.up + t.cloud + t.down + 0.05);

  EXPECT_EQ(model.uplinkBytes(1, "none"), 312);
  EXPECT_EQ(model.downlinkBytes(0), 128);
}

TEST(CostModel, UnmeasuredBandwidthChargesNothing) {
  const auto t = tinyModel().iteration(1, "none", {0.0, -1.0, 0.05});
  EXPECT_EQ(t.up, 0.0);
  EXPECT_EQ(t.down, 0.0);
  EXPECT_DOUBLE_EQ(t.latency, 0.05);
}

TEST(CostModel, RejectsSplitsOutsideTheModel) {
  const auto model = tinyModel();
  EXPECT_THROW(model.iteration(3, "none", kSlowLink), InvariantError);
  EXPECT_THROW(model.iteration(-1, "none", kSlowLink), InvariantError);
  EXPECT_THROW(model.migrationSeconds(0, 3, kSlowLink), InvariantError);
  EXPECT_THROW(model.edgeMemoryBytes(5, 0, "none", false), InvariantError);
}

std::string constructionError(ModelProfile profile, CostModelOptions options = {}) {
  try {
    CostModel model(std::move(profile), encodedSize, options);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(CostModel, RejectsInconsistentProfilesWithTheReason) {
  auto p = tinyProfile();
  p.boundary_shapes.pop_back();
  EXPECT_THAT(constructionError(p), HasSubstr("2 boundary shapes for 2 stages (expected 3"));
  p = tinyProfile();
  p.parameter_bytes.push_back(1);
  EXPECT_THAT(constructionError(p), HasSubstr("parameter_bytes has 3 entries for 2 stages"));
  p = tinyProfile();
  p.cloud.backward_seconds.pop_back();
  EXPECT_THAT(constructionError(p), HasSubstr("the cloud profile times 2 forward and 1 backward stages"));
  p = tinyProfile();
  p.batch_size = 0;
  EXPECT_THAT(constructionError(p), HasSubstr("batch size 0"));
}

TEST(CostModel, DerivesMissingOptimizerStateFromTheOptimizer) {
  auto p = tinyProfile();
  p.optimizer_state_bytes.clear();
  p.buffer_bytes.clear();
  CostModelOptions adam;
  adam.optimizer = config::OptimizerKind::kAdam;
  const CostModel model(p, encodedSize, adam);
  EXPECT_EQ(model.profile().optimizer_state_bytes, (std::vector<std::int64_t>{2000, 6000}));
  EXPECT_EQ(model.profile().buffer_bytes, (std::vector<std::int64_t>{0, 0}));
  EXPECT_EQ(model.migrationBytes(0, 1), 1000 + 2000);
}

TEST(CostModel, MigrationMovesWeightsBuffersAndOptimizerStateTheWayTheyTravel) {
  const auto model = tinyModel();
  const std::int64_t stage0 = 1000 + 100 + 1000;
  const std::int64_t stage1 = 3000 + 0 + 3000;
  EXPECT_EQ(model.migrationBytes(2, 0), stage0 + stage1);
  EXPECT_EQ(model.migrationBytes(0, 2), stage0 + stage1);
  EXPECT_EQ(model.migrationBytes(1, 2), stage1);
  EXPECT_EQ(model.migrationBytes(1, 1), 0);
  // 2 → 0: both stages leave the edge, on the uplink (8000 bit/s); 0 → 2 they come down
  // the downlink (16000 bit/s); one round trip either way.
  EXPECT_DOUBLE_EQ(model.migrationSeconds(2, 0, kSlowLink), 8100 * 8 / 8000.0 + 0.05);
  EXPECT_DOUBLE_EQ(model.migrationSeconds(0, 2, kSlowLink), 8100 * 8 / 16000.0 + 0.05);
  EXPECT_DOUBLE_EQ(model.migrationSeconds(1, 0, kSlowLink), 2100 * 8 / 8000.0 + 0.05);
  EXPECT_EQ(model.migrationSeconds(1, 1, kSlowLink), 0.0);
  EXPECT_DOUBLE_EQ(model.migrationSeconds(2, 0, {0, 0, 0.05}), 0.05);
}

TEST(CostModel, EdgeMemoryByHand) {
  const auto model = tinyModel();
  // Split 1, K = 2: weights + grads + momentum + buffers of stage 0 = 3100; working
  // activations 2·(24 + 40) = 128; three stored inputs 3·24 = 72; the encoded payload 40.
  EXPECT_EQ(model.edgeMemoryBytes(1, 2, "none", false), 3100 + 128 + 72 + 40);
  // Error feedback keeps one int8 error per batch in flight: 3·40; the payload is 10.
  EXPECT_EQ(model.edgeMemoryBytes(1, 2, "int8", true), 3100 + 128 + 72 + 120 + 10);
  EXPECT_EQ(model.edgeMemoryBytes(1, 2, "none", true), model.edgeMemoryBytes(1, 2, "none", false));
  // Retain: three graphs and three weight snapshots.
  EXPECT_EQ(tinyModel({config::Replay::kRetain}).edgeMemoryBytes(1, 2, "none", false), 3100 + 3 * (128 + 1000) + 40);
  // Split 0 replays nothing: the input batch and its payload, whatever K.
  EXPECT_EQ(model.edgeMemoryBytes(0, 0, "none", false), 48 + 24);
  EXPECT_EQ(model.edgeMemoryBytes(0, 7, "none", true), 48 + 24);
}

TEST(CostModel, EdgeMemoryGrowsWithStalenessAndSplitAndRetainCostsMore) {
  const auto recompute = tinyModel();
  const auto retain = tinyModel({config::Replay::kRetain});
  for (int p = 1; p <= 2; ++p) {
    for (int k = 0; k < 4; ++k) {
      EXPECT_LT(recompute.edgeMemoryBytes(p, k, "none", false), recompute.edgeMemoryBytes(p, k + 1, "none", false));
      EXPECT_LT(retain.edgeMemoryBytes(p, k, "none", false), retain.edgeMemoryBytes(p, k + 1, "none", false));
      EXPECT_LT(recompute.edgeMemoryBytes(p, k, "none", false), retain.edgeMemoryBytes(p, k, "none", false));
    }
  }
  for (int k = 0; k < 4; ++k) {
    EXPECT_LT(recompute.edgeMemoryBytes(0, k, "none", false), recompute.edgeMemoryBytes(1, k, "none", false));
    EXPECT_LT(recompute.edgeMemoryBytes(1, k, "none", false), recompute.edgeMemoryBytes(2, k, "none", false));
  }
}

IterationTimes times(double edge_forward, double edge, double up, double cloud, double down, double latency) {
  IterationTimes t;
  t.edge_forward = edge_forward;
  t.edge = edge;
  t.up = up;
  t.cloud = cloud;
  t.down = down;
  t.latency = latency;
  return t;
}

TEST(CostModel, SeedFormulaByHand) {
  const auto t = times(1, 2, 1, 1, 1, 0);  // T* = 2, T0 = 5
  EXPECT_DOUBLE_EQ(CostModel::seedEpochSeconds(t, 4, 0), 4 * 5.0);
  EXPECT_DOUBLE_EQ(CostModel::seedEpochSeconds(t, 4, 1), 3 * 2 + 5 + 1 * (5 - 4.0));
  EXPECT_DOUBLE_EQ(CostModel::seedEpochSeconds(t, 4, 3), 3 * 2 + 5.0);
  EXPECT_DOUBLE_EQ(CostModel::seedEpochSeconds(t, 4, 100), 3 * 2 + 5.0);
  EXPECT_EQ(CostModel::seedEpochSeconds(t, 0, 1), 0.0);
}

TEST(CostModel, SynchronousEpochIsIterationsTimesTheRoundTrip) {
  const auto model = tinyModel();
  for (const std::string codec : {"none", "int8"}) {
    for (int p = 0; p <= 2; ++p) {
      const auto t = model.iteration(p, codec, kSlowLink);
      for (std::int64_t r : {1, 7, 300, 1000000}) {
        EXPECT_NEAR(model.epochSeconds(t, r, 0), static_cast<double>(r) * t.sum(), 1e-9 * r * t.sum());
        EXPECT_NEAR(CostModel::seedEpochSeconds(t, r, 0), static_cast<double>(r) * t.sum(), 1e-9 * r * t.sum());
      }
      EXPECT_EQ(model.epochSeconds(t, 0, 0), 0.0);
      EXPECT_EQ(model.epochSeconds(t, -5, 3), 0.0);
      EXPECT_DOUBLE_EQ(model.epochSeconds(t, 9, -2), model.epochSeconds(t, 9, 0));
    }
  }
}

TEST(CostModel, LargeStalenessGivesAFullPipeline) {
  const auto model = tinyModel();
  // The uplink is the bottleneck (2 s); everything else overlaps with it.
  const auto t = times(0.4, 1.0, 2.0, 0.5, 0.5, 0.3);
  for (std::int64_t r : {1000, 100000}) {
    const double full = static_cast<double>(r - 1) * t.bottleneck() + t.sum();
    EXPECT_DOUBLE_EQ(CostModel::seedEpochSeconds(t, r, static_cast<int>(r)), full);
    EXPECT_NEAR(model.epochSeconds(t, r, static_cast<int>(r)), full, 1e-3 * full);
    EXPECT_NEAR(model.epochSeconds(t, r, 4), full, 1e-3 * full);  // (K+1)·T* > T0 already
  }
}

TEST(CostModel, DrainingEveryArrivedGradientFormsConvoysTheSeedFormulaMisses) {
  // The edge's forward is free, its replay takes 1 s, the uplink 1 s per batch, K = 1.
  // Applying every arrived gradient before sending, the edge replays two batches back to
  // back while the uplink idles, then sends two that queue on it: in steady state three
  // batches take 4 s. Applying at most one per send interleaves replays and sends and the
  // uplink never idles: 1 s per batch, as the formula says.
  const auto t = times(0.0, 1.0, 1.0, 0.0, 0.0, 0.0);
  CostModelOptions one;
  one.drain_arrived_gradients = false;
  const auto drain = tinyModel();
  const auto interleave = tinyModel(one);
  EXPECT_DOUBLE_EQ(drain.epochSeconds(t, 4, 1), 6.0);
  EXPECT_DOUBLE_EQ(interleave.epochSeconds(t, 4, 1), 5.0);
  EXPECT_DOUBLE_EQ(CostModel::seedEpochSeconds(t, 4, 1), 5.0);
  const double seed = CostModel::seedEpochSeconds(t, 1000, 1);
  EXPECT_NEAR(drain.epochSeconds(t, 1000, 1) / seed, 4.0 / 3.0, 0.01);
  EXPECT_NEAR(interleave.epochSeconds(t, 1000, 1) / seed, 1.0, 0.01);
}

TEST(CostModel, SimulationAgreesWithTheSeedFormulaWhenTheEdgeInterleaves) {
  // With at most one gradient applied per batch sent, the seed formula holds for long
  // epochs; the simulation must reproduce it (within 2%) over random stage times.
  CostModelOptions one;
  one.drain_arrived_gradients = false;
  const auto model = tinyModel(one);
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (int i = 0; i < 500; ++i) {
    const double forward = u(rng);
    const auto t = times(forward, forward + 2 * u(rng), 3 * u(rng), u(rng), u(rng), u(rng) < 0.3 ? 0 : 2 * u(rng));
    const std::int64_t r = 200 + static_cast<std::int64_t>(rng() % 5000);
    const int k = static_cast<int>(rng() % 6);
    const double seed = CostModel::seedEpochSeconds(t, r, k);
    EXPECT_NEAR(model.epochSeconds(t, r, k), seed, 0.02 * seed) << "r " << r << " K " << k;
  }
}

TEST(CostModel, RawInputGoesUpInTheDatasetsNativeBytesWithoutACodec) {
  // Batch 32 of 3×32×32 inputs: 98304 elements.
  const ModelProfile profile = syntheticProfile(32, {3, 32, 32}, {{0.01, 0.01, 0.01, 0.01, 100, 0, 0}});
  const std::int64_t labels = 8 * 32;
  CostModelOptions native;
  native.input_element_bytes = 1;  // uint8 pixels
  const CostModel bytes(profile, encodedSize, native);
  const CostModel floats(profile, encodedSize, {});
  EXPECT_EQ(bytes.uplinkBytes(0, "none"), 98304 + labels + CostModel::kUplinkOverheadBytes);
  EXPECT_EQ(floats.uplinkBytes(0, "none"), 4 * 98304 + labels + CostModel::kUplinkOverheadBytes);
  // A codec encodes the float32 input as before, and other splits are unaffected.
  EXPECT_EQ(bytes.uplinkBytes(0, "int8"), floats.uplinkBytes(0, "int8"));
  EXPECT_EQ(bytes.uplinkBytes(1, "none"), floats.uplinkBytes(1, "none"));
  // The upload time follows: a quarter of the bytes on the same link.
  const auto l = link(8, 8, 0);
  EXPECT_NEAR(bytes.iteration(0, "none", l).up, static_cast<double>(bytes.uplinkBytes(0, "none")) * 8 / 8e6, 1e-12);
  EXPECT_LT(bytes.iteration(0, "none", l).up, 0.3 * floats.iteration(0, "none", l).up);
  CostModelOptions bad;
  bad.input_element_bytes = 0;
  EXPECT_THROW(CostModel(profile, encodedSize, bad), Error);
}

TEST(CostModel, EachSideIsChargedItsOwnHostsMeasuredCodecCost) {
  ModelProfile profile = syntheticProfile(4, {256}, {{0, 0, 0, 0, 256, 0, 0}, {0, 0, 0, 0, 10, 0, 0}});
  profile.edge.codec_seconds_per_byte = {{"int8", 2e-9}};    // a slow edge
  profile.cloud.codec_seconds_per_byte = {{"int8", 1e-10}};  // a fast cloud
  CostModelOptions options;
  options.codec_seconds_per_byte = 5e-10;  // for codecs a profile did not measure (fp16 here)
  const CostModel model(profile, encodedSize, options);
  const double bytes = 4 * 256 * 4;  // the float32 boundary tensor at split 1
  const auto t = model.iteration(1, "int8", {});
  EXPECT_NEAR(t.edge, 0.5 * bytes * 2e-9, 1e-15);
  EXPECT_NEAR(t.edge_forward, 0.5 * bytes * 2e-9, 1e-15);
  EXPECT_NEAR(t.cloud, 0.5 * bytes * 1e-10, 1e-15);
  const auto f = model.iteration(1, "fp16", {});
  EXPECT_NEAR(f.edge, 0.5 * bytes * 5e-10, 1e-15);
  EXPECT_NEAR(f.cloud, 0.5 * bytes * 5e-10, 1e-15);
  profile.cloud.codec_seconds_per_byte["int8"] = -1;
  EXPECT_THROW(CostModel(profile, encodedSize, options), Error);
}

}  // namespace
}  // namespace tandem::scheduler

#include "tests/compression/codec_test_util.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include <gtest/gtest.h>

#include "compression/codecs/topk.h"

namespace tandem::compression::test {
namespace {

std::vector<float> reluData(std::size_t n, std::uint32_t seed) {
  std::vector<float> v = normalData(n, seed);
  for (float& x : v) x = std::max(0.0f, x);
  return v;
}

std::vector<float> negativeOnly(std::size_t n, std::uint32_t seed) {
  std::vector<float> v = normalData(n, seed, 0.0f, 5.0f);
  for (float& x : v) x = -std::fabs(x) - 1.0f;
  return v;
}

std::vector<float> hugeRange(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-3e38f, 3e38f);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  if (n >= 2) {
    v[0] = FLT_MAX;
    v[n - 1] = -FLT_MAX;
  }
  return v;
}

std::vector<float> tinyRange(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<float> v(n);
  for (float& x : v) {
    x = 1.0f;
    for (std::uint32_t steps = rng() % 4; steps > 0; --steps) x = std::nextafter(x, 2.0f);
  }
  return v;
}

std::vector<float> constant(std::size_t n, std::uint32_t) { return std::vector<float>(n, -0.3f); }

std::vector<float> signedZeros(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = (rng() % 2) ? -0.0f : 0.0f;
  return v;
}

std::vector<float> subnormal(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = std::numeric_limits<float>::denorm_min() * static_cast<float>(rng() % 1000) * ((rng() % 2) ? 1.0f : -1.0f);
  return v;
}

std::vector<float> mixedMagnitudes(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> exponent(-30.0f, 30.0f);
  std::vector<float> v(n);
  for (float& x : v) x = std::pow(10.0f, exponent(rng)) * ((rng() % 2) ? 1.0f : -1.0f);
  return v;
}

std::vector<float> ties(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  const float levels[] = {-2.0f, -1.0f, 0.0f, 1.0f, 2.0f};
  std::vector<float> v(n);
  for (float& x : v) x = levels[rng() % 5];
  return v;
}

struct Groups {
  std::size_t count = 1;
  std::size_t inner = 0;
  std::size_t of(std::size_t i) const { return count == 1 ? 0 : (i / inner) % count; }
};

Groups groupsFor(bool perChannel, const std::vector<std::int64_t>& shape, std::size_t n) {
  if (!perChannel || shape.size() < 2) return Groups{1, n};
  std::size_t inner = 1;
  for (std::size_t d = 2; d < shape.size(); ++d) inner *= static_cast<std::size_t>(shape[d]);
  return Groups{static_cast<std::size_t>(shape[1]), inner};
}

// Reports at most this many element failures per call, so one bad codec does not flood.
constexpr int kMaxReports = 5;

void expectAffine(int bits, bool perChannel, const std::vector<float>& x, const std::vector<std::int64_t>& shape,
                  const std::vector<float>& decoded) {
  const Groups groups = groupsFor(perChannel, shape, x.size());
  std::vector<double> lo(groups.count, std::numeric_limits<double>::infinity());
  std::vector<double> hi(groups.count, -std::numeric_limits<double>::infinity());
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i])) continue;
    lo[groups.of(i)] = std::min<double>(lo[groups.of(i)], x[i]);
    hi[groups.of(i)] = std::max<double>(hi[groups.of(i)], x[i]);
  }
  const double qmax = (1 << bits) - 1;
  int reports = 0;
  for (std::size_t i = 0; i < x.size() && reports < kMaxReports; ++i) {
    if (!std::isfinite(x[i])) continue;
    const std::size_t g = groups.of(i);
    const double scale = (hi[g] - lo[g]) / qmax;
    // scale/2, widened by the float rounding of the scale, of (x − min)·inv and of the
    // decoded value (a few ulps of the group's largest magnitude).
    const double tolerance = scale / 2 * (1 + 1e-3) + 4 * FLT_EPSILON * std::max(std::fabs(lo[g]), std::fabs(hi[g])) +
                             qmax * std::numeric_limits<float>::denorm_min();
    const double error = std::fabs(static_cast<double>(decoded[i]) - x[i]);
    if (!(error <= tolerance)) {
      ADD_FAILURE() << "element " << i << " (group " << g << "): x = " << x[i] << ", decoded " << decoded[i]
                    << ", error " << error << " > tolerance " << tolerance << " (scale " << scale << ")";
      ++reports;
    }
  }
}

void expectHalfLike(bool bf16, const std::vector<float>& x, const std::vector<float>& decoded) {
  // Half an ulp, relative, for normal values; absolute for the format's subnormals.
  const double relative = bf16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11);
  const double absolute = bf16 ? std::ldexp(1.0, -134) : std::ldexp(1.0, -25);
  const double overflow = bf16 ? 3.3961514e38 : 65520.0;  // rounds to inf from here on
  int reports = 0;
  for (std::size_t i = 0; i < x.size() && reports < kMaxReports; ++i) {
    const double xi = x[i];
    bool ok;
    if (std::isnan(x[i])) {
      ok = std::isnan(decoded[i]);
    } else if (std::fabs(xi) >= overflow) {
      ok = std::isinf(decoded[i]) && std::signbit(decoded[i]) == std::signbit(x[i]);
    } else {
      ok = std::fabs(decoded[i] - xi) <= std::max(relative * std::fabs(xi), absolute) &&
           (decoded[i] == 0.0f || std::signbit(decoded[i]) == std::signbit(x[i]));
    }
    if (!ok) {
      ADD_FAILURE() << "element " << i << ": x = " << x[i] << ", decoded " << decoded[i];
      ++reports;
    }
  }
}

void expectTopk(double ratio, const std::vector<float>& x, const std::vector<float>& decoded) {
  const std::size_t k = topkCount(ratio, x.size());
  // Reference selection: larger magnitude first (NaN largest), then lower index.
  const auto key = [&](std::size_t i) {
    std::uint32_t bits;
    std::memcpy(&bits, &x[i], sizeof bits);
    return bits & 0x7FFFFFFFu;
  };
  std::vector<std::size_t> order(x.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return key(a) > key(b); });
  std::vector<float> expected(x.size(), 0.0f);
  for (std::size_t j = 0; j < k; ++j) expected[order[j]] = x[order[j]];
  EXPECT_TRUE(sameBits(expected, decoded)) << "top-" << k << " of " << x.size() << " elements differs";
}

}  // namespace

std::vector<float> normalData(std::size_t n, std::uint32_t seed, float mean, float stddev) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(mean, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

const std::vector<DataSet>& dataSets() {
  static const std::vector<DataSet> sets{
      {"normal", [](std::size_t n, std::uint32_t seed) { return normalData(n, seed); }},
      {"relu", &reluData},
      {"negative_only", &negativeOnly},
      {"huge_range", &hugeRange},
      {"tiny_range", &tinyRange},
      {"constant", &constant},
      {"signed_zeros", &signedZeros},
      {"subnormal", &subnormal},
      {"mixed_magnitudes", &mixedMagnitudes},
      {"ties", &ties},
  };
  return sets;
}

std::string baseSpec(const std::string& spec) { return spec.substr(0, spec.find('+')); }

bool sameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

std::string specTestName(const std::string& spec) {
  std::string name = spec;
  for (char& c : name) {
    if (c == ':' || c == '+' || c == '.') c = '_';
  }
  return name;
}

void expectWithinContract(const std::string& spec, const std::vector<float>& x, const std::vector<std::int64_t>& shape,
                          const std::vector<float>& decoded) {
  ASSERT_EQ(x.size(), decoded.size());
  const std::string base = baseSpec(spec);
  if (base == "none") {
    EXPECT_TRUE(sameBits(x, decoded)) << "none must be bit-exact";
  } else if (base == "fp16" || base == "bf16") {
    expectHalfLike(base == "bf16", x, decoded);
  } else if (base.rfind("topk:", 0) == 0) {
    expectTopk(std::stod(base.substr(5)), x, decoded);
  } else if (base.rfind("int", 0) == 0) {
    const bool perChannel = base.find("_channel") != std::string::npos;
    expectAffine(std::stoi(base.substr(3)), perChannel, x, shape, decoded);
  } else {
    ADD_FAILURE() << "no contract known for codec " << spec;
  }
}

std::string decodeError(const Codec& codec, const std::vector<std::uint8_t>& payload, const std::vector<std::int64_t>& shape) {
  std::vector<float> out(static_cast<std::size_t>(checkedNumel(shape)));
  try {
    codec.decode(payload.data(), payload.size(), shape, out.data());
  } catch (const CodecError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace tandem::compression::test

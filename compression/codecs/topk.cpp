#include "compression/codecs/topk.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <functional>
#include <vector>

#include "compression/parallel.h"
#include "compression/payload.h"

namespace tandem::compression {
namespace {

constexpr std::size_t kHeaderBytes = sizeof(std::uint32_t);
constexpr std::size_t kEntryBytes = sizeof(std::uint32_t) + sizeof(float);

// |x| as an integer that orders like |x| (NaNs above +inf), from the float's bits.
inline std::uint32_t magnitudeKey(float x) {
  std::uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return bits & 0x7FFFFFFFu;
}

// Finds the k-th largest magnitude key in two passes: a histogram of the top 12 of the 31
// key bits finds the bucket that holds it, then the keys of that bucket (typically a few
// percent of the tensor) are gathered and the exact key selected among them. `greater`
// counts the keys above it. Both passes give the same result however the work is split.
struct Threshold {
  std::uint32_t key = 0;
  std::size_t greater = 0;
};

constexpr int kBucketShift = 19;
constexpr std::size_t kBuckets = std::size_t{1} << (31 - kBucketShift);
using Counts = std::vector<std::uint32_t>;

Counts bucketCounts(const float* values, std::size_t n) {
  return detail::reduceChunks(
      n, Counts(kBuckets, 0),
      [&](std::size_t begin, std::size_t end) {
        // Four interleaved histograms: neighbouring values often share a bucket, and one
        // counter incremented back to back would serialise on its store-to-load latency.
        Counts local(4 * kBuckets, 0);
        std::size_t i = begin;
        for (; i + 4 <= end; i += 4) {
          for (std::size_t lane = 0; lane < 4; ++lane) ++local[lane * kBuckets + (magnitudeKey(values[i + lane]) >> kBucketShift)];
        }
        for (; i < end; ++i) ++local[magnitudeKey(values[i]) >> kBucketShift];
        Counts counts(kBuckets);
        for (std::size_t b = 0; b < kBuckets; ++b) {
          counts[b] = local[b] + local[kBuckets + b] + local[2 * kBuckets + b] + local[3 * kBuckets + b];
        }
        return counts;
      },
      [](Counts a, const Counts& b) {
        for (std::size_t j = 0; j < a.size(); ++j) a[j] += b[j];
        return a;
      });
}

Threshold findThreshold(const float* values, std::size_t n, std::size_t k) {
  const Counts counts = bucketCounts(values, n);
  std::size_t greater = 0;
  std::uint32_t bucket = static_cast<std::uint32_t>(kBuckets - 1);
  while (bucket > 0 && greater + counts[bucket] < k) greater += counts[bucket--];

  // The order in which chunks append does not matter: only the selected key's value is used.
  std::vector<std::uint32_t> candidates = detail::reduceChunks(
      n, std::vector<std::uint32_t>(),
      [&](std::size_t begin, std::size_t end) {
        std::vector<std::uint32_t> local;
        for (std::size_t i = begin; i < end; ++i) {
          const std::uint32_t key = magnitudeKey(values[i]);
          if ((key >> kBucketShift) == bucket) local.push_back(key);
        }
        return local;
      },
      [](std::vector<std::uint32_t> a, const std::vector<std::uint32_t>& b) {
        a.insert(a.end(), b.begin(), b.end());
        return a;
      });
  const std::size_t rank = k - greater - 1;  // of the wanted key among the candidates, from the top
  std::nth_element(candidates.begin(), candidates.begin() + static_cast<std::ptrdiff_t>(rank), candidates.end(),
                   std::greater<std::uint32_t>());
  const std::uint32_t key = candidates[rank];
  greater += static_cast<std::size_t>(
      std::count_if(candidates.begin(), candidates.end(), [key](std::uint32_t c) { return c > key; }));
  return Threshold{key, greater};
}

// Writes the index of every kept element of [begin, end) to indices[], in order, and
// returns how many it wrote. `equalBefore` is the number of keys equal to the threshold
// before `begin`; the first `ties` of those are kept. Branch-free (about one element in ten
// is kept, at random, which a branch would mispredict): each index is stored at the
// current position, which only advances when the element is kept, so indices[] needs one
// slot of slack beyond the count. Values are gathered afterwards, so the loop stores once
// per element rather than twice.
std::size_t writeKept(const float* values, std::size_t begin, std::size_t end, const Threshold& threshold,
                      std::size_t ties, std::size_t equalBefore, std::uint32_t* indices) {
  // A local copy: stores through `indices` (uint32_t) could alias threshold.key otherwise,
  // forcing a reload after every element.
  const std::uint32_t limit = threshold.key;
  std::size_t out = 0;
  std::size_t equal = equalBefore;
  for (std::size_t i = begin; i < end; ++i) {
    const std::uint32_t key = magnitudeKey(values[i]);
    const bool isEqual = key == limit;
    const bool keep = (key > limit) | (isEqual & (equal < ties));
    equal += isEqual;
    indices[out] = static_cast<std::uint32_t>(i);
    out += keep;
  }
  return out;
}

class TopkCodec final : public Codec {
 public:
  explicit TopkCodec(double ratio) : ratio_(ratio) {
    char buffer[64];
    // Shortest text that parses back to the same double: "0.1", not "0.10000000000000001".
    const auto result = std::to_chars(buffer, buffer + sizeof buffer, ratio);
    spec_ = "topk:" + std::string(buffer, result.ptr);
  }

  std::string spec() const override { return spec_; }
  bool lossless() const override { return false; }

  std::vector<std::uint8_t> encode(const float* values, const std::vector<std::int64_t>& shape) const override {
    const auto n = static_cast<std::size_t>(checkedNumel(shape));
    const std::size_t k = topkCount(ratio_, n);
    std::vector<std::uint8_t> payload(kHeaderBytes + k * kEntryBytes);
    detail::storeU32(payload.data(), static_cast<std::uint32_t>(k));
    if (k == 0) return payload;

    // k == n keeps everything; skipping the selection also keeps ratio 1 cheap.
    const Threshold threshold = k == n ? Threshold{0, 0} : findThreshold(values, n, k);
    const std::size_t ties = k - threshold.greater;  // keys equal to the threshold to keep
    std::vector<std::uint32_t> keptIndices(k + 1);  // + 1: writeKept's slack

    if (!detail::runsInParallel(n)) {
      writeKept(values, 0, n, threshold, ties, 0, keptIndices.data());
    } else {
      // Two passes over fixed chunks: count what each chunk keeps, then let each write its
      // entries at its prefix-sum offset, so the order never depends on scheduling.
      const std::size_t chunks = (n + detail::kChunkElements - 1) / detail::kChunkElements;
      std::vector<std::size_t> greaterIn(chunks);
      std::vector<std::size_t> equalIn(chunks);
      const auto chunkEnd = [&](std::size_t c) { return std::min(n, (c + 1) * detail::kChunkElements); };
      detail::forEachChunk(n, [&](std::size_t begin, std::size_t end) {
        for (std::size_t c = begin / detail::kChunkElements; c * detail::kChunkElements < end; ++c) {
          const std::uint32_t limit = threshold.key;
          std::uint32_t g = 0;
          std::uint32_t e = 0;
          const std::size_t last = chunkEnd(c);
          for (std::size_t i = c * detail::kChunkElements; i < last; ++i) {
            const std::uint32_t key = magnitudeKey(values[i]);
            g += key > limit ? 1u : 0u;
            e += key == limit ? 1u : 0u;
          }
          greaterIn[c] = g;
          equalIn[c] = e;
        }
      });
      std::vector<std::size_t> outputAt(chunks + 1);
      std::vector<std::size_t> equalBefore(chunks);
      std::size_t equalSeen = 0;
      for (std::size_t c = 0; c < chunks; ++c) {
        equalBefore[c] = equalSeen;
        outputAt[c + 1] = outputAt[c] + greaterIn[c] + std::min(equalIn[c], ties - std::min(ties, equalSeen));
        equalSeen += equalIn[c];
      }
      detail::forEachChunk(n, [&](std::size_t begin, std::size_t end) {
        // Each chunk writes through its own buffer (the slack slot would otherwise land on
        // the next chunk's first entry, which another thread owns).
        std::vector<std::uint32_t> indices;
        for (std::size_t c = begin / detail::kChunkElements; c * detail::kChunkElements < end; ++c) {
          const std::size_t count = outputAt[c + 1] - outputAt[c];
          indices.resize(count + 1);
          writeKept(values, c * detail::kChunkElements, chunkEnd(c), threshold, ties, equalBefore[c], indices.data());
          std::copy_n(indices.begin(), count, keptIndices.begin() + static_cast<std::ptrdiff_t>(outputAt[c]));
        }
      });
    }
    std::memcpy(payload.data() + kHeaderBytes, keptIndices.data(), k * sizeof(std::uint32_t));
    std::uint8_t* kept = payload.data() + kHeaderBytes + k * sizeof(std::uint32_t);
    for (std::size_t j = 0; j < k; ++j) detail::storeF32(kept + j * sizeof(float), values[keptIndices[j]]);
    return payload;
  }

  void decode(const std::uint8_t* bytes, std::size_t size, const std::vector<std::int64_t>& shape,
              float* out) const override {
    const auto n = static_cast<std::size_t>(checkedNumel(shape));
    detail::expectHeader(spec_, size, kHeaderBytes);
    const std::size_t k = detail::loadU32(bytes);
    if (k > n) {
      throw CodecError(spec_ + ": payload keeps k = " + std::to_string(k) + " values, more than the " +
                       std::to_string(n) + " elements of shape " + detail::shapeString(shape));
    }
    const std::size_t expectedK = topkCount(ratio_, n);
    if (k != expectedK) {
      throw CodecError(spec_ + ": payload keeps k = " + std::to_string(k) + " values, but " + spec_ + " of " +
                       std::to_string(n) + " elements keeps " + std::to_string(expectedK));
    }
    detail::expectPayloadSize(spec_, size, kHeaderBytes + k * kEntryBytes, shape);

    const std::uint8_t* indices = bytes + kHeaderBytes;
    const std::uint8_t* kept = indices + k * sizeof(std::uint32_t);
    // Validate every index before touching `out`, so a bad payload leaves it as it was.
    for (std::size_t j = 0; j < k; ++j) {
      const std::uint32_t index = detail::loadU32(indices + j * sizeof(std::uint32_t));
      if (index >= n) {
        throw CodecError(spec_ + ": index " + std::to_string(index) + " at position " + std::to_string(j) +
                         " is out of range for " + std::to_string(n) + " elements");
      }
      if (j > 0 && index <= detail::loadU32(indices + (j - 1) * sizeof(std::uint32_t))) {
        throw CodecError(spec_ + ": indices are not strictly increasing at position " + std::to_string(j));
      }
    }
    detail::forEachChunk(n, [&](std::size_t begin, std::size_t end) { std::fill(out + begin, out + end, 0.0f); });
    for (std::size_t j = 0; j < k; ++j) {
      out[detail::loadU32(indices + j * sizeof(std::uint32_t))] = detail::loadF32(kept + j * sizeof(float));
    }
  }

  std::size_t encodedSize(const std::vector<std::int64_t>& shape) const override {
    return kHeaderBytes + topkCount(ratio_, static_cast<std::size_t>(checkedNumel(shape))) * kEntryBytes;
  }

 private:
  double ratio_;
  std::string spec_;
};

}  // namespace

std::size_t topkCount(double ratio, std::size_t numel) {
  if (numel == 0) return 0;
  const double product = ratio * static_cast<double>(numel);
  const double nearest = std::round(product);
  const double k = std::fabs(product - nearest) <= 1e-9 * product ? nearest : std::ceil(product);
  return std::clamp<std::size_t>(static_cast<std::size_t>(k), 1, numel);
}

double parseTopkRatio(const std::string& argument) {
  const auto fail = [&](const std::string& why) {
    return CodecError("topk: bad ratio '" + argument + "': " + why + " (write topk:<ratio> with 0 < ratio <= 1, e.g. topk:0.1)");
  };
  if (argument.empty()) throw fail("missing");
  // from_chars is locale-independent; the character check keeps out "inf", "nan" and hex.
  if (argument.find_first_not_of("0123456789.eE+-") != std::string::npos) throw fail("not a decimal number");
  double ratio = 0.0;
  const char* end = argument.data() + argument.size();
  const auto result = std::from_chars(argument.data(), end, ratio);
  if (result.ec != std::errc() || result.ptr != end) throw fail("not a decimal number");
  if (!(ratio > 0.0 && ratio <= 1.0)) throw fail("out of range");
  return ratio;
}

std::unique_ptr<Codec> makeTopkCodec(double ratio) {
  if (!(ratio > 0.0 && ratio <= 1.0)) {
    throw CodecError("topk: ratio " + std::to_string(ratio) + " is out of range; expected 0 < ratio <= 1");
  }
  return std::make_unique<TopkCodec>(ratio);
}

}  // namespace tandem::compression

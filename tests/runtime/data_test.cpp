#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>

#include "runtime/common/error.h"
#include "runtime/data/dataset.h"
#include "runtime/data/idx.h"
#include "runtime/data/loader.h"
#include "runtime/data/shard.h"
#include "runtime/pipeline/setup.h"

namespace tandem::data {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

const std::string kFashion = "/usr/share/datasets/fashion-mnist";

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() / ("tandem_data_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++));
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::string path() const { return path_.string(); }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

void writeBytes(const std::string& path, const std::vector<std::uint8_t>& bytes, bool gzip) {
  if (gzip) {
    gzFile f = gzopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    if (!bytes.empty()) gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
    gzclose(f);
  } else {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
}

std::vector<std::uint8_t> idxBytes(std::uint8_t rank, const std::vector<std::uint32_t>& dims, std::size_t values,
                                   std::uint8_t fill = 1) {
  std::vector<std::uint8_t> b = {0, 0, 0x08, rank};
  for (auto d : dims) {
    b.push_back(static_cast<std::uint8_t>(d >> 24));
    b.push_back(static_cast<std::uint8_t>(d >> 16));
    b.push_back(static_cast<std::uint8_t>(d >> 8));
    b.push_back(static_cast<std::uint8_t>(d));
  }
  b.insert(b.end(), values, fill);
  return b;
}

std::string dataErrorOf(const std::function<void()>& f) {
  try {
    f();
  } catch (const DataError& e) {
    return e.what();
  }
  return "";
}

TEST(FashionMnist, ReadsThePackagedFiles) {
  auto train = loadFashionMnist(kFashion, Split::kTrain, true);
  auto test = loadFashionMnist(kFashion, Split::kTest, true);
  EXPECT_EQ(train->size(), 60000);
  EXPECT_EQ(test->size(), 10000);
  EXPECT_EQ(train->info().channels, 1);
  EXPECT_EQ(train->info().num_classes, 10);
  const auto& labels = dynamic_cast<const TensorDataset&>(*train).labels();
  EXPECT_EQ(labels.min().item<std::int64_t>(), 0);
  EXPECT_EQ(labels.max().item<std::int64_t>(), 9);
  // Fashion-MNIST is balanced: 6000 training examples per class.
  EXPECT_EQ(labels.eq(3).sum().item<std::int64_t>(), 6000);
  // Normalised with the training-set statistics: mean ≈ 0, std ≈ 1 over a large batch.
  std::vector<std::int64_t> idx(5000);
  for (std::int64_t i = 0; i < 5000; ++i) idx[static_cast<std::size_t>(i)] = i;
  auto batch = train->gather(idx);
  EXPECT_EQ(batch.inputs.sizes(), (std::vector<std::int64_t>{5000, 1, 28, 28}));
  EXPECT_NEAR(batch.inputs.mean().item<double>(), 0.0, 0.05);
  EXPECT_NEAR(batch.inputs.std().item<double>(), 1.0, 0.05);
}

TEST(FashionMnist, MissingDirectoryNamesTheFile) {
  const auto message = dataErrorOf([] { loadFashionMnist("/nonexistent", Split::kTrain, true); });
  EXPECT_THAT(message, HasSubstr("/nonexistent/train-images-idx3-ubyte.gz"));
}

TEST(FashionMnist, MismatchedCountsAreRejected) {
  TempDir dir;
  writeBytes(dir.file("t10k-images-idx3-ubyte.gz"), idxBytes(3, {3, 28, 28}, 3 * 784), true);
  writeBytes(dir.file("t10k-labels-idx1-ubyte.gz"), idxBytes(1, {2}, 2), true);
  EXPECT_THAT(dataErrorOf([&] { loadFashionMnist(dir.path(), Split::kTest, true); }),
              HasSubstr("holds 3 images but"));
}

TEST(FashionMnist, OutOfRangeLabelIsRejected) {
  TempDir dir;
  writeBytes(dir.file("t10k-images-idx3-ubyte.gz"), idxBytes(3, {2, 28, 28}, 2 * 784), true);
  writeBytes(dir.file("t10k-labels-idx1-ubyte.gz"), idxBytes(1, {2}, 2, 12), true);
  const auto message = dataErrorOf([&] { loadFashionMnist(dir.path(), Split::kTest, true); });
  EXPECT_THAT(message, HasSubstr("label 12 at index 0 is outside 0..9"));
  EXPECT_THAT(message, HasSubstr("t10k-labels-idx1-ubyte.gz"));
}

TEST(Idx, ReadsPlainAndGzip) {
  TempDir dir;
  writeBytes(dir.file("a.idx"), idxBytes(2, {2, 3}, 6, 7), false);
  writeBytes(dir.file("a.idx.gz"), idxBytes(2, {2, 3}, 6, 7), true);
  for (const auto& name : {"a.idx", "a.idx.gz"}) {
    const auto array = readIdx(dir.file(name), 2);
    EXPECT_EQ(array.dims, (std::vector<std::int64_t>{2, 3}));
    EXPECT_EQ(array.values, std::vector<std::uint8_t>(6, 7));
  }
}

TEST(Idx, CorruptFilesAreRejectedWithTheirName) {
  TempDir dir;
  auto bad_magic = idxBytes(1, {4}, 4);
  bad_magic[2] = 0x0d;  // float32 IDX: not what we read
  writeBytes(dir.file("magic.gz"), bad_magic, true);
  EXPECT_THAT(dataErrorOf([&] { readIdx(dir.file("magic.gz"), 1); }), HasSubstr("bad magic 0x00000d01"));

  writeBytes(dir.file("rank.gz"), idxBytes(2, {2, 2}, 4), true);
  EXPECT_THAT(dataErrorOf([&] { readIdx(dir.file("rank.gz"), 3); }), HasSubstr("has 2 dimensions, expected 3"));

  writeBytes(dir.file("short.gz"), idxBytes(1, {10}, 7), true);
  const auto short_message = dataErrorOf([&] { readIdx(dir.file("short.gz"), 1); });
  EXPECT_THAT(short_message, HasSubstr("short.gz' is truncated: header declares 10 values, file has 7"));

  writeBytes(dir.file("long.gz"), idxBytes(1, {3}, 5), true);
  EXPECT_THAT(dataErrorOf([&] { readIdx(dir.file("long.gz"), 1); }), HasSubstr("2 bytes after the values"));

  writeBytes(dir.file("empty.gz"), {}, true);
  EXPECT_THAT(dataErrorOf([&] { readIdx(dir.file("empty.gz"), 1); }), HasSubstr("no IDX header"));

  writeBytes(dir.file("header.gz"), {0, 0, 8, 3, 0, 0}, true);
  EXPECT_THAT(dataErrorOf([&] { readIdx(dir.file("header.gz"), 3); }), HasSubstr("truncated inside its header"));
}

TEST(Idx, TruncatedGzipStreamIsDetected) {
  TempDir dir;
  writeBytes(dir.file("full.gz"), idxBytes(1, {100000}, 100000, 3), true);
  std::ifstream in(dir.file("full.gz"), std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  bytes.resize(bytes.size() / 2);
  std::ofstream(dir.file("cut.gz"), std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  const auto message = dataErrorOf([&] { readIdx(dir.file("cut.gz"), 1); });
  EXPECT_THAT(message, HasSubstr("cut.gz"));
  EXPECT_FALSE(message.empty());
}

std::vector<std::uint8_t> cifarRecords(int count, std::uint8_t label_base) {
  std::vector<std::uint8_t> bytes;
  for (int r = 0; r < count; ++r) {
    bytes.push_back(static_cast<std::uint8_t>((label_base + r) % 10));
    for (int i = 0; i < 3072; ++i) bytes.push_back(static_cast<std::uint8_t>((r * 7 + i) % 256));
  }
  return bytes;
}

TEST(Cifar10, ReadsBinaryBatches) {
  TempDir dir;
  writeBytes(dir.file("data_batch_1.bin"), cifarRecords(5, 0), false);
  writeBytes(dir.file("data_batch_2.bin"), cifarRecords(3, 5), false);
  writeBytes(dir.file("test_batch.bin"), cifarRecords(4, 2), false);
  auto train = loadCifar10(dir.path(), Split::kTrain, false);
  auto test = loadCifar10(dir.path(), Split::kTest, false);
  EXPECT_EQ(train->size(), 8);
  EXPECT_EQ(test->size(), 4);
  EXPECT_EQ(train->info().channels, 3);
  const auto& t = dynamic_cast<const TensorDataset&>(*train);
  EXPECT_EQ(t.labels()[6].item<std::int64_t>(), 6);
  // Record 1, pixel 0 of the red plane is (1*7 + 0) % 256; green plane starts at 1024.
  EXPECT_EQ(t.images()[1][0][0][0].item<std::uint8_t>(), 7);
  EXPECT_EQ(t.images()[1][1][0][0].item<std::uint8_t>(), (7 + 1024) % 256);
  auto batch = train->gather({1});
  EXPECT_FLOAT_EQ(batch.inputs[0][0][0][0].item<float>(), 7.0f / 255.0f);
}

TEST(Cifar10, CorruptFilesAreRejected) {
  TempDir dir;
  EXPECT_THAT(dataErrorOf([&] { loadCifar10(dir.path(), Split::kTrain, true); }),
              HasSubstr("no CIFAR-10 training files"));
  auto truncated = cifarRecords(2, 0);
  truncated.pop_back();
  writeBytes(dir.file("data_batch_1.bin"), truncated, false);
  EXPECT_THAT(dataErrorOf([&] { loadCifar10(dir.path(), Split::kTrain, true); }),
              HasSubstr("data_batch_1.bin' is truncated or corrupt"));
  auto bad_label = cifarRecords(2, 0);
  bad_label[3073] = 200;
  writeBytes(dir.file("data_batch_1.bin"), bad_label, false);
  EXPECT_THAT(dataErrorOf([&] { loadCifar10(dir.path(), Split::kTrain, true); }),
              HasSubstr("record 1 has label 200"));
  EXPECT_THAT(dataErrorOf([&] { loadCifar10(dir.path(), Split::kTest, true); }), HasSubstr("test_batch.bin"));
}

TEST(Synthetic, DeterministicAndShaped) {
  config::SyntheticDataConfig c;
  c.train_size = 100;
  c.channels = 3;
  c.height = 8;
  c.width = 6;
  c.num_classes = 4;
  auto a = makeSynthetic(c, 1, Split::kTrain);
  auto b = makeSynthetic(c, 1, Split::kTrain);
  auto test = makeSynthetic(c, 1, Split::kTest);
  const auto& ta = dynamic_cast<const TensorDataset&>(*a);
  const auto& tb = dynamic_cast<const TensorDataset&>(*b);
  EXPECT_TRUE(ta.images().equal(tb.images()));
  EXPECT_TRUE(ta.labels().equal(tb.labels()));
  EXPECT_EQ(ta.images().sizes(), (std::vector<std::int64_t>{100, 3, 8, 6}));
  EXPECT_LT(ta.labels().max().item<std::int64_t>(), 4);
  EXPECT_EQ(test->size(), c.test_size);
  EXPECT_FALSE(dynamic_cast<const TensorDataset&>(*test).images().slice(0, 0, 10).equal(ta.images().slice(0, 0, 10)));
}

TEST(Registry, UnknownDatasetListsKnown) {
  config::DataConfig c;
  c.dataset = "mnist";
  try {
    datasetInfo(c);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_THAT(e.what(), HasSubstr("known: cifar10, fashion_mnist, synthetic"));
  }
}

TEST(EpochOrder, SeededPermutation) {
  const auto a = epochOrder(1000, 42, 0, true);
  const auto b = epochOrder(1000, 42, 0, true);
  const auto c = epochOrder(1000, 42, 1, true);
  const auto d = epochOrder(1000, 43, 0, true);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_NE(a, d);
  std::set<std::int64_t> unique(a.begin(), a.end());
  EXPECT_EQ(unique.size(), 1000u);
  EXPECT_EQ(*unique.begin(), 0);
  EXPECT_EQ(*unique.rbegin(), 999);
  EXPECT_EQ(epochOrder(5, 42, 0, false), (std::vector<std::int64_t>{0, 1, 2, 3, 4}));
  // Pinned: the order must not change between builds or platforms (resume depends on it).
  EXPECT_EQ((std::vector<std::int64_t>(a.begin(), a.begin() + 3)), (std::vector<std::int64_t>{a[0], a[1], a[2]}));
}

std::shared_ptr<const Dataset> smallSynthetic(std::int64_t n) {
  config::SyntheticDataConfig c;
  c.train_size = n;
  c.height = 4;
  c.width = 4;
  return makeSynthetic(c, 3, Split::kTrain);
}

TEST(Loader, YieldsEveryExampleOnceInSeededOrder) {
  auto ds = smallSynthetic(103);
  BatchLoader loader(ds, {10, true, 7, 0, 2});
  EXPECT_EQ(loader.batchesPerEpoch(), 11);
  loader.startEpoch(0);
  std::int64_t seen = 0, batches = 0;
  std::vector<std::int64_t> labels;
  while (auto batch = loader.next()) {
    EXPECT_EQ(batch->index, batches);
    ++batches;
    seen += batch->size();
    for (std::int64_t i = 0; i < batch->size(); ++i) labels.push_back(batch->labels[i].item<std::int64_t>());
  }
  EXPECT_EQ(batches, 11);
  EXPECT_EQ(seen, 103);
  EXPECT_FALSE(loader.next().has_value());

  // The same epoch again gives the same order; labels follow epochOrder.
  const auto order = epochOrder(103, 7, 0, true);
  const auto& all = dynamic_cast<const TensorDataset&>(*ds).labels();
  for (std::size_t i = 0; i < order.size(); ++i) ASSERT_EQ(labels[i], all[order[i]].item<std::int64_t>());
}

TEST(Loader, MaxBatchesAndResumeOffset) {
  auto ds = smallSynthetic(100);
  BatchLoader loader(ds, {10, false, 0, 4, 3});
  EXPECT_EQ(loader.batchesPerEpoch(), 4);
  loader.startEpoch(0, 2);
  auto first = loader.next();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->index, 2);
  EXPECT_TRUE(loader.next());
  EXPECT_FALSE(loader.next());
}

TEST(Loader, StopWhileProducerIsBlockedDoesNotHang) {
  auto ds = smallSynthetic(1000);
  for (int i = 0; i < 20; ++i) {
    BatchLoader loader(ds, {1, true, 1, 0, 1});
    loader.startEpoch(i);
    EXPECT_TRUE(loader.next());
    loader.startEpoch(i + 1);  // restarts while the producer waits on a full queue
    EXPECT_TRUE(loader.next());
  }  // destructor stops a blocked producer
}

class FailingDataset : public Dataset {
 public:
  const DatasetInfo& info() const override { return info_; }
  std::int64_t size() const override { return 10; }
  Batch gather(const std::vector<std::int64_t>& indices) const override {
    if (indices.front() >= 5) throw DataError("disk on fire");
    Batch b;
    b.labels = torch::zeros({static_cast<std::int64_t>(indices.size())}, torch::kInt64);
    b.inputs = torch::zeros({static_cast<std::int64_t>(indices.size()), 1, 1, 1});
    return b;
  }

 private:
  DatasetInfo info_{"failing", 1, 1, 1, 2};
};

TEST(Loader, ProducerErrorsReachTheConsumer) {
  BatchLoader loader(std::make_shared<FailingDataset>(), {5, false, 0, 0, 2});
  loader.startEpoch(0);
  EXPECT_TRUE(loader.next());
  EXPECT_THROW(loader.next(), DataError);
}

// Shards.

config::ShardConfig shardConfig(int index, int count, config::ShardScheme scheme = config::ShardScheme::kIid,
                                double alpha = 0.5, std::uint64_t seed = 0) {
  config::ShardConfig shard;
  shard.index = index;
  shard.count = count;
  shard.scheme = scheme;
  shard.alpha = alpha;
  shard.seed = seed;
  return shard;
}

torch::Tensor syntheticLabels(std::int64_t n, std::int64_t num_classes) {
  config::SyntheticDataConfig c;
  c.train_size = n;
  c.num_classes = num_classes;
  c.height = 2;
  c.width = 2;
  return makeSynthetic(c, 5, Split::kTrain)->labels();
}

// Every shard of `count`, each checked ascending; expects them disjoint and together 0..n-1.
std::vector<std::vector<std::int64_t>> allShards(const torch::Tensor& labels, std::int64_t num_classes, int count,
                                                 config::ShardScheme scheme, double alpha, std::uint64_t seed) {
  std::vector<std::vector<std::int64_t>> shards;
  std::vector<std::int64_t> all;
  for (int i = 0; i < count; ++i) {
    shards.push_back(shardIndices(labels, num_classes, shardConfig(i, count, scheme, alpha, seed)));
    EXPECT_TRUE(std::is_sorted(shards.back().begin(), shards.back().end())) << "shard " << i;
    all.insert(all.end(), shards.back().begin(), shards.back().end());
  }
  std::sort(all.begin(), all.end());
  std::vector<std::int64_t> expected(static_cast<std::size_t>(labels.size(0)));
  std::iota(expected.begin(), expected.end(), std::int64_t{0});
  EXPECT_EQ(all, expected) << "shards must be disjoint and cover the split";
  return shards;
}

// The fraction of `indices` held by their most frequent label.
double largestClassFraction(const torch::Tensor& labels, std::int64_t num_classes,
                            const std::vector<std::int64_t>& indices) {
  const auto histogram = classHistogram(labels.index_select(0, torch::tensor(indices, torch::kInt64)), num_classes);
  return static_cast<double>(*std::max_element(histogram.begin(), histogram.end())) /
         static_cast<double>(indices.size());
}

TEST(ShardIid, DisjointEqualSizedAndSeeded) {
  const auto labels = syntheticLabels(103, 10);
  const auto shards = allShards(labels, 10, 4, config::ShardScheme::kIid, 0.5, 7);
  std::int64_t smallest = labels.size(0);
  std::int64_t largest = 0;
  for (const auto& s : shards) {
    smallest = std::min<std::int64_t>(smallest, static_cast<std::int64_t>(s.size()));
    largest = std::max<std::int64_t>(largest, static_cast<std::int64_t>(s.size()));
  }
  EXPECT_LE(largest - smallest, 1);
  EXPECT_EQ(shards, allShards(labels, 10, 4, config::ShardScheme::kIid, 0.5, 7)) << "same seed, same cut";
  EXPECT_NE(shards, allShards(labels, 10, 4, config::ShardScheme::kIid, 0.5, 8)) << "another seed, another cut";
  // A seeded permutation, not contiguous blocks of the split.
  EXPECT_NE(shards[0].back() - shards[0].front() + 1, static_cast<std::int64_t>(shards[0].size()));
  // The labels do not matter to iid: only their count does.
  EXPECT_EQ(shards[2],
            shardIndices(torch::zeros({103}, torch::kInt64), 10, shardConfig(2, 4, config::ShardScheme::kIid, 0.5, 7)));
}

TEST(ShardDirichlet, DisjointCoveringAndSeeded) {
  const auto labels = syntheticLabels(2000, 10);
  const auto shards = allShards(labels, 10, 5, config::ShardScheme::kDirichlet, 0.5, 3);
  EXPECT_EQ(shards, allShards(labels, 10, 5, config::ShardScheme::kDirichlet, 0.5, 3));
  EXPECT_NE(shards, allShards(labels, 10, 5, config::ShardScheme::kDirichlet, 0.5, 4));
}

TEST(ShardDirichlet, SmallAlphaSkewsLabelsLargeAlphaDoesNot) {
  const auto labels = syntheticLabels(4000, 10);
  const auto whole = classHistogram(labels, 10);
  const auto skewed = allShards(labels, 10, 10, config::ShardScheme::kDirichlet, 0.1, 1);
  const auto even = allShards(labels, 10, 10, config::ShardScheme::kDirichlet, 1000, 1);
  double mean_largest = 0.0;
  for (std::size_t i = 0; i < skewed.size(); ++i) {
    // The split's own largest class holds ~10 %.
    const double largest = largestClassFraction(labels, 10, skewed[i]);
    EXPECT_GT(largest, 0.3) << "alpha 0.1, shard " << i;
    mean_largest += largest / static_cast<double>(skewed.size());

    const auto histogram = classHistogram(labels.index_select(0, torch::tensor(even[i], torch::kInt64)), 10);
    for (std::size_t c = 0; c < histogram.size(); ++c) {
      EXPECT_NEAR(static_cast<double>(histogram[c]) / static_cast<double>(even[i].size()),
                  static_cast<double>(whole[c]) / 4000.0, 0.03)
          << "alpha 1000, shard " << i << ", class " << c;
    }
    EXPECT_NEAR(static_cast<double>(even[i].size()), 400.0, 20.0) << "alpha 1000, shard " << i;
  }
  EXPECT_GT(mean_largest, 0.5) << "alpha 0.1: the largest class holds most of a shard";
}

TEST(Shard, CountOneIsTheWholeSplitUnchanged) {
  const auto labels = syntheticLabels(50, 10);
  for (const auto scheme : {config::ShardScheme::kIid, config::ShardScheme::kDirichlet}) {
    const auto indices = shardIndices(labels, 10, shardConfig(0, 1, scheme, 0.1, 9));
    std::vector<std::int64_t> expected(50);
    std::iota(expected.begin(), expected.end(), std::int64_t{0});
    EXPECT_EQ(indices, expected);
  }
  std::shared_ptr<const Dataset> ds = smallSynthetic(20);
  EXPECT_EQ(shardDataset(ds, shardConfig(0, 1)), ds) << "count 1 is the dataset itself";
}

TEST(Shard, IndexBeyondCountIsAConfigError) {
  const auto labels = syntheticLabels(50, 10);
  try {
    shardIndices(labels, 10, shardConfig(4, 4));
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_THAT(e.what(), HasSubstr("data.shard.index"));
    EXPECT_THAT(e.what(), HasSubstr("shard 4 of 4"));
  }
  EXPECT_THROW(shardIndices(labels, 10, shardConfig(-1, 4)), ConfigError);
  EXPECT_THROW(shardIndices(labels, 10, shardConfig(0, 0)), ConfigError);
  EXPECT_THROW(shardIndices(labels, 10, shardConfig(0, 2, config::ShardScheme::kDirichlet, 0.0)), ConfigError);
}

TEST(Shard, EmptyShardIsAnError) {
  const auto labels = syntheticLabels(3, 10);
  EXPECT_EQ(shardIndices(labels, 10, shardConfig(2, 5)).size(), 1u);
  EXPECT_THROW(shardIndices(labels, 10, shardConfig(3, 5)), DataError);
  const std::string iid = dataErrorOf([&] { shardIndices(labels, 10, shardConfig(4, 5)); });
  EXPECT_THAT(iid, HasSubstr("data.shard"));
  EXPECT_THAT(iid, HasSubstr("shard 4 of 5 (iid, seed 0) holds none of the split's 3 samples"));
  // Dirichlet with few samples and a tiny alpha leaves some shards without any.
  const auto few = syntheticLabels(20, 10);
  int empty = 0;
  std::int64_t held = 0;
  for (int i = 0; i < 8; ++i) {
    const std::string error = dataErrorOf([&] {
      held += static_cast<std::int64_t>(
          shardIndices(few, 10, shardConfig(i, 8, config::ShardScheme::kDirichlet, 0.05, 2)).size());
    });
    if (!error.empty()) {
      ++empty;
      EXPECT_THAT(error, HasSubstr("(dirichlet, alpha 0.05, seed 2) holds none"));
      EXPECT_THAT(error, HasSubstr("data.shard.alpha"));
    }
  }
  EXPECT_GT(empty, 0);
  EXPECT_EQ(held, 20) << "the other shards still hold every sample";
}

TEST(Shard, LabelOutsideTheClassesIsADataError) {
  const auto labels = torch::tensor(std::vector<std::int64_t>{0, 1, 12, 3}, torch::kInt64);
  EXPECT_THAT(dataErrorOf([&] { shardIndices(labels, 10, shardConfig(0, 2, config::ShardScheme::kDirichlet)); }),
              HasSubstr("sample 2 has label 12"));
}

// A dataset without labels() of its own: the default gathers them.
class ForwardingDataset : public Dataset {
 public:
  explicit ForwardingDataset(std::shared_ptr<const Dataset> base) : base_(std::move(base)) {}
  const DatasetInfo& info() const override { return base_->info(); }
  std::int64_t size() const override { return base_->size(); }
  Batch gather(const std::vector<std::int64_t>& indices) const override { return base_->gather(indices); }

 private:
  std::shared_ptr<const Dataset> base_;
};

TEST(ShardedDataset, MapsIndicesAndLabels) {
  auto base = smallSynthetic(5000);
  const ForwardingDataset forwarding(base);
  EXPECT_TRUE(forwarding.labels().equal(base->labels())) << "default labels() spans several chunks";

  const ShardedDataset view(base, {3, 7, 4999});
  EXPECT_EQ(view.size(), 3);
  EXPECT_EQ(&view.info(), &base->info());
  const auto batch = view.gather({2, 0});
  const auto expected = base->gather({4999, 3});
  EXPECT_TRUE(batch.inputs.equal(expected.inputs));
  EXPECT_TRUE(batch.labels.equal(expected.labels));
  EXPECT_TRUE(view.labels().equal(base->gather({3, 7, 4999}).labels));
  EXPECT_THROW(view.gather({3}), InvariantError);
  EXPECT_THROW(std::make_shared<ShardedDataset>(base, std::vector<std::int64_t>{5000}), InvariantError);
}

config::Config shardedRunConfig(int index, int count, config::ShardScheme scheme) {
  config::Config c;
  c.data.dataset = "synthetic";
  c.data.synthetic.train_size = 300;
  c.data.synthetic.test_size = 40;
  c.data.synthetic.height = 4;
  c.data.synthetic.width = 4;
  c.data.shard = shardConfig(index, count, scheme, 0.5, 11);
  return c;
}

TEST(ShardedLoadDataset, TrainsOnTheShardTestsOnTheWholeSplit) {
  for (const auto scheme : {config::ShardScheme::kIid, config::ShardScheme::kDirichlet}) {
    const auto c = shardedRunConfig(1, 3, scheme);
    const auto whole = makeDataset(c.data, Split::kTrain);
    const auto indices = shardIndices(whole->labels(), whole->info().num_classes, c.data.shard);
    const auto train = pipeline::loadDataset(c, Split::kTrain);
    ASSERT_EQ(train->size(), static_cast<std::int64_t>(indices.size()));
    EXPECT_LT(train->size(), 300);
    EXPECT_EQ(train->info().name, "synthetic");
    const std::int64_t last = train->size() - 1;
    const auto batch = train->gather({0, last});
    const auto expected = whole->gather({indices.front(), indices.back()});
    EXPECT_TRUE(batch.inputs.equal(expected.inputs));
    EXPECT_TRUE(batch.labels.equal(expected.labels));
    EXPECT_TRUE(train->labels().equal(whole->labels().index_select(0, torch::tensor(indices, torch::kInt64))));
    EXPECT_EQ(pipeline::loadDataset(c, Split::kTest)->size(), 40) << "the test split is never sharded";

    // The loader goes over the shard's samples, each once.
    BatchLoader loader(train, {64, true, 5, 0, 2});
    loader.startEpoch(0);
    std::int64_t seen = 0;
    while (auto b = loader.next()) seen += b->size();
    EXPECT_EQ(seen, train->size());
  }
  // count 1: the dataset as today.
  const auto c = shardedRunConfig(0, 1, config::ShardScheme::kIid);
  const auto train = pipeline::loadDataset(c, Split::kTrain);
  ASSERT_NE(dynamic_cast<const TensorDataset*>(train.get()), nullptr);
  EXPECT_TRUE(train->labels().equal(makeDataset(c.data, Split::kTrain)->labels()));
}

TEST(ShardedLoadDataset, EmptyShardFailsAtStartUp) {
  auto c = shardedRunConfig(4, 5, config::ShardScheme::kIid);
  c.data.synthetic.train_size = 4;
  EXPECT_THAT(dataErrorOf([&] { pipeline::loadDataset(c, Split::kTrain); }), HasSubstr("data.shard"));
}

}  // namespace
}  // namespace tandem::data

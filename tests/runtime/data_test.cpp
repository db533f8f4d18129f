#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "runtime/common/error.h"
#include "runtime/data/dataset.h"
#include "runtime/data/idx.h"
#include "runtime/data/loader.h"

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

}  // namespace
}  // namespace tandem::data

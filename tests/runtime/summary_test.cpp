// The summary files' epoch numbering (1-based in every file a user reads) and the epoch
// history that checkpoints carry, including histories written by earlier versions.
#include "runtime/telemetry/summary.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "runtime/common/error.h"

namespace tandem::telemetry {
namespace {

EpochRecord record(int epoch) {
  EpochRecord r;
  r.epoch = epoch;
  r.train_loss = 1.0 / (epoch + 1);
  r.train_samples = 64;
  r.steps = 4;
  r.train_seconds = 2.0;
  r.split_point = 2;
  return r;
}

TEST(Summary, EpochsAreOneBasedInTheJson) {
  RunSummary s;
  s.role = "edge";
  s.history = {record(0), record(1)};
  Repartition r;
  r.epoch = 1;
  r.from = 2;
  r.to = 1;
  s.repartitions.push_back(r);
  const auto j = nlohmann::json::parse(toJson(s));
  EXPECT_EQ(j["history"][0]["epoch"], 1);
  EXPECT_EQ(j["history"][1]["epoch"], 2);
  EXPECT_EQ(j["repartitions"][0]["epoch"], 2);
  EXPECT_EQ(j["epochs"], 2);
}

TEST(Summary, HistoryRoundTripsThroughJson) {
  const std::vector<EpochRecord> history{record(0), record(1), record(2)};
  const auto text = historyToJson(history);
  EXPECT_EQ(nlohmann::json::parse(text)[0]["epoch"], 1);
  const auto back = historyFromJson(text);
  ASSERT_EQ(back.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(back[static_cast<std::size_t>(i)].epoch, i);
    EXPECT_DOUBLE_EQ(back[static_cast<std::size_t>(i)].train_loss, history[static_cast<std::size_t>(i)].train_loss);
  }
}

TEST(Summary, HistoriesOfEarlierVersionsAreReadAsZeroBased) {
  // A checkpoint written before epochs were 1-based: its history starts at epoch 0.
  auto old = nlohmann::json::parse(historyToJson({record(0), record(1)}));
  old[0]["epoch"] = 0;
  old[1]["epoch"] = 1;
  const auto back = historyFromJson(old.dump());
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back[0].epoch, 0);
  EXPECT_EQ(back[1].epoch, 1);
  EXPECT_TRUE(historyFromJson("[]").empty());
  old[0]["epoch"] = -1;
  EXPECT_THROW(historyFromJson(old.dump()), Error);
  EXPECT_THROW(historyFromJson(R"([{"epoch": 1}])"), Error);
}

}  // namespace
}  // namespace tandem::telemetry

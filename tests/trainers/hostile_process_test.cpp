// Random and mutated frames thrown at a live cloud_trainer by several hostile peers while a
// good edge_trainer trains: the good run completes and the cloud stays up.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>
#include <zmq.hpp>

#include "tests/trainers/process.h"

namespace tandem {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

// The protocol fuzz corpus (tests/fuzz/corpus/protocol): byte 0 frame count, then
// length-prefixed frames.
std::vector<std::vector<std::string>> seedMessages() {
  std::vector<std::vector<std::string>> out;
  for (const auto& entry : fs::directory_iterator(fs::path(TANDEM_SOURCE_DIR) / "tests/fuzz/corpus/protocol")) {
    std::ifstream in(entry.path(), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (bytes.empty()) continue;
    std::vector<std::string> frames;
    std::size_t pos = 1;
    for (int i = 0; i < static_cast<unsigned char>(bytes[0]) % 9 && pos + 4 <= bytes.size(); ++i) {
      std::uint32_t length = 0;
      std::memcpy(&length, bytes.data() + pos, 4);
      pos += 4;
      frames.push_back(bytes.substr(pos, length));
      pos += length;
    }
    if (!frames.empty()) out.push_back(frames);
  }
  return out;
}

TEST(HostilePeers, GoodRunCompletesUnderAFloodOfBadFrames) {
  const auto dir = fs::temp_directory_path() / ("tandem_hostile_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const auto config = (dir / "run.yaml").string();
  std::ofstream(config) << R"(
run: {name: hostile, epochs: 2, seed: 2}
data: {dataset: synthetic, batch_size: 32, synthetic: {train_size: 1024, test_size: 256, height: 12, width: 12}}
model: {name: cnn}
split: {point: 2, staleness: 2}
security: {mode: plaintext}
checkpoint: {enabled: false}
link: {endpoint: "tcp://127.0.0.1:*", heartbeat_interval_s: 0.3, peer_timeout_s: 5}
)";
  const auto out = (dir / "out").string();
  testing::ChildProcess cloud({CLOUD_TRAINER, "--config", config, "--endpoint-file", (dir / "endpoint").string(),
                               "--set", "run.output_dir=" + out},
                              (dir / "cloud.log").string());
  const auto endpoint = testing::waitForFile((dir / "endpoint").string(), 60s);
  ASSERT_FALSE(endpoint.empty()) << cloud.output();

  const auto seeds = seedMessages();
  ASSERT_GE(seeds.size(), 10u);
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> sent{0};
  std::atomic<std::uint64_t> errors_back{0};
  std::vector<std::thread> attackers;
  for (int a = 0; a < 3; ++a) {
    attackers.emplace_back([&, a] {
      zmq::context_t context;
      std::mt19937 rng(100 + a);
      while (!done) {
        // A fresh identity every few hundred messages.
        zmq::socket_t socket(context, zmq::socket_type::dealer);
        socket.set(zmq::sockopt::linger, 0);
        socket.set(zmq::sockopt::sndhwm, 100);
        socket.connect(endpoint);
        for (int i = 0; i < 300 && !done; ++i) {
          auto frames = seeds[rng() % seeds.size()];
          if (rng() % 4 == 0) {
            frames = {std::string(rng() % 200, '\0')};  // random bytes
            for (auto& c : frames[0]) c = static_cast<char>(rng());
          } else {
            for (int e = 1 + static_cast<int>(rng() % 4); e > 0; --e) {
              auto& f = frames[rng() % frames.size()];
              if (f.empty() || rng() % 5 == 0) {
                f.push_back(static_cast<char>(rng()));
              } else if (rng() % 4 == 0) {
                f.resize(rng() % f.size());
              } else {
                f[rng() % f.size()] = static_cast<char>(rng());
              }
            }
          }
          for (std::size_t k = 0; k < frames.size(); ++k) {
            socket.send(zmq::buffer(frames[k]), (k + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none) |
                                                    zmq::send_flags::dontwait);
          }
          ++sent;
          zmq::message_t reply;
          while (socket.recv(reply, zmq::recv_flags::dontwait)) ++errors_back;
          std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
      }
    });
  }

  std::this_thread::sleep_for(500ms);  // the flood starts before the good edge
  testing::ChildProcess edge({EDGE_TRAINER, "--config", config, "--set", "link.endpoint=" + endpoint, "--set",
                              "run.output_dir=" + out},
                             (dir / "edge.log").string());
  const int edge_code = edge.wait(240s);
  done = true;
  for (auto& t : attackers) t.join();
  EXPECT_EQ(edge_code, 0) << edge.output();
  EXPECT_EQ(cloud.wait(60s), 0) << cloud.output();
  EXPECT_GT(sent.load(), 1000u);
  EXPECT_GT(errors_back.load(), 100u);  // the cloud answered bad messages with errors
  EXPECT_THAT(cloud.output(), HasSubstr("rejected"));
  std::ifstream summary(out + "/summary-edge.json");
  std::stringstream text;
  text << summary.rdbuf();
  EXPECT_THAT(text.str(), HasSubstr("\"epochs\": 2"));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace tandem

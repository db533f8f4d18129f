// CURVE encryption and authentication of the edge–cloud link.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "runtime/transport/curve.h"
#include "runtime/transport/zmq_transport.h"
#include "tests/runtime/receive_util.h"
#include "tests/runtime/split_test_util.h"

namespace tandem::transport {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

class Keys : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("tandem_keys_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

std::string configErrorOf(const std::function<void()>& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST_F(Keys, KeygenWritesAPrivateKeyPairAndAPublicKey) {
  const auto keys = writeCurveKeyFiles(dir_.string(), "cloud", false);
  struct stat st {};
  ASSERT_EQ(::stat(path("cloud.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const auto read = readCurveKeyPair(path("cloud.key"));
  EXPECT_EQ(read.public_key, keys.public_key);
  EXPECT_EQ(read.secret_key, keys.secret_key);
  EXPECT_EQ(readCurvePublicKey(path("cloud.pub")), keys.public_key);
  EXPECT_THROW(writeCurveKeyFiles(dir_.string(), "cloud", false), Error);  // no silent overwrite
  EXPECT_NE(writeCurveKeyFiles(dir_.string(), "cloud", true).public_key, keys.public_key);
}

TEST_F(Keys, BadKeyFilesAreRefusedWithTheReason) {
  writeCurveKeyFiles(dir_.string(), "edge", false);
  ::chmod(path("edge.key").c_str(), 0644);
  EXPECT_THAT(configErrorOf([&] { readCurveKeyPair(path("edge.key")); }),
              HasSubstr("is accessible to other users (mode 644); run chmod 600"));
  std::ofstream(path("bad.key")) << "public-key = \"short\"\nsecret-key = \"short\"\n";
  ::chmod(path("bad.key").c_str(), 0600);
  EXPECT_THAT(configErrorOf([&] { readCurveKeyPair(path("bad.key")); }), HasSubstr("no valid secret-key"));
  // A public key that does not belong to the secret key.
  const auto a = generateCurveKeyPair();
  const auto b = generateCurveKeyPair();
  std::ofstream(path("mixed.key")) << "public-key = \"" << a.public_key << "\"\nsecret-key = \"" << b.secret_key
                                   << "\"\n";
  ::chmod(path("mixed.key").c_str(), 0600);
  EXPECT_THAT(configErrorOf([&] { readCurveKeyPair(path("mixed.key")); }), HasSubstr("does not belong"));
  EXPECT_THAT(configErrorOf([&] { readCurveKeyPair(path("missing.key")); }), HasSubstr("cannot read key file"));
}

TEST_F(Keys, AuthorizedKeysAcceptBareKeysAndPubFiles) {
  const auto e1 = writeCurveKeyFiles(dir_.string(), "e1", false);
  const auto e2 = generateCurveKeyPair();
  std::ifstream pub(path("e1.pub"));
  std::stringstream text;
  text << pub.rdbuf() << "\n# a comment\n" << e2.public_key << "  # edge two\n";
  std::ofstream(path("authorized")) << text.str();
  EXPECT_EQ(readAuthorizedKeys(path("authorized")), (std::vector<std::string>{e1.public_key, e2.public_key}));
  std::ofstream(path("bad")) << e2.public_key << "\nnot-a-key\n";
  EXPECT_THAT(configErrorOf([&] { readAuthorizedKeys(path("bad")); }), HasSubstr("bad:2: not a Z85 public key"));
  std::ofstream(path("empty")) << "# nobody\n";
  EXPECT_THAT(configErrorOf([&] { readAuthorizedKeys(path("empty")); }), HasSubstr("lists no key"));
  std::ofstream(path("secret")) << "secret-key = \"" << e2.secret_key << "\"\n";
  EXPECT_THAT(configErrorOf([&] { readAuthorizedKeys(path("secret")); }), HasSubstr("a secret key in"));
}

struct CurvePair {
  std::unique_ptr<ZmqTransport> cloud;
  std::unique_ptr<ZmqTransport> edge;
};

ZmqOptions cloudOptions(const CurveKeyPair& cloud, std::vector<std::string> authorized) {
  ZmqOptions o;
  o.mode = ZmqOptions::Mode::kBind;
  o.endpoint = "tcp://127.0.0.1:*";
  o.curve = {true, cloud.public_key, cloud.secret_key, "", std::move(authorized)};
  return o;
}

ZmqOptions edgeOptions(const std::string& endpoint, const CurveKeyPair& edge, const std::string& server_key) {
  ZmqOptions o;
  o.endpoint = endpoint;
  o.peer_timeout = 5000ms;
  o.curve = {true, edge.public_key, edge.secret_key, server_key, {}};
  return o;
}

Message hello() { return Message(MessageType::kHello, Hello{"edge", "run", "cnn", "fp", 5, 2, 64, 0, "", "", "", 1, false, {}}); }

TEST(Curve, AuthorizedEdgeTalksToTheCloud) {
  const auto cloud_keys = generateCurveKeyPair();
  const auto edge_keys = generateCurveKeyPair();
  ZmqTransport cloud(cloudOptions(cloud_keys, {edge_keys.public_key}));
  ZmqTransport edge(edgeOptions(cloud.endpoint(), edge_keys, cloud_keys.public_key));
  edge.send(hello());
  auto got = tandem::test_util::receiveMessage(cloud, 5s);
  ASSERT_TRUE(got);
  EXPECT_EQ(std::get<Hello>(got->body).model, "cnn");
  Message reply(MessageType::kWelcome, Welcome{});
  reply.peer = got->peer;
  cloud.send(std::move(reply));
  EXPECT_TRUE(tandem::test_util::receiveMessage(edge, 5s));
  EXPECT_EQ(cloud.stats().connections_refused, 0u);
}

TEST(Curve, UnknownKeyGetsNothingAndTheCloudLogsIt) {
  const auto cloud_keys = generateCurveKeyPair();
  const auto allowed = generateCurveKeyPair();
  const auto stranger = generateCurveKeyPair();
  ZmqTransport cloud(cloudOptions(cloud_keys, {allowed.public_key}));
  ZmqTransport edge(edgeOptions(cloud.endpoint(), stranger, cloud_keys.public_key));
  try {  // the refusal can arrive before the send: either call may report it
    edge.send(hello());
    EXPECT_FALSE(tandem::test_util::receiveMessage(cloud, 1500ms).has_value());  // the cloud never sees the Hello
    tandem::test_util::receiveMessage(edge, 3s);
    FAIL() << "the edge was not told";
  } catch (const TransportError& e) {
    EXPECT_THAT(e.what(), HasSubstr("the cloud refused this edge's CURVE key"));
  }
  EXPECT_GE(cloud.stats().connections_refused, 1u);
  EXPECT_EQ(cloud.stats().messages_received, 0u);
}

TEST(Curve, PlaintextEdgeIsRefusedByACurveCloud) {
  const auto cloud_keys = generateCurveKeyPair();
  ZmqTransport cloud(cloudOptions(cloud_keys, {generateCurveKeyPair().public_key}));
  ZmqOptions plain;
  plain.endpoint = cloud.endpoint();
  ZmqTransport edge(plain);
  // The refusal can arrive before the send: either call may be the one that reports it.
  try {
    edge.send(hello());
    EXPECT_FALSE(tandem::test_util::receiveMessage(cloud, 1500ms).has_value());
    tandem::test_util::receiveMessage(edge, 3s);
    FAIL() << "the edge was not told";
  } catch (const TransportError& e) {
    EXPECT_THAT(e.what(), HasSubstr("security.mode"));
  }
}

TEST(Curve, WrongCloudKeyNeverConnects) {
  const auto cloud_keys = generateCurveKeyPair();
  const auto edge_keys = generateCurveKeyPair();
  ZmqTransport cloud(cloudOptions(cloud_keys, {edge_keys.public_key}));
  ZmqTransport edge(edgeOptions(cloud.endpoint(), edge_keys, generateCurveKeyPair().public_key));
  try {
    edge.send(hello());
  } catch (const TransportError&) {
    // The failed handshake may already be known: the send is refused, which is fine too.
  }
  EXPECT_FALSE(tandem::test_util::receiveMessage(cloud, 2s).has_value());
}

TEST_F(Keys, SplitTrainingOverCurve) {
  writeCurveKeyFiles(dir_.string(), "cloud", false);
  writeCurveKeyFiles(dir_.string(), "edge", false);
  fs::copy_file(path("edge.pub"), path("authorized"));
  auto base = config::parseConfig(R"(
run: {epochs: 1}
data: {dataset: synthetic, batch_size: 16, max_train_batches: 8, max_test_batches: 2,
       synthetic: {train_size: 256, test_size: 64, height: 8, width: 8}}
model: {name: mlp}
split: {point: 1}
)",
                                  "curve.yaml", {"run.output_dir=" + path("out")});
  auto cloud_config = base;
  cloud_config.security = {config::SecurityMode::kCurve, path("cloud.key"), "", path("authorized")};
  auto edge_config = base;
  edge_config.security = {config::SecurityMode::kCurve, path("edge.key"), path("cloud.pub"), ""};
  tandem::testing::CloudThread cloud(cloud_config);
  auto edge = tandem::testing::makeEdge(edge_config, cloud.endpoint);
  std::atomic<bool> stop{false};
  const auto summary = edge->run(stop);
  cloud.join();
  EXPECT_EQ(cloud.outcome, pipeline::CloudOutcome::kCompleted);
  EXPECT_EQ(summary.history.size(), 1u);

  // Missing keys are config errors naming the key.
  auto no_key = base;
  no_key.security = {config::SecurityMode::kCurve, "", "", ""};
  EXPECT_THAT(configErrorOf([&] { pipeline::zmqOptions(no_key, "edge"); }),
              HasSubstr("security.key_file: needed with security.mode: curve"));
  auto no_authorized = base;
  no_authorized.security = {config::SecurityMode::kCurve, path("cloud.key"), "", ""};
  EXPECT_THAT(configErrorOf([&] { pipeline::zmqOptions(no_authorized, "cloud"); }),
              HasSubstr("security.authorized_keys: needed"));
}

}  // namespace
}  // namespace tandem::transport

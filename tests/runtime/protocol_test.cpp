#include "runtime/transport/protocol.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

namespace tandem::transport {
namespace {

using ::testing::HasSubstr;

Header header(MessageType type) {
  Header h;
  h.type = type;
  h.session = 0x1234;
  h.epoch = 3;
  h.step = 77;
  h.sequence = 9;
  return h;
}

TensorMeta floats(std::vector<std::int64_t> shape, std::string codec = kRawCodec) {
  TensorMeta t;
  t.dtype = DType::kFloat32;
  t.shape = std::move(shape);
  t.codec = std::move(codec);
  t.bytes = static_cast<std::uint64_t>(t.numel()) * 4;
  return t;
}

std::string errorOf(const std::string& frame, const Limits& limits = {}) {
  try {
    decodeHeaderFrame(frame.data(), frame.size(), limits);
  } catch (const WireError& e) {
    return std::string(errorCodeName(e.code())) + ": " + e.what();
  }
  return "";
}

TEST(Protocol, RoundTripsEveryBody) {
  Hello hello{"edge-1", "run", "cnn", "abcd", 5, 2, 64, 4, "retain", "int8", "none", 3, false, {}};
  auto h = header(MessageType::kHello);
  h.tensors = {floats({2, 3}), floats({4}, "int8")};
  h.tensors[1].bytes = 12;
  const auto frame = encodeHeaderFrame(h, hello);
  const auto decoded = decodeHeaderFrame(frame.data(), frame.size(), Limits{});
  EXPECT_EQ(decoded.header.type, MessageType::kHello);
  EXPECT_EQ(decoded.header.session, 0x1234u);
  EXPECT_EQ(decoded.header.epoch, 3u);
  EXPECT_EQ(decoded.header.step, 77u);
  EXPECT_EQ(decoded.header.sequence, 9u);
  ASSERT_EQ(decoded.header.tensors.size(), 2u);
  EXPECT_EQ(decoded.header.tensors[0].shape, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(decoded.header.tensors[1].codec, "int8");
  const auto& back = std::get<Hello>(decoded.body);
  EXPECT_EQ(back.edge_name, "edge-1");
  EXPECT_EQ(back.fingerprint, "abcd");
  EXPECT_EQ(back.split_point, 2u);
  EXPECT_EQ(back.replay, "retain");
  EXPECT_EQ(back.epochs, 3u);

  const auto step = encodeHeaderFrame(header(MessageType::kGradients), StepResult{0.5, 7, 8});
  const auto r = std::get<StepResult>(decodeHeaderFrame(step.data(), step.size(), Limits{}).body);
  EXPECT_DOUBLE_EQ(r.loss, 0.5);
  EXPECT_EQ(r.correct, 7);
  EXPECT_EQ(r.samples, 8);

  const auto err = encodeHeaderFrame(header(MessageType::kError), ErrorInfo{ErrorCode::kHandshake, "model differs"});
  const auto e = std::get<ErrorInfo>(decodeHeaderFrame(err.data(), err.size(), Limits{}).body);
  EXPECT_EQ(e.code, ErrorCode::kHandshake);
  EXPECT_EQ(e.message, "model differs");

  for (auto type : {MessageType::kActivations, MessageType::kHeartbeat, MessageType::kShutdownAck}) {
    const auto f = encodeHeaderFrame(header(type), std::monostate{});
    EXPECT_EQ(decodeHeaderFrame(f.data(), f.size(), Limits{}).header.type, type);
  }
  const auto ep = encodeHeaderFrame(header(MessageType::kEpochAck), EpochInfo{4, 100, 0.25, 0.9});
  EXPECT_EQ(std::get<EpochInfo>(decodeHeaderFrame(ep.data(), ep.size(), Limits{}).body).steps, 100);
  const auto mg = encodeHeaderFrame(header(MessageType::kMigrate), MigrateInfo{2, 4, "int8", {1, 1, 0, 3}});
  const auto m = std::get<MigrateInfo>(decodeHeaderFrame(mg.data(), mg.size(), Limits{}).body);
  EXPECT_EQ(m.to, 4u);
  EXPECT_EQ(m.codec, "int8");
  EXPECT_EQ(m.optimizer_layout, (std::vector<std::uint32_t>{1, 1, 0, 3}));
  const auto av = encodeHeaderFrame(header(MessageType::kAverage), AverageInfo{7, 640, 2, {1, 0, 1}});
  const auto back_av = std::get<AverageInfo>(decodeHeaderFrame(av.data(), av.size(), Limits{}).body);
  EXPECT_EQ(back_av.round, 7u);
  EXPECT_EQ(back_av.samples, 640u);
  EXPECT_EQ(back_av.stages, 2u);
  EXPECT_EQ(back_av.optimizer_layout, (std::vector<std::uint32_t>{1, 0, 1}));
  Welcome fleet_welcome;
  fleet_welcome.fleet = true;
  fleet_welcome.average_every = 25;
  const auto wf = encodeHeaderFrame(header(MessageType::kWelcome), fleet_welcome);
  const auto back_wf = std::get<Welcome>(decodeHeaderFrame(wf.data(), wf.size(), Limits{}).body);
  EXPECT_TRUE(back_wf.fleet);
  EXPECT_EQ(back_wf.average_every, 25u);
  const auto pr = encodeHeaderFrame(header(MessageType::kProbeReply), ProbeInfo{1.5, 2.5, 3.5, 1024});
  EXPECT_EQ(std::get<ProbeInfo>(decodeHeaderFrame(pr.data(), pr.size(), Limits{}).body).reply_bytes, 1024u);
  const auto sd = encodeHeaderFrame(header(MessageType::kShutdown), ShutdownInfo{"interrupted", false});
  EXPECT_FALSE(std::get<ShutdownInfo>(decodeHeaderFrame(sd.data(), sd.size(), Limits{}).body).completed);
  const auto eb = encodeHeaderFrame(header(MessageType::kEpochBegin), EpochInfo{4, 100, 0, 0, 50});
  EXPECT_EQ(std::get<EpochInfo>(decodeHeaderFrame(eb.data(), eb.size(), Limits{}).body).snapshot_every, 50u);
  const auto dv = encodeHeaderFrame(header(MessageType::kGradients), StepResult{1.0, 0, 8, 0, 0, 0, 2});
  EXPECT_EQ(std::get<StepResult>(decodeHeaderFrame(dv.data(), dv.size(), Limits{}).body).verdict, 2);
  const auto rb =
      encodeHeaderFrame(header(MessageType::kRollback), RollbackInfo{48, 2, "int8", "none", 0.5, "loss_spike", 7});
  const auto back_rb = std::get<RollbackInfo>(decodeHeaderFrame(rb.data(), rb.size(), Limits{}).body);
  EXPECT_EQ(back_rb.to_step, 48u);
  EXPECT_EQ(back_rb.staleness, 2u);
  EXPECT_EQ(back_rb.uplink_codec, "int8");
  EXPECT_EQ(back_rb.downlink_codec, "none");
  EXPECT_DOUBLE_EQ(back_rb.lr_scale, 0.5);
  EXPECT_EQ(back_rb.reason, "loss_spike");
  EXPECT_EQ(back_rb.steps, 7);
}

TEST(Protocol, RejectsUnknownVerdictsAndBadRollbacks) {
  EXPECT_THAT(errorOf(encodeHeaderFrame(header(MessageType::kGradients), StepResult{1.0, 0, 8, 0, 0, 0, 3})),
              HasSubstr("unknown verdict 3"));
  for (double scale : {0.0, -1.0, 1.5, std::nan("")}) {
    EXPECT_THAT(errorOf(encodeHeaderFrame(header(MessageType::kRollback),
                                          RollbackInfo{1, 0, "none", "none", scale, "non_finite", 0})),
                HasSubstr("learning-rate scale outside (0, 1]"))
        << scale;
  }
  EXPECT_THAT(errorOf(encodeHeaderFrame(header(MessageType::kRollback),
                                        RollbackInfo{1, 0, "int9", "none", 1.0, "non_finite", 0})),
              HasSubstr("rollback codec"));
}

TEST(Protocol, BodyMustMatchType) {
  EXPECT_THROW(encodeHeaderFrame(header(MessageType::kHello), StepResult{}), InvariantError);
}

TEST(Protocol, RejectsBadMagicVersionAndType) {
  auto h = header(MessageType::kHeartbeat);
  h.magic = 0xdeadbeef;
  EXPECT_THAT(errorOf(encodeHeaderFrame(h, std::monostate{})), HasSubstr("malformed: bad magic"));
  h = header(MessageType::kHeartbeat);
  h.version = 1;
  EXPECT_THAT(errorOf(encodeHeaderFrame(h, std::monostate{})),
              HasSubstr("version: protocol version 1, expected " + std::to_string(kProtocolVersion)));
  auto frame = encodeHeaderFrame(header(MessageType::kHeartbeat), std::monostate{});
  frame[6] = 99;  // the type byte follows magic (4) and version (2)
  EXPECT_THAT(errorOf(frame), HasSubstr("unknown message type 99"));
}

TEST(Protocol, RejectsInconsistentTensors) {
  auto h = header(MessageType::kActivations);
  h.tensors = {floats({8, 16})};
  h.tensors[0].bytes = 100;
  EXPECT_THAT(errorOf(encodeHeaderFrame(h, std::monostate{})),
              HasSubstr("invalid-tensor: tensor 0: shape × dtype is 512 bytes but the payload is 100"));

  h.tensors = {floats({-1, 4})};
  EXPECT_THAT(errorOf(encodeHeaderFrame(h, std::monostate{})), HasSubstr("negative dimension"));

  h.tensors = {floats({1 << 30, 1 << 30})};
  EXPECT_THAT(errorOf(encodeHeaderFrame(h, std::monostate{})), HasSubstr("too-large"));

  h.tensors = {floats({4}, "int9")};
  h.tensors[0].bytes = 4;
  EXPECT_THAT(errorOf(encodeHeaderFrame(h, std::monostate{})), HasSubstr("invalid-tensor: tensor 0:"));

  h.tensors = {floats({4})};
  h.tensors[0].dtype = DType::kInt64;
  h.tensors[0].codec = "int8";
  EXPECT_THAT(errorOf(encodeHeaderFrame(h, std::monostate{})), HasSubstr("codec 'int8' on a int64 tensor"));

  h.tensors = {floats({1, 1, 1, 1, 1, 1, 1, 1, 1})};
  EXPECT_THAT(errorOf(encodeHeaderFrame(h, std::monostate{})), HasSubstr("shape: 9 entries exceed the limit"));

  Limits small;
  small.max_tensor_bytes = 1000;
  h.tensors = {floats({16, 16})};
  EXPECT_THAT(errorOf(encodeHeaderFrame(h, std::monostate{}), small), HasSubstr("too-large: tensor 0: 1024 bytes"));
}

TEST(Protocol, RejectsOversizedLists) {
  auto h = header(MessageType::kActivations);
  Limits small;
  small.max_tensors = 2;
  h.tensors = {floats({1}), floats({1}), floats({1})};
  EXPECT_THAT(errorOf(encodeHeaderFrame(h, std::monostate{}), small), HasSubstr("tensor list: 3 entries exceed"));
  Hello hello;
  hello.edge_name = std::string(20000, 'x');
  EXPECT_THAT(errorOf(encodeHeaderFrame(header(MessageType::kHello), hello)),
              HasSubstr("hello.edge_name: string of 20000"));
  small = Limits{};
  small.max_header_bytes = 16;
  EXPECT_THAT(errorOf(encodeHeaderFrame(header(MessageType::kHello), Hello{}), small),
              HasSubstr("too-large: header frame"));
}

TEST(Protocol, AbsurdLengthsAreRejectedBeforeAllocating) {
  // A tensor list claiming 2^60 entries in a 40-byte frame: must fail on the count, not
  // try to allocate.
  auto frame = encodeHeaderFrame(header(MessageType::kActivations), std::monostate{});
  const std::size_t count_offset = 4 + 2 + 1 + 8 + 4 + 8 + 8;
  ASSERT_EQ(frame.size(), count_offset + 8);
  const std::uint64_t absurd = std::uint64_t{1} << 60;
  std::memcpy(&frame[count_offset], &absurd, 8);
  EXPECT_THAT(errorOf(frame), HasSubstr("tensor list"));
}

TEST(Protocol, EveryTruncationIsRejected) {
  Hello hello{"edge", "run", "cnn", "fp", 5, 2, 64, 4, "recompute", "int8", "none", 3, false, {}};
  auto h = header(MessageType::kHello);
  h.tensors = {floats({2, 3})};
  const auto frame = encodeHeaderFrame(h, hello);
  for (std::size_t n = 0; n < frame.size(); ++n) {
    EXPECT_FALSE(errorOf(frame.substr(0, n)).empty()) << "prefix of " << n << " bytes accepted";
  }
  EXPECT_THAT(errorOf(frame + "x"), HasSubstr("1 unexpected bytes after the Hello body"));
}

TEST(Protocol, RandomMutationsNeverCrash) {
  Hello hello{"edge", "run", "cnn", "fp", 5, 2, 64, 4, "recompute", "int8", "none", 3, false, {}};
  auto h = header(MessageType::kHello);
  h.tensors = {floats({2, 3}), floats({7})};
  const auto frame = encodeHeaderFrame(h, hello);
  std::mt19937 rng(1);
  int rejected = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string mutated = frame;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) mutated[rng() % mutated.size()] = static_cast<char>(rng());
    try {
      decodeHeaderFrame(mutated.data(), mutated.size(), Limits{});
    } catch (const WireError&) {
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 1000);
}

}  // namespace
}  // namespace tandem::transport

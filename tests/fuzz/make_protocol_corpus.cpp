// Writes the seed corpus for the protocol fuzzer: valid messages of every type, and broken
// ones (truncated, wrong counts, bad sizes, unknown codec).
//   build/tests/fuzz/make_protocol_corpus tests/fuzz/corpus/protocol
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "compression/registry.h"
#include "runtime/transport/protocol.h"
#include "tests/fuzz/protocol_fuzz_entry.h"

using namespace tandem::transport;

namespace {

TensorMeta tensor(DType dtype, std::vector<std::int64_t> shape, std::uint64_t bytes, std::string codec = kRawCodec) {
  TensorMeta t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.bytes = bytes;
  t.codec = std::move(codec);
  return t;
}

Header header(MessageType type, std::vector<TensorMeta> tensors = {}) {
  Header h;
  h.type = type;
  h.session = 77;
  h.step = 3;
  h.tensors = std::move(tensors);
  return h;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_protocol_corpus DIR\n");
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir);
  std::vector<std::pair<std::string, std::vector<std::string>>> seeds;
  const auto add = [&](const std::string& name, std::vector<std::string> frames) { seeds.emplace_back(name, frames); };

  add("hello", {encodeHeaderFrame(header(MessageType::kHello),
                                  Hello{"edge", "run", "cnn", "fp", 5, 2, 64, 4, "recompute", "int8", "none", 3, true,
                                        {10, 20}})});
  add("welcome", {encodeHeaderFrame(header(MessageType::kWelcome, {tensor(DType::kFloat32, {2, 2}, 16)}),
                                    Welcome{"cloud", 2, 1, "{}", false, 0}),
                  std::string(16, '\0')});
  add("activations", {encodeHeaderFrame(header(MessageType::kActivations, {tensor(DType::kFloat32, {2, 3}, 24),
                                                                           tensor(DType::kInt64, {2}, 16)}),
                                        std::monostate{}),
                      std::string(24, '\1'), std::string(16, '\0')});
  {
    const auto codec = tandem::compression::makeCodec("int8");
    std::vector<float> values{1, -2, 3, 0.5f, 7, 8};
    const auto payload = codec->encode(values.data(), {2, 3});
    add("activations_int8",
        {encodeHeaderFrame(header(MessageType::kActivations, {tensor(DType::kFloat32, {2, 3}, payload.size(), "int8")}),
                           std::monostate{}),
         std::string(payload.begin(), payload.end())});
  }
  add("gradients", {encodeHeaderFrame(header(MessageType::kGradients, {tensor(DType::kFloat32, {1, 2}, 8)}),
                                      StepResult{0.5, 1, 2, 1.0, 2.0, 0.1, 0}),
                    std::string(8, '\2')});
  add("eval_result", {encodeHeaderFrame(header(MessageType::kEvalResult), StepResult{})});
  add("epoch_begin", {encodeHeaderFrame(header(MessageType::kEpochBegin), EpochInfo{4, 100, 0, 0, 50})});
  add("gradients_diverged", {encodeHeaderFrame(header(MessageType::kGradients, {tensor(DType::kFloat32, {1, 2}, 8)}),
                                               StepResult{1e30, 0, 2, 1.0, 2.0, 0.1, 2}),
                             std::string(8, '\0')});
  add("rollback",
      {encodeHeaderFrame(header(MessageType::kRollback), RollbackInfo{48, 2, "int8", "none", 0.5, "non_finite", 0})});
  add("average", {encodeHeaderFrame(header(MessageType::kAverage,
                                           {tensor(DType::kFloat32, {2, 2}, 16), tensor(DType::kFloat32, {2, 2}, 16)}),
                                    AverageInfo{3, 640, 1, {1}}),
                  std::string(16, '\0'), std::string(16, '\0')});
  add("heartbeat", {encodeHeaderFrame(header(MessageType::kHeartbeat), std::monostate{})});
  add("shutdown", {encodeHeaderFrame(header(MessageType::kShutdown), ShutdownInfo{"done", true})});
  add("error", {encodeHeaderFrame(header(MessageType::kError), ErrorInfo{ErrorCode::kHandshake, "no"})});
  add("probe", {encodeHeaderFrame(header(MessageType::kProbe, {tensor(DType::kUInt8, {5}, 5)}),
                                  ProbeInfo{1, 2, 3, 64}),
                "12345"});
  add("migrate", {encodeHeaderFrame(header(MessageType::kMigrate, {tensor(DType::kInt64, {}, 8)}),
                                    MigrateInfo{2, 4, "int8", {1, 0, 3}}),
                  std::string(8, '\0')});
  add("checkpoint", {encodeHeaderFrame(header(MessageType::kCheckpoint), CheckpointInfo{1, 7})});
  // Broken: missing payload, wrong payload size, extra payload, truncated header, garbage.
  const auto act = encodeHeaderFrame(header(MessageType::kActivations, {tensor(DType::kFloat32, {4}, 16)}),
                                     std::monostate{});
  add("missing_payload", {act});
  add("short_payload", {act, std::string(15, '\0')});
  add("extra_payload", {act, std::string(16, '\0'), "x"});
  add("truncated_header", {act.substr(0, act.size() / 2)});
  add("garbage", {"GET / HTTP/1.1\r\n\r\n"});
  add("empty", {});
  add("bad_int8_payload", {encodeHeaderFrame(header(MessageType::kActivations, {tensor(DType::kFloat32, {4}, 4, "int8")}),
                                          std::monostate{}),
                        "abcd"});
  for (const auto& [name, frames] : seeds) {
    const auto bytes = tandem::transport::fuzz::makeProtocolFuzzInput(frames);
    std::ofstream(dir / name, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                                     static_cast<std::streamsize>(bytes.size()));
  }
  std::printf("%zu seeds in %s\n", seeds.size(), dir.c_str());
  return 0;
}

// Encode and decode throughput of every codec on float32 tensors of 256 KiB to 16 MiB, with
// memcpy of the same bytes as the reference. Throughput is counted in input (float32) bytes
// for encode and decode alike, so every row compares directly with memcpy; `ratio` is input
// bytes / payload bytes.
//
// Data: post-ReLU activations (max(0, N(0, 1)), half of them zero), the uplink's typical
// content; the lossless stages' ratios depend on it. Shapes are B × 64 × 32 × 32.
//
// Rows named .../threads:1 run inside a one-thread tbb::task_arena; .../tbb rows use the
// default arena (all cores), showing what the parallel chunking buys. Times are wall-clock
// (UseRealTime), so the .../tbb rows count the work of every thread.

#include <algorithm>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <tbb/task_arena.h>

#include "compression/codecs/affine_simd.h"
#include "compression/float16.h"
#include "compression/registry.h"

namespace {

using tandem::compression::Codec;
using tandem::compression::makeCodec;

constexpr std::int64_t kKiB = 1024;
constexpr std::int64_t kSizesBytes[] = {256 * kKiB, 1024 * kKiB, 4096 * kKiB, 16384 * kKiB};

const char* const kSpecs[] = {"none",         "fp16",         "bf16",       "int8",       "int4",
                              "int2",         "int8_channel", "int4_channel", "int2_channel", "topk:0.1",
                              "topk:0.01",    "int8+zstd",    "int8+lz4",   "int4+zstd",  "topk:0.1+zstd",
                              "none+zstd",    "none+lz4"};
// Codecs also measured on all cores.
const char* const kParallelSpecs[] = {"int8", "int8_channel", "int4", "fp16", "topk:0.1"};

std::vector<std::int64_t> shapeFor(std::int64_t bytes) {
  return {bytes / static_cast<std::int64_t>(sizeof(float)) / (64 * 32 * 32), 64, 32, 32};
}

const std::vector<float>& activations(std::size_t n) {
  static std::vector<float> data;
  if (data.size() < n) {
    std::mt19937 rng(42);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    data.resize(n);
    for (float& v : data) v = std::max(0.0f, normal(rng));
  }
  return data;
}

// Runs `body` on one thread (threads == 1) or in the default arena (threads == 0).
template <class Body>
void inArena(int threads, const Body& body) {
  if (threads == 1) {
    static tbb::task_arena single(1);
    single.execute(body);
  } else {
    body();
  }
}

void memcpyBenchmark(benchmark::State& state, std::int64_t bytes) {
  const std::size_t n = static_cast<std::size_t>(bytes) / sizeof(float);
  const std::vector<float>& in = activations(n);
  std::vector<float> out(n);
  for (auto _ : state) {
    std::memcpy(out.data(), in.data(), n * sizeof(float));
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * bytes);
}

void encodeBenchmark(benchmark::State& state, const std::string& spec, std::int64_t bytes, int threads) {
  const std::unique_ptr<Codec> codec = makeCodec(spec);
  const std::vector<std::int64_t> shape = shapeFor(bytes);
  const std::vector<float>& in = activations(static_cast<std::size_t>(bytes) / sizeof(float));
  std::size_t payloadBytes = 0;
  for (auto _ : state) {
    inArena(threads, [&] {
      std::vector<std::uint8_t> payload = codec->encode(in.data(), shape);
      payloadBytes = payload.size();
      benchmark::DoNotOptimize(payload.data());
    });
  }
  state.SetBytesProcessed(state.iterations() * bytes);
  state.counters["ratio"] = static_cast<double>(bytes) / static_cast<double>(payloadBytes);
}

void decodeBenchmark(benchmark::State& state, const std::string& spec, std::int64_t bytes, int threads) {
  const std::unique_ptr<Codec> codec = makeCodec(spec);
  const std::vector<std::int64_t> shape = shapeFor(bytes);
  const std::size_t n = static_cast<std::size_t>(bytes) / sizeof(float);
  const std::vector<std::uint8_t> payload = codec->encode(activations(n).data(), shape);
  std::vector<float> out(n);
  for (auto _ : state) {
    inArena(threads, [&] { codec->decode(payload.data(), payload.size(), shape, out.data()); });
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * bytes);
  state.counters["ratio"] = static_cast<double>(bytes) / static_cast<double>(payload.size());
}

// Encode then decode: the figure the ">= 1/3 of memcpy" goal of issue 4 is about.
void roundTripBenchmark(benchmark::State& state, const std::string& spec, std::int64_t bytes, int threads) {
  const std::unique_ptr<Codec> codec = makeCodec(spec);
  const std::vector<std::int64_t> shape = shapeFor(bytes);
  const std::size_t n = static_cast<std::size_t>(bytes) / sizeof(float);
  const std::vector<float>& in = activations(n);
  std::vector<float> out(n);
  for (auto _ : state) {
    inArena(threads, [&] {
      const std::vector<std::uint8_t> payload = codec->encode(in.data(), shape);
      codec->decode(payload.data(), payload.size(), shape, out.data());
    });
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * bytes);
}

std::string sizeLabel(std::int64_t bytes) {
  return bytes >= 1024 * kKiB ? std::to_string(bytes / (1024 * kKiB)) + "MiB" : std::to_string(bytes / kKiB) + "KiB";
}

void registerAll() {
  const auto add = [](const std::string& name, auto fn, auto... args) {
    benchmark::RegisterBenchmark(name.c_str(), fn, args...)->UseRealTime();
  };
  for (const std::int64_t bytes : kSizesBytes) {
    const std::string size = sizeLabel(bytes);
    add("memcpy/" + size, memcpyBenchmark, bytes);
    for (const std::string spec : kSpecs) {
      add("encode/" + spec + "/" + size + "/threads:1", encodeBenchmark, spec, bytes, 1);
      add("decode/" + spec + "/" + size + "/threads:1", decodeBenchmark, spec, bytes, 1);
    }
    add("roundtrip/int8/" + size + "/threads:1", roundTripBenchmark, std::string("int8"), bytes, 1);
    add("roundtrip/int8/" + size + "/tbb", roundTripBenchmark, std::string("int8"), bytes, 0);
    for (const std::string spec : kParallelSpecs) {
      add("encode/" + spec + "/" + size + "/tbb", encodeBenchmark, spec, bytes, 0);
      add("decode/" + spec + "/" + size + "/tbb", decodeBenchmark, spec, bytes, 0);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::AddCustomContext("affine_kernels", tandem::compression::detail::affineKernelIsa());
  benchmark::AddCustomContext("fp16_f16c", tandem::compression::halfConversionUsesF16c() ? "yes" : "no");
  benchmark::AddCustomContext("tbb_threads", std::to_string(tbb::this_task_arena::max_concurrency()));
  registerAll();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
